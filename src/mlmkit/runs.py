"""The layout of a run folder, read back: the final model in `model/`, the resolved config in
`config.yaml`, metrics in `metrics.jsonl`, the end state in `summary.json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import MlmkitError

CONFIG_FILE = "config.yaml"
MODEL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"


def resolve_model_dir(path: str | Path) -> str:
    """A run folder holds its final model in `model/`; accept either, or a hub name."""
    p = Path(path)
    if (p / MODEL_DIR).is_dir() and not (p / "config.json").is_file():
        return str(p / MODEL_DIR)
    return str(path)


def run_dir_of(path: str | Path) -> Path | None:
    """The run folder of a run folder or of its `model/` folder; None for anything else."""
    p = Path(path)
    if (p / CONFIG_FILE).is_file():
        return p
    if p.name == MODEL_DIR and (p.parent / CONFIG_FILE).is_file():
        return p.parent
    return None


def read_run_config(run_dir: Path | None) -> dict[str, Any]:
    """The raw `config.yaml` of a run ({} if there is none)."""
    if run_dir is None or not (run_dir / CONFIG_FILE).is_file():
        return {}
    import yaml

    return yaml.safe_load((run_dir / CONFIG_FILE).read_text(encoding="utf-8")) or {}


def read_jsonl(path: Path) -> list[dict]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a run killed mid-write may leave a torn last line
        if isinstance(rec, dict):
            out.append(rec)
    return out


def run_and_model_dirs(path: str | Path, model_markers: tuple[str, ...]) -> tuple[Path | None, Path]:
    """(run folder or None, model folder) for a run folder or a bare model folder; a model
    folder holds one of `model_markers` (config files of the families)."""
    p = Path(path)
    if not p.exists():
        raise MlmkitError(f"{p}: no such run or model folder")
    if (p / MODEL_DIR).is_dir():
        return p, p / MODEL_DIR
    if p.name == MODEL_DIR and (p.parent / CONFIG_FILE).is_file():
        return p.parent, p
    if any((p / m).is_file() for m in model_markers):
        # a checkpoint folder (RUN/checkpoints/step-N or best) is a model folder of its run
        run = p.parent.parent if p.parent.name == CHECKPOINTS_DIR else None
        return (run if run is not None and (run / CONFIG_FILE).is_file() else None), p
    raise MlmkitError(f"{p}: not a run folder (no model/ inside) or a model folder (no config.json); "
                      "has the run finished?")


def run_facts(run_dir: Path | None, step: int | None = None) -> dict[str, Any]:
    """config (dict), summary (dict) and final metrics (dict) of a run; empty where unknown.
    With `step` (a checkpoint's), the summary and metrics are those of that step: the summary
    holds the step only, the metrics are the evaluation at that step or the last before it."""
    facts: dict[str, Any] = {"config": read_run_config(run_dir), "summary": {}, "final": {}}
    if run_dir is None:
        return facts
    if (run_dir / SUMMARY_FILE).is_file() and step is None:
        facts["summary"] = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    if step is not None:
        facts["summary"] = {"step": step, "stopped": "checkpoint (an intermediate step of the run)"}
    if (run_dir / METRICS_FILE).is_file():
        evals = [r for r in read_jsonl(run_dir / METRICS_FILE) if "eval_loss" in r]
        if step is not None:
            evals = [r for r in evals if r.get("step", 0) <= step]
        if evals:
            facts["final"] = next((r for r in reversed(evals) if r.get("final")), evals[-1])
    return facts

MASKED_LM_SUBDIR = "masked-lm"  # an --encoder-only export keeps the full masked-LM here


# What a run leaves in its folder (`--overwrite` removes these, and only these).
RUN_ARTEFACTS = ("checkpoints", METRICS_FILE, "samples.jsonl", MODEL_DIR, SUMMARY_FILE, CONFIG_FILE, "tokenizer",
                 "tensorboard", "wandb")
# Keys a resumed run may change: how long and how it runs, not what it learns from or in what order.
RESUMABLE = {
    "train": {"max_steps", "max_minutes", "epochs", "eval_every", "eval_at_start", "log_every", "save_every",
              "keep_checkpoints", "early_stopping_patience", "max_bad_steps", "progress", "threads", "loggers",
              "wandb_project", "wandb_mode", "show_samples", "output_dir", "device", "precision", "compile",
              "strategy", "batch_size", "data_workers", "dist_timeout_minutes", "restore_best", "best_metric"},
    "data": {"cache_dir", "prepare_workers"},
    # filled in by the run; a resumed run checks its checkpoint's tokenizer against a given one
    "tokenizer": {"fingerprint"},
}


def run_in_use(run_dir: Path) -> list[str]:
    """The artefacts of an earlier run in `run_dir` ([] for a new or empty folder)."""
    # (a config.yaml or a tokenizer alone is not a run: `mlmkit prepare` may have left them; nor
    # is an empty checkpoints/ folder, or a file of that name)
    found = []
    for name in RUN_ARTEFACTS:
        p = Path(run_dir) / name
        if name in (CONFIG_FILE, "tokenizer") or not p.exists():
            continue
        if name == CHECKPOINTS_DIR and not (p.is_dir() and any(p.iterdir())):
            continue
        found.append(name)
    return found


def clear_run(run_dir: Path) -> None:
    import shutil

    for name in RUN_ARTEFACTS:
        p = Path(run_dir) / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "overrides":
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def changed_on_resume(saved: dict, new: dict) -> list[str]:
    """Dotted keys whose value differs between a run's saved config and the resumed one, except
    those a resumed run may change (`RESUMABLE`)."""
    a, b = _flat(saved), _flat(new)
    changed = []
    for key in sorted(set(a) | set(b)):
        section, _, name = key.partition(".")
        if name in RESUMABLE.get(section, ()) or a.get(key) == b.get(key):
            continue
        changed.append(key)
    return changed
