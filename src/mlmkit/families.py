"""The registry of model families, and what is decided through it: which config class a run's
`task` key selects, and which family a saved model folder belongs to. Commands ask here and never
branch on the family themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .char_mlm import FAMILY as CHAR
from .config import from_dict, merge_sources, shown
from .errors import ConfigError, MlmkitError
from .family import Family
from .folders import MODEL_MARKERS
from .runs import CHECKPOINTS_DIR, resolve_model_dir
from .token_mlm import FAMILY as TOKEN

# Asked in this order for a model folder: the token family takes anything the others do not claim.
FAMILIES: dict[str, Family] = {f.name: f for f in (CHAR, TOKEN)}
DEFAULT = TOKEN.name


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise ConfigError(f"config key 'task': {shown(name)!r} is not one of {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def family_of_model(path: str | Path) -> Family:
    """The family whose model folder `path` is (a transformers folder or hub name: token)."""
    for fam in FAMILIES.values():
        if fam.owns_model_dir(Path(path)):
            return fam
    return FAMILIES[DEFAULT]


def open_model_dir(path: str | Path) -> tuple[str, Family]:
    """The model folder that `path` names, checked, and its family: a run folder's `model/`, a
    model folder, a checkpoint folder (verified against its manifest), or a hub name. A run
    folder without `model/` (a killed run) is one line pointing at its checkpoints."""
    from .engine.checkpoint import check_model_folder, latest_valid

    p = Path(path)
    resolved = resolve_model_dir(path)
    if p.is_dir() and resolved == str(path) and (p / CHECKPOINTS_DIR).is_dir() \
            and not any((p / m).is_file() for m in MODEL_MARKERS):
        newest = latest_valid(p / CHECKPOINTS_DIR, log=lambda s: None)
        hint = f"use a checkpoint folder such as {newest}, or " if newest else ""
        raise MlmkitError(f"{p} is a run folder without a final model/ (killed, or still training?): {hint}"
                          "continue it with mlmkit train --resume")
    check_model_folder(Path(resolved))
    return resolved, family_of_model(resolved)


def build_config(raw: dict[str, Any]):
    """Validate a merged raw mapping into the run config of its family (`task` key)."""
    raw = dict(raw)
    raw.pop("description", None)  # presets describe themselves
    task = raw.get("task", DEFAULT)
    fam = family(task if isinstance(task, str) else str(task))
    return from_dict(fam.config_class, raw)


def resolve_config(preset: str | None = None, config_file: str | None = None,
                   overrides: list[str] | None = None, extra: dict | None = None):
    """defaults <- preset <- config file <- `--set` overrides <- `extra` (the CLI's own flags)."""
    return build_config(merge_sources(preset, config_file, overrides, extra))


def build_task(cfg, *, log=print, progress: bool = True, resume: bool = False):
    """The engine `Task` of a run config, built by its family (a checkpoint folder given as
    `model.init_from` verified first)."""
    from .engine.checkpoint import check_model_folder

    if cfg.model.init_from:
        check_model_folder(Path(cfg.model.init_from))
    return family(cfg.task).build_task(cfg, log=log, progress=progress, resume=resume)
