"""Typed run configuration: the shared vocabulary of keys, and loading it from YAML, presets and
`--set` overrides.

A run's config is a dataclass per section. The engine owns `train` and `optim`
(`engine/config.py`); each model family owns `data`, `model` and `masking` (and the token family
`tokenizer`), built on the shared sections below so that the same setting has the same name in
both families (`data.validation_fraction`, `data.on_bad_record`, `model.init_from`,
`masking.mask_fraction`, ...).

Resolution order (later wins): dataclass defaults -> preset -> `--config FILE` -> `--set a.b=v`.
Every key is checked against the dataclass fields, so a typo fails with the dotted key and the
known keys named instead of being silently ignored (the most common way a run trains the wrong
thing).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin

import yaml

from .errors import ConfigError


def check(ok: bool, key: str, why: str) -> None:
    """Raise a `ConfigError` naming the dotted `key` unless `ok`."""
    if not ok:
        raise ConfigError(f"config key '{key}': {why}")


def check_choices(section: Any, name: str) -> None:
    """Every `Literal[...]` field of dataclass `section` holds one of its choices (a dataclass
    built in Python, not from YAML, is checked too)."""
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        tp = hints[f.name]
        choices = get_args(tp) if get_origin(tp) is Literal else ()
        value = getattr(section, f.name)
        if choices and value not in choices:
            raise ConfigError(f"config key '{name}.{f.name}': {value!r} is not one of {', '.join(map(str, choices))}")


# ------------------------------------------------------------------------ shared sections
DATA_FORMATS = ("auto", "text", "jsonl", "csv", "tsv", "parquet", "hf")


@dataclass
class DataSection:
    """Where the records come from and how they are split; both families' `data` sections
    extend it (with their own defaults)."""

    train: Optional[list[str]] = None  # files, folders, globs, mlmkit:samples/..., or hub data sets
    validation: Optional[list[str]] = None  # separate validation source(s); else a held-out fraction
    validation_fraction: float = 0.05  # share of records held out (by a hash of the record)
    text_column: str = "text"  # JSONL / CSV / Parquet / hub column holding the text
    # how files are read; auto: by extension (.jsonl, .csv, .tsv, .parquet, each also .gz; anything
    # else is text, a record per line); hf: the names in train are hub data sets
    format: Literal["auto", "text", "jsonl", "csv", "tsv", "parquet", "hf"] = "auto"
    hf_config: Optional[str] = None  # hub data set config name
    hf_split: str = "train"  # hub split
    hf_data_files: Optional[list[str]] = None  # data_files= for datasets.load_dataset
    max_length: int = 128  # longest input (tokens or characters)
    max_samples: Optional[int] = None  # use only the first N valid records
    max_eval_samples: Optional[int] = 2000  # cap on validation examples (keeps evaluation cheap)
    on_bad_record: Literal["error", "skip"] = "error"  # error: stop with file:line; skip: count

    def __post_init__(self):
        check_choices(self, "data")
        check(0.0 <= self.validation_fraction < 1.0, "data.validation_fraction", "must be in [0, 1)")
        check(self.max_samples is None or self.max_samples >= 1, "data.max_samples", "must be >= 1")
        check(self.max_eval_samples is None or self.max_eval_samples >= 0, "data.max_eval_samples", "must be >= 0")


# Named sizes of a new encoder, for both families (model.size); model.num_layers etc. override.
MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"num_layers": 2, "hidden_size": 128, "num_heads": 2, "intermediate_size": 512},
    "mini": {"num_layers": 4, "hidden_size": 256, "num_heads": 4, "intermediate_size": 1024},
    "small": {"num_layers": 4, "hidden_size": 512, "num_heads": 8, "intermediate_size": 2048},
    "base": {"num_layers": 12, "hidden_size": 768, "num_heads": 12, "intermediate_size": 3072},
}


@dataclass
class ModelSection:
    arch: str = "bert"  # the architecture (token: a transformers model type; char: scratch | canine)
    size: str = "tiny"  # named size of a new model
    init_from: Optional[str] = None  # hub name or local folder to continue pre-training from
    overrides: dict[str, Any] = field(default_factory=dict)  # extra config kwargs of a new model
    # init_from must fill the whole encoder; true: train from whatever tensors did load (the
    # rest random), e.g. a checkpoint of a related architecture
    allow_partial_init: bool = False

    def __post_init__(self):
        check_choices(self, "model")


@dataclass
class MaskingSection:
    rate: float = 0.15  # share of the input that is predicted
    mask_fraction: float = 0.8  # of the selected units (tokens, spans): replaced by the mask

    def __post_init__(self):
        check_choices(self, "masking")


# ---------------------------------------------------------------------------------- loading
def shown(key: Any) -> str:
    """A key as it can be printed on one line (a newline in a --set key is shown as \\n)."""
    return repr(str(key))[1:-1]


def dotted_keys(cls: type, prefix: str = "") -> list[str]:
    """Every key of dataclass `cls` as `--set` writes it: sections and their fields
    (`train`, `train.max_steps`, ...)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        out.append(prefix + f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            out += dotted_keys(hints[f.name], f"{prefix}{f.name}.")
    return out


def unknown_key(dotted: str, value: Any, keys: list[str], here: list[str]) -> ConfigError:
    """The error for key `dotted` (holding `value`), which is not one of `keys`: it names the
    closest valid key (a typo is the usual cause), else the keys known at that level (`here`).
    A section holding a single key (`--set trian.max_steps=3`) is named with that key, so the
    suggestion is the whole dotted key to type."""
    full = dotted
    while isinstance(value, dict) and len(value) == 1:
        (sub, value), = value.items()
        full = f"{full}.{sub}"
    for wanted in dict.fromkeys((full, dotted)):
        # 0.75: close enough for a typo or a missing letter (train.max_step, model.sise), not so
        # loose that an unrelated key is offered (optim.learning_rate gets the list instead)
        close = difflib.get_close_matches(wanted, keys, n=1, cutoff=0.75)
        if close:
            return ConfigError(f"unknown config key '{shown(wanted)}' (did you mean '{close[0]}'?)")
    return ConfigError(f"unknown config key '{shown(dotted)}' (known keys here: {', '.join(sorted(here))})")


def from_dict(cls: type, data: Any, prefix: str = "", keys: list[str] | None = None) -> Any:
    """Build dataclass `cls` from a mapping, checking keys and coercing values by type hint.
    `keys`: every valid dotted key of the whole config, for suggestions (default: those of `cls`)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix or '<root>'}': expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    if keys is None:
        keys = dotted_keys(cls, prefix)
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            raise unknown_key(dotted, value, keys, list(names))
        kwargs[key] = _coerce(hints[key], value, dotted, keys)
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - defensive
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}': {e}") from None


def _coerce(tp: Any, value: Any, key: str, keys: list[str] | None = None) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key + ".", keys)
    if origin in (Union, types.UnionType):
        return _coerce_union(tp, value, key, keys)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"config key '{key}': {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin is list:
        (item,) = get_args(tp) or (Any,)
        if isinstance(value, (str, int, float)):
            value = [value]  # a single path/number where a list is expected
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return dict(value)
    return _SCALARS.get(tp, lambda v, k: v)(value, key)


def _coerce_union(tp: Any, value: Any, key: str, keys: list[str] | None = None) -> Any:
    args = get_args(tp)
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _coerce(arg, value, key, keys)
        except ConfigError as e:
            errors.append(str(e))
    raise ConfigError(errors[0] if errors else f"config key '{key}': bad value {value!r}")


def _to_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ConfigError(f"config key '{key}': expected true or false, got {value!r}")


def _to_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    try:
        f = float(value)
    except ValueError:
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}") from None
    if not f.is_integer():
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    return int(f)


def _to_float(value: Any, key: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{key}': expected a number, got {value!r}") from None
    if not math.isfinite(number):  # e.g. optim.weight_decay=nan: every weight would become NaN
        raise ConfigError(f"config key '{key}': expected a finite number, got {value!r}")
    return number


def _to_str(value: Any, key: str) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    return str(value)


_SCALARS = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}


def deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "overrides":
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def preset_names() -> list[str]:
    folder = resources.files("mlmkit") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict:
    path = resources.files("mlmkit") / "presets" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset '{name}' (available: {', '.join(preset_names())})")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}{where}: invalid YAML ({_yaml_problem(e)})") from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise ConfigError(f"{p}: invalid YAML (nested too deeply)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: config file is not valid UTF-8") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config file must be a mapping of sections")
    return data


def _yaml_problem(e: Exception) -> str:
    """One line: PyYAML's own messages span lines (e.g. a NUL byte: ReaderError)."""
    text = getattr(e, "problem", None) or str(e)
    return " ".join(str(text).split()) or type(e).__name__


def parse_override(item: str) -> dict:
    """`optim.lr=3e-4` -> {"optim": {"lr": 3e-4}}; the value is parsed as YAML (numbers, lists...)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")  # repr: one line
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, RecursionError):  # not YAML: take it as a plain string
        value = raw
    out: dict = {}
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def merge_sources(preset: str | None = None, config_file: str | None = None,
                  overrides: list[str] | None = None, extra: dict | None = None) -> dict:
    """defaults <- preset <- config file <- `--set` overrides <- `extra` (the CLI's own flags),
    as one raw mapping (not yet validated: that needs the family's config class)."""
    raw: dict = {}
    if preset:
        raw = deep_merge(raw, load_preset(preset))
    if config_file:
        raw = deep_merge(raw, load_yaml(config_file))
    for item in overrides or []:
        raw = deep_merge(raw, parse_override(item))
    if extra:
        raw = deep_merge(raw, extra)
    return raw


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
