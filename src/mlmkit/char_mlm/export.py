"""Export of character models.

The full character MLM (encoder + span head): mlmkit's folder (`model.py`) plus the model's code
and a config.json with an ``auto_map`` (`save_portable`), so that transformers loads it without
mlmkit (``trust_remote_code=True``), and a model card. `--encoder-only` writes the encoder alone: a Hugging Face
`CanineModel` folder (canine) or safetensors + config.json + alphabet.json for the scratch
encoder (`load_scratch_encoder`), with the full model in OUT/masked-lm.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..report.cards import model_card
from ..runs import MASKED_LM_SUBDIR
from .encoders import CanineCharEncoder, build_scratch_encoder
from .model import ALPHABET_NAME, WEIGHTS_NAME, load_char_model


def export_encoder(path, out) -> Path:
    """Write the encoder alone: a Hugging Face CanineModel folder (canine) or safetensors +
    config.json + alphabet.json (scratch or cloze encoder, `build_scratch_encoder(**config)`)."""
    bundle = load_char_model(path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    enc = bundle.model.encoder
    if isinstance(enc, CanineCharEncoder):
        enc.canine.save_pretrained(out)
    else:
        from safetensors.torch import save_model

        save_model(enc, str(out / "model.safetensors"))
        (out / "config.json").write_text(json.dumps({"mlmkit_encoder": type(enc).__name__, **enc.config}, indent=1))
    bundle.alphabet.save(out / ALPHABET_NAME)
    return out


def load_scratch_encoder(folder) -> torch.nn.Module:
    from safetensors.torch import load_model

    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("mlmkit_encoder", None)
    enc = build_scratch_encoder(**cfg)
    load_model(enc, str(folder / "model.safetensors"))
    return enc.eval()


PORTABLE_FILES = ("portable.py", "inputs.py", "encoders.py", "heads.py")  # portable.py and what it imports


def save_portable(model_dir: Path, out: Path) -> None:
    """Make the character model folder `out` (a copy of mlmkit's folder) loadable without mlmkit:
    the model's code beside the weights and a config.json whose ``auto_map`` names it, so
    ``AutoModel.from_pretrained(out, trust_remote_code=True)`` builds `portable.MlmkitCharForMaskedLM`
    (same parameter names as mlmkit's model; its count tables written whole)."""
    from .portable import MlmkitCharConfig

    bundle = load_char_model(model_dir)
    cls = "portable.MlmkitCharForMaskedLM"
    cfg = MlmkitCharConfig(
        encoder_arch=bundle.model_cfg.arch, encoder_config=bundle.model.encoder_config(),
        head_config=bundle.model.head_config, alphabet="".join(bundle.alphabet.chars),
        max_chars=bundle.data.max_length, max_span=bundle.masking.max_span, mean_span=bundle.masking.mean_span,
        architectures=["MlmkitCharForMaskedLM"],
        auto_map={"AutoConfig": "portable.MlmkitCharConfig", "AutoModel": cls, "AutoModelForMaskedLM": cls})
    cfg.save_pretrained(out)
    # transformers loads a weight by its name, and knows nothing of mlmkit's packed count tables
    # (`model.pack_count_tables`): the portable folder holds them whole
    from safetensors.torch import save_model

    save_model(bundle.model, str(out / WEIGHTS_NAME))
    here = Path(__file__).parent
    for name in PORTABLE_FILES:
        shutil.copyfile(here / name, out / name)


def export_char_model(model_dir: Path, out: Path, facts: dict, *, encoder_only: bool, log) -> Path:
    """OUT: the full character MLM, or with `encoder_only` the encoder (with the full model in
    OUT/masked-lm); each with a model card."""
    if not encoder_only:
        shutil.copytree(model_dir, out, dirs_exist_ok=True)
        save_portable(model_dir, out)
        usage = (f'from transformers import AutoModel   # no mlmkit needed\n'
                 f'model = AutoModel.from_pretrained("{out}", trust_remote_code=True)\n'
                 f'model.fill("goo[3].com", top_k=5)   # [(name, log-probability), ...]; [?]: any length')
        info = {"hf": True, "name": out.resolve().name, "architecture": "character MLM (encoder + span head)",
                "parameters": sum(p.numel() for p in load_char_model(out).model.parameters())}
        (out / "README.md").write_text(model_card(facts, kind="masked-lm", model_info=info, usage=usage),
                                       encoding="utf-8")
        log(f"character masked-LM written to {out} (AutoModel.from_pretrained(..., trust_remote_code=True) loads it)")
        return out
    shutil.copytree(model_dir, out / MASKED_LM_SUBDIR)
    export_encoder(model_dir, out)
    meta = json.loads((out / "config.json").read_text(encoding="utf-8")) if (out / "config.json").is_file() else {}
    info = {"hf": "mlmkit_encoder" not in meta, "name": out.resolve().name,
            "architecture": meta.get("mlmkit_encoder") or "CanineModel",
            "hidden size": meta.get("hidden_size", "?"),
            "layers": meta.get("num_layers", meta.get("num_hidden_layers", "?"))}
    usage = (f'from mlmkit.char_mlm.export import load_scratch_encoder\nfrom mlmkit.char_mlm.model import load_char_model\n'
             f'encoder = load_scratch_encoder("{out}")          # scratch encoder; CANINE: CanineModel.from_pretrained\n'
             f'full = load_char_model("{out / MASKED_LM_SUBDIR}")  # encoder + span head, for prediction')
    (out / "README.md").write_text(model_card(facts, kind="encoder", model_info=info, usage=usage), encoding="utf-8")
    log(f"character encoder written to {out}, full model in {out / MASKED_LM_SUBDIR}")
    return out
