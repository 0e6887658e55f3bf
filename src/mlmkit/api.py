"""One call that does what `mlmkit train` does, from Python: the same config resolution (preset
<- config file <- overrides <- arguments), the same run folder rules (a used folder needs
`resume` or `overwrite`; a resumed run keeps its saved config), the same `config.yaml` in the
run folder (so exports know the data), the same training::

    import mlmkit
    summary = mlmkit.train(preset="scratch-tiny", data=["corpus.txt"], output_dir="runs/mine",
                           overrides=["train.max_steps=200", "optim.lr=3e-4"])

The CLI's `train` command is this function plus argument parsing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

from .errors import MlmkitError

Resume = Union[bool, str]  # False, True (newest good checkpoint), "auto", or a checkpoint folder


def train_run(preset: Optional[str] = None, *, config: Optional[str] = None, data: Optional[list[str]] = None,
              validation: Optional[list[str]] = None, output_dir: Optional[str] = None,
              init_from: Optional[str] = None, overrides: Optional[list[str]] = None,
              max_steps: Optional[int] = None, max_minutes: Optional[float] = None, seed: Optional[int] = None,
              trust_remote_code: bool = False, strategy: Optional[str] = None,
              resume: Resume = False, overwrite: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train a run as `mlmkit train` does; returns its summary (what the CLI prints). `overrides`
    are ``section.key=value`` strings (the CLI's ``--set``); `resume` as ``--resume`` (True),
    ``--auto-resume`` ("auto") or ``--resume-from`` (a checkpoint folder)."""
    flags = {"data.train": list(data or []), "data.validation": list(validation or []),
             "train.output_dir": output_dir, "model.init_from": init_from, "train.max_steps": max_steps,
             "train.max_minutes": max_minutes, "train.seed": seed, "train.strategy": strategy,
             "model.trust_remote_code": True if trust_remote_code else None}
    return run_training(preset, config, overrides, flags, resume=resume, overwrite=overwrite, log=log)


def run_training(preset, config, sets, flags: dict, *, resume: Resume, overwrite: bool, log) -> dict[str, Any]:
    """Resolve the config, claim the run folder, write config.yaml, build the task, train."""
    from .config import save_config
    from .engine.loop import train as train_task
    from .families import build_task

    cfg = run_config(preset, config, sets, flags)
    if resume:
        cfg = _resume_config(cfg, preset, config, sets, flags)
    rank0 = int(os.environ.get("RANK", 0)) == 0
    say = log if rank0 else (lambda s: None)
    run = Path(cfg.train.output_dir)
    run_lock = None
    if rank0:  # (before any work: a wrong folder costs nothing)
        run_lock = _claim_run_folder(run, resume=resume, overwrite=overwrite, task=cfg.task, log=say)
    try:
        if rank0:
            save_config(cfg, run / "config.yaml")
        task = build_task(cfg, log=say, progress=cfg.train.progress and rank0, resume=resume)
        summary = train_task(task, cfg.train, cfg.optim, resume=resume, log=say)
    finally:
        if run_lock is not None:
            run_lock.release()
    return summary if rank0 else None


def run_config(preset, config, sets, flags: dict):
    """The run config: preset <- file <- --set <- the command's own flags ({"section.key": value},
    those left unset skipped)."""
    from .families import resolve_config

    extra: dict = {}
    for dotted, value in flags.items():
        if value is not None and value != []:
            section, key = dotted.split(".")
            extra.setdefault(section, {})[key] = value
    return resolve_config(preset, config, sets, extra)


def _resume_config(cfg, preset, config, sets, flags):
    """A resumed run's config: its saved config.yaml (with --set and the command's flags on top when
    no --preset / --config is given); a change to a key that decides what the model learns or in what
    order is refused."""
    from .config import to_dict
    from .runs import changed_on_resume, read_run_config

    run = Path(cfg.train.output_dir)
    saved = read_run_config(run)
    if not saved:
        return cfg
    if not preset and not config:
        cfg = _saved_plus(saved, sets, flags)
    changed = changed_on_resume(saved, to_dict(cfg))
    if changed:
        shown = ", ".join(f"{k} ({_get(saved, k)!r} -> {_get(to_dict(cfg), k)!r})" for k in changed[:4])
        raise MlmkitError(f"--resume: the config differs from the run's in {shown}"
                          f"{' and more' if len(changed) > 4 else ''}: it would not continue the same run "
                          "(start a new run, or keep these keys)")
    return cfg


def _saved_plus(saved: dict, sets, flags: dict):
    from .config import deep_merge, parse_override
    from .families import build_config

    raw = dict(saved)
    for item in sets or []:
        raw = deep_merge(raw, parse_override(item))
    for dotted, value in flags.items():
        if value is not None and value != []:
            section, key = dotted.split(".")
            raw = deep_merge(raw, {section: {key: value}})
    return build_config(raw)


def _get(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def _claim_run_folder(run: Path, *, resume: Resume, overwrite: bool, task: str, log):
    """A new run starts in a new or empty folder (or one `--overwrite` clears), never on top of
    another run's metrics, checkpoints and tokenizer, nor in another kind of output; a resumed
    one needs a checkpoint that verifies. One process at a time: the folder is locked until the
    run ends (`folders.claim`)."""
    from .engine.checkpoint import check_resumable
    from .folders import claim

    if resume and overwrite:
        raise MlmkitError("--overwrite starts the run again and --resume continues it: give one of them")
    if resume and not run.exists():  # -o may be mistyped: say so before a folder is made
        check_resumable(run, resume)
    run_lock = claim(run, "train", resume=bool(resume), overwrite=overwrite, task=task, log=log)
    try:  # (under the lock: a live run is named as such, not as a run with nothing to resume)
        if resume:
            check_resumable(run, resume)
    except BaseException:
        run_lock.release()
        raise
    return run_lock


def train(task=None, train_cfg=None, optim_cfg=None, **kwargs):
    """`mlmkit.train`: with keywords only (``preset=``, ``data=``, ``output_dir=``, ``overrides=``,
    ... as `train_run`), the one-call equivalent of `mlmkit train`; given a task and its
    `TrainConfig` / `OptimConfig`, the engine's training loop (`engine.train`) on that task."""
    if task is None or isinstance(task, str):
        if task is not None:
            kwargs["preset"] = task
        return train_run(**kwargs)
    from .engine.loop import train as train_task

    return train_task(task, train_cfg, optim_cfg, **kwargs)
