"""`mlmkit export RUN_DIR OUT [--encoder-only]`: a shareable model folder with a model card.

Token models (Hugging Face transformers):

* ``export RUN OUT`` -- OUT is the full masked-LM folder (weights in safetensors, config,
  tokenizer): ``AutoModelForMaskedLM`` / ``pipeline("fill-mask")`` load it.
* ``export RUN OUT --encoder-only`` -- OUT is the bare encoder, without the MLM head
  (``model.base_model``): ``AutoModel.from_pretrained(OUT)`` loads it, ready for fine-tuning or
  embeddings; the full masked-LM folder is written next to it in ``OUT/masked-lm`` so the
  pre-training head is never lost. (BERT's pooler is not part of MLM pre-training, so
  ``AutoModel`` reports it as newly initialised; pass ``add_pooling_layer=False`` to skip it.)

Character models (``task: char``) follow the same layout: OUT is the full model
(`char_task.load_char_model`), or with ``--encoder-only`` the encoder written by
`char_task.export_encoder` (load with `char_task.load_scratch_encoder`, or
``CanineModel.from_pretrained`` for CANINE encoders) plus the full model in ``OUT/masked-lm``.

Every folder gets a ``README.md`` model card built from the run folder: the config
(config.yaml), the training data, steps/tokens/time (summary.json) and the final validation
metrics (metrics.jsonl).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .errors import MlmkitError

MASKED_LM_SUBDIR = "masked-lm"


# ------------------------------------------------------------------------------ run facts
def _run_and_model_dirs(path: str | Path) -> tuple[Path | None, Path]:
    """(run folder or None, model folder) for a run folder or a bare model folder."""
    p = Path(path)
    if not p.exists():
        raise MlmkitError(f"{p}: no such run or model folder")
    if (p / "model").is_dir():
        return p, p / "model"
    if p.name == "model" and (p.parent / "config.yaml").is_file():
        return p.parent, p
    if (p / "config.json").is_file() or (p / "mlmkit_char.json").is_file():
        return None, p
    raise MlmkitError(f"{p}: not a run folder (no model/ inside) or a model folder (no config.json); "
                      "has the run finished?")


def run_facts(run_dir: Path | None) -> dict[str, Any]:
    """config (dict), summary (dict) and final metrics (dict) of a run; empty where unknown."""
    facts: dict[str, Any] = {"config": {}, "summary": {}, "final": {}}
    if run_dir is None:
        return facts
    if (run_dir / "config.yaml").is_file():
        import yaml

        facts["config"] = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    if (run_dir / "summary.json").is_file():
        facts["summary"] = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    if (run_dir / "metrics.jsonl").is_file():
        evals = [r for r in _jsonl(run_dir / "metrics.jsonl") if "eval_loss" in r]
        if evals:
            facts["final"] = next((r for r in reversed(evals) if r.get("final")), evals[-1])
    return facts


def _jsonl(path: Path) -> list[dict]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a run killed mid-write may leave a torn last line
        if isinstance(rec, dict):
            out.append(rec)
    return out


# ------------------------------------------------------------------------------ model card
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def model_card(facts: dict[str, Any], *, kind: str, model_info: dict[str, Any], usage: str) -> str:
    """Markdown model card with a Hugging Face metadata header."""
    cfg, summary, final = facts["config"], facts["summary"], facts["final"]
    data = cfg.get("data", {}) or {}
    pipeline_tag = "fill-mask" if kind == "masked-lm" else "feature-extraction"
    lines = ["---", "library_name: transformers" if model_info.get("hf") else "library_name: mlmkit",
             f"pipeline_tag: {pipeline_tag}", "tags:", "- mlmkit", "- masked-language-modeling", "---", ""]
    title = {"masked-lm": "masked language model", "encoder": "encoder (no MLM head)"}[kind]
    lines += [f"# {model_info.get('name', 'model')}: {title}", "",
              "Pre-trained with mlmkit (masked-language-model pre-training).", ""]
    lines += ["## Model", ""] + [f"- **{k}**: {_fmt(v)}" for k, v in model_info.items() if k not in ("hf", "name")]
    lines += ["", "## Training data", ""]
    if data:
        for spec in data.get("train") or []:
            lines.append(f"- `{spec}`")
        extra = {k: data.get(k) for k in ("mode", "max_length", "validation_fraction", "max_samples")
                 if data.get(k) is not None}
        if data.get("validation"):
            extra["validation"] = ", ".join(map(str, data["validation"]))
        lines += [f"- {k}: {_fmt(v)}" for k, v in extra.items()]
    else:
        lines.append("Unknown (exported from a model folder without its run folder).")
    if summary:
        lines += ["", "## Training", ""]
        for key in ("step", "tokens", "train_seconds", "stopped", "device", "precision", "bad_steps_skipped"):
            if key in summary:
                lines.append(f"- {key.replace('_', ' ')}: {_fmt(summary[key])}")
        optim = cfg.get("optim", {}) or {}
        train = cfg.get("train", {}) or {}
        for key, src in (("lr", optim), ("schedule", optim), ("batch_size", train), ("grad_accum", train)):
            if key in src:
                lines.append(f"- {key.replace('_', ' ')}: {_fmt(src[key])}")
    if final:
        lines += ["", "## Final validation metrics", "", "| metric | value |", "|---|---|"]
        for key in ("eval_loss", "eval_perplexity", "eval_accuracy", "eval_targets", "step"):
            if key in final:
                lines.append(f"| {key} | {_fmt(final[key])} |")
        lines += ["", "Loss and perplexity are token-weighted over the masked validation tokens "
                      "(15% masked with a fixed seed); accuracy is arg-max accuracy on those tokens."]
    lines += ["", "## Usage", "", "```python", usage.strip(), "```"]
    if cfg:
        import yaml

        lines += ["", "## Full configuration", "", "```yaml", yaml.safe_dump(cfg, sort_keys=False).strip(), "```"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ export
def export(run_or_model: str | Path, out: str | Path, *, encoder_only: bool = False, overwrite: bool = False,
           log=print) -> Path:
    """Write the export folder(s); returns OUT."""
    from .evaluation import is_char_model

    run_dir, model_dir = _run_and_model_dirs(run_or_model)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise MlmkitError(f"{out} exists and is not empty (use --overwrite to replace it)")
        shutil.rmtree(out)
    facts = run_facts(run_dir)
    if is_char_model(model_dir):
        return _export_char(model_dir, out, facts, encoder_only=encoder_only, log=log)
    return _export_token(model_dir, out, facts, encoder_only=encoder_only, log=log)


def _export_token(model_dir: Path, out: Path, facts: dict, *, encoder_only: bool, log) -> Path:
    from .data.tokenizers import load_tokenizer
    from .models import load_model

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


def _export_char(model_dir: Path, out: Path, facts: dict, *, encoder_only: bool, log) -> Path:
    from .char_task import export_encoder

    # The full character MLM (encoder + span head) is mlmkit's own format: copy the folder.
    if not encoder_only:
        shutil.copytree(model_dir, out, dirs_exist_ok=True)
        usage = f'from mlmkit.char_task import load_char_model\nmodel = load_char_model("{out}")\nmodel.predict("goo[3].com")'
        info = {"hf": False, "name": out.resolve().name, "architecture": "character MLM (encoder + span head)"}
        (out / "README.md").write_text(model_card(facts, kind="masked-lm", model_info=info, usage=usage),
                                       encoding="utf-8")
        log(f"character masked-LM written to {out}")
        return out
    shutil.copytree(model_dir, out / MASKED_LM_SUBDIR)
    export_encoder(model_dir, out)
    meta = json.loads((out / "config.json").read_text(encoding="utf-8")) if (out / "config.json").is_file() else {}
    info = {"hf": "mlmkit_encoder" not in meta, "name": out.resolve().name,
            "architecture": meta.get("mlmkit_encoder") or "CanineModel",
            "hidden size": meta.get("hidden_size", "?"),
            "layers": meta.get("num_layers", meta.get("num_hidden_layers", "?"))}
    usage = (f'from mlmkit.char_task import load_scratch_encoder, load_char_model\n'
             f'encoder = load_scratch_encoder("{out}")          # scratch encoder; CANINE: CanineModel.from_pretrained\n'
             f'full = load_char_model("{out / MASKED_LM_SUBDIR}")  # encoder + span head, for prediction')
    (out / "README.md").write_text(model_card(facts, kind="encoder", model_info=info, usage=usage), encoding="utf-8")
    log(f"character encoder written to {out}, full model in {out / MASKED_LM_SUBDIR}")
    return out
