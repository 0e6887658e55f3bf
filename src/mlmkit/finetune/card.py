"""What a fine-tuned folder says about itself: `metrics.json` and the `README.md` model card (the
scores of each split, how to load it)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from .labelled_task import Prepared


def _card_table(result, tagging: bool) -> str:
    rows = [("validation", result.validation)] + ([("test", result.test)] if result.test else [])
    if not tagging:
        head = "| split | examples | accuracy | macro-F1 |\n|---|---|---|---|\n"
        return head + "\n".join(f"| {name} | {m['n']} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} |" for name, m in rows)
    head = "| split | words | accuracy | precision | recall | F1 | macro-F1 |\n|---|---|---|---|---|---|---|\n"
    return head + "\n".join(f"| {name} | {m['n']} | {m['accuracy']:.4f} | {m['precision']:.4f} | {m['recall']:.4f} "
                             f"| {m['f1']:.4f} | {m['macro_f1']:.4f} |" for name, m in rows)


def write_card(out: Path, cfg, result, model: str, data, run: Prepared) -> None:
    """`metrics.json` (the config and the result) and the `README.md` model card of a fine-tuned
    folder (`cfg`: the `FinetuneConfig`, `result`: the `FinetuneResult`)."""
    summary = {"base_model": str(model), "data": list(map(str, data)), "config": asdict(cfg), **asdict(result)}
    (out / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    tagging = cfg.task == "token-classification"
    usage = run.clf.usage.replace("{out}", str(out))
    note = ""
    if tagging:
        note = ("\nPrecision, recall and F1 are entity-level (seqeval / conlleval chunk rules); macro-F1 "
                "averages over entity types.\n" if run.task.bio else
                "\nThe tags are not BIO chunks, so precision = recall = F1 = word accuracy; macro-F1 "
                "averages over tags.\n")
    card = f"""---
library_name: {run.clf.library}
pipeline_tag: {'token-classification' if tagging else 'text-classification'}
tags:
- mlmkit
---

# {'Token classifier (word tagger)' if tagging else 'Text classifier'} fine-tuned with mlmkit

- base model: `{model}`{' (weights re-initialised: --from-scratch baseline)' if cfg.from_scratch else ''}
- data: {', '.join(f'`{d}`' for d in data)} ({result.sizes['train']} train / {result.sizes['validation']} validation / {result.sizes['test']} test{' sentences' if tagging else ''}, split by a hash of the text)
- {'tags' if tagging else 'labels'}: {', '.join(result.labels)}
- {result.steps} steps, {cfg.epochs:g} epochs planned, batch {cfg.batch_size}, lr {cfg.lr:g}, max length {cfg.max_length}; best step {result.best_step}; {result.stopped}; {result.train_seconds:.0f} s

{_card_table(result, tagging)}
{note}
```python
{usage}
```
"""
    (out / "README.md").write_text(card, encoding="utf-8")
