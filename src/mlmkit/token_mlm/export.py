"""Export of token models: Hugging Face folders (safetensors + tokenizer) with a model card.

* the full masked-LM folder: ``AutoModelForMaskedLM`` / ``pipeline("fill-mask")`` load it;
* ``--encoder-only``: the bare encoder, without the MLM head (``model.base_model``):
  ``AutoModel.from_pretrained(OUT)`` loads it, ready for fine-tuning or embeddings; the full
  masked-LM folder is written next to it in ``OUT/masked-lm`` so the pre-training head is never
  lost. (BERT's pooler is not part of MLM pre-training, so ``AutoModel`` reports it as newly
  initialised; pass ``add_pooling_layer=False`` to skip it.)
"""

from __future__ import annotations

from pathlib import Path

from ..report.cards import model_card
from ..runs import MASKED_LM_SUBDIR
from .model import load_model
from .tokenizers import load_tokenizer




def export_token_model(model_dir: Path, out: Path, facts: dict, *, encoder_only: bool, log) -> Path:
    """OUT: the full masked-LM folder, or with `encoder_only` the encoder (no MLM head) with the
    masked-LM in OUT/masked-lm; each with a model card."""
    model = load_model(str(model_dir))
    tokenizer = load_tokenizer(str(model_dir))
    cfg = model.config
    info = {"hf": True, "name": out.resolve().name, "architecture": type(model).__name__,
            "model_type": cfg.model_type,
            "layers": getattr(cfg, "num_hidden_layers", getattr(cfg, "n_layers", "?")),
            "hidden size": getattr(cfg, "hidden_size", getattr(cfg, "dim", "?")),
            "vocabulary": len(tokenizer),
            "parameters (with MLM head)": sum(p.numel() for p in model.parameters())}
    mlm_dir = out / MASKED_LM_SUBDIR if encoder_only else out
    _save_hf(model, tokenizer, mlm_dir)
    usage = (f'from transformers import pipeline\nfill = pipeline("fill-mask", model="{mlm_dir}")\n'
             f'fill("the government said the {tokenizer.mask_token} would rise")')
    (mlm_dir / "README.md").write_text(model_card(facts, kind="masked-lm", model_info=info, usage=usage),
                                       encoding="utf-8")
    log(f"masked-LM model written to {mlm_dir}")
    if encoder_only:
        encoder = model.base_model
        # The MLM head's weight is tied to the input embedding; the base model owns that tensor,
        # so saving it alone loses nothing the encoder needs.
        _save_hf(encoder, tokenizer, out)
        enc_info = dict(info, architecture=type(encoder).__name__)
        enc_info.pop("parameters (with MLM head)")
        enc_info["parameters"] = sum(p.numel() for p in encoder.parameters())
        usage = (f'from transformers import AutoModel, AutoTokenizer\nmodel = AutoModel.from_pretrained("{out}")\n'
                 f'tokenizer = AutoTokenizer.from_pretrained("{out}")\n'
                 f'hidden = model(**tokenizer("some text", return_tensors="pt")).last_hidden_state\n'
                 f'# fine-tune: mlmkit finetune {out} --data train.csv --label-column label')
        (out / "README.md").write_text(model_card(facts, kind="encoder", model_info=enc_info, usage=usage),
                                       encoding="utf-8")
        log(f"encoder (no MLM head) written to {out}; AutoModel.from_pretrained loads it")
    return out


def _save_hf(model, tokenizer, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
