"""Model cards: the README.md of an exported folder, built from what the run folder records
(config, summary, evaluation metrics), with the Hub's metadata header written by
`huggingface_hub.ModelCardData`: library, pipeline tag, base model (continued pre-training),
datasets (hub data sets the run read), licence, and the evaluation numbers as model-index
metrics, so the Hub shows them and indexes the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..util import is_path_spec

TRAINING_CONFIG = "training_config.yaml"  # the run's config.yaml, copied beside the card
METRICS = (("eval_loss", "loss"), ("eval_perplexity", "perplexity"), ("eval_accuracy", "accuracy"),
           ("eval_bits_per_char", "bits per character"), ("eval_span_exact_match", "span exact match"))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def hub_id(spec: Any) -> str | None:
    """`spec` if it names a Hub repository (``name`` or ``user/name``, not a local path)."""
    s = str(spec or "")
    if not s or is_path_spec(s) or Path(s).exists() or "*" in s:
        return None
    if s.startswith("mlmkit:") or Path(s).suffix in (".txt", ".csv", ".tsv", ".json", ".jsonl", ".parquet", ".gz"):
        return None
    return s


def card_metadata(facts: dict[str, Any], *, kind: str, model_info: dict[str, Any], license: str | None):
    """The card's YAML header (`huggingface_hub.ModelCardData`)."""
    from huggingface_hub import EvalResult, ModelCardData

    cfg, final = facts["config"], facts["final"]
    data = cfg.get("data", {}) or {}
    name = model_info.get("name", "model")
    results = []
    if final:
        where = ", ".join(map(str, data.get("validation") or [])) or "held-out split of the training data"
        results = [EvalResult(task_type="fill-mask", dataset_type=hub_id((data.get("validation") or [None])[0]) or "text",
                              dataset_name=where, metric_type=key.removeprefix("eval_"), metric_name=label,
                              metric_value=round(float(final[key]), 6))
                   for key, label in METRICS if isinstance(final.get(key), (int, float))]
    datasets = [d for d in (hub_id(s) for s in (data.get("train") or [])) if d]
    return ModelCardData(
        library_name="transformers" if model_info.get("hf") else "mlmkit",
        pipeline_tag="fill-mask" if kind == "masked-lm" else "feature-extraction",
        base_model=hub_id((cfg.get("model") or {}).get("init_from")), datasets=datasets or None,
        license=license, tags=["mlmkit", "masked-language-modeling"], model_name=name,
        eval_results=results or None)


def model_card(facts: dict[str, Any], *, kind: str, model_info: dict[str, Any], usage: str,
               license: str | None = None) -> str:
    """Markdown model card with a Hugging Face metadata header (`license`: default the run
    facts' ``license``, set by `mlmkit export --license`)."""
    license = license or facts.get("license")
    meta = card_metadata(facts, kind=kind, model_info=model_info, license=license)
    lines = ["---", meta.to_yaml(), "---", ""]
    title = {"masked-lm": "masked language model", "encoder": "encoder (no MLM head)"}[kind]
    lines += [f"# {model_info.get('name', 'model')}: {title}", "",
              "Pre-trained with mlmkit (masked-language-model pre-training)"
              + (f", continued from [{meta.base_model}](https://huggingface.co/{meta.base_model})." if meta.base_model
                 else "."), ""]
    lines += ["## Model", ""] + [f"- **{k}**: {_fmt(v)}" for k, v in model_info.items() if k not in ("hf", "name")]
    lines += ["", f"Licence: {license}" if license else "Licence: not stated (export with --license)."]
    lines += _data_lines(facts) + _training_lines(facts) + _metric_lines(facts)
    lines += ["", "## Usage", "", "```python", usage.strip(), "```"]
    if facts["config"]:
        import yaml

        lines += ["", "## Reproduce", "", f"The run's configuration is `{TRAINING_CONFIG}` in this folder:", "",
                  "```bash", f"mlmkit train --config {TRAINING_CONFIG} -o runs/reproduced", "```", "",
                  "```yaml", yaml.safe_dump(facts["config"], sort_keys=False).strip(), "```"]
    return "\n".join(lines) + "\n"


def _data_lines(facts) -> list[str]:
    data = facts["config"].get("data", {}) or {}
    lines = ["", "## Training data", ""]
    if not data:
        return lines + ["Unknown (exported from a model folder without its run folder)."]
    lines += [f"- `{spec}`" for spec in data.get("train") or []]
    extra = {k: data.get(k) for k in ("mode", "max_length", "validation_fraction", "max_samples")
             if data.get(k) is not None}
    if data.get("validation"):
        extra["validation"] = ", ".join(map(str, data["validation"]))
    return lines + [f"- {k}: {_fmt(v)}" for k, v in extra.items()]


def _training_lines(facts) -> list[str]:
    cfg, summary = facts["config"], facts["summary"]
    if not summary:
        return []
    lines = ["", "## Training", ""]
    for key in ("step", "tokens", "train_seconds", "stopped", "device", "precision", "bad_steps_skipped"):
        if key in summary:
            lines.append(f"- {key.replace('_', ' ')}: {_fmt(summary[key])}")
    optim, train = cfg.get("optim", {}) or {}, cfg.get("train", {}) or {}
    for key, src in (("lr", optim), ("schedule", optim), ("batch_size", train), ("grad_accum", train)):
        if key in src:
            lines.append(f"- {key.replace('_', ' ')}: {_fmt(src[key])}")
    return lines


def _metric_lines(facts) -> list[str]:
    final = facts["final"]
    if not final:
        return []
    lines = ["", "## Validation metrics", "", "| metric | value |", "|---|---|"]
    for key in ("eval_loss", "eval_perplexity", "eval_accuracy", "eval_bits_per_char", "eval_span_exact_match",
                "eval_targets", "step"):
        if key in final:
            lines.append(f"| {key} | {_fmt(final[key])} |")
    return lines + ["", "Loss and perplexity are weighted by masked target over the validation set, masked "
                        "with a fixed evaluation seed; accuracy is arg-max accuracy on those targets."]
