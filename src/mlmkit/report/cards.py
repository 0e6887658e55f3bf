"""Model cards: the README.md of an exported folder, with a Hugging Face metadata header, built
from what the run folder records (config, summary, final metrics)."""

from __future__ import annotations

from typing import Any


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
