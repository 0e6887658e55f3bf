"""Typed run configuration: dataclasses loaded from YAML, presets, dotted overrides.

Resolution order (later wins): dataclass defaults -> preset -> `--config FILE` -> `--set a.b=v`.
Every key is checked against the dataclass fields, so a typo fails with the dotted key named
instead of being silently ignored (the most common way a run trains the wrong thing).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin

import yaml

from .errors import ConfigError


@dataclass
class DataConfig:
    train: Optional[list[str]] = None  # files, folders, globs, or hub dataset names
    validation: Optional[list[str]] = None  # separate validation source(s); else a held-out fraction
    validation_fraction: float = 0.05
    text_column: str = "text"
    format: Literal["auto", "text", "jsonl", "csv", "tsv", "parquet", "hf"] = "auto"
    hf_config: Optional[str] = None
    hf_split: str = "train"
    mode: Literal["line_by_line", "group_texts"] = "group_texts"
    max_length: int = 128
    max_samples: Optional[int] = None  # cap on records read (after skipping bad ones)
    max_eval_samples: Optional[int] = 2000  # cap on validation sequences (keeps evaluation cheap)
    on_bad_record: Literal["error", "skip"] = "error"

    def __post_init__(self):
        _check(0.0 <= self.validation_fraction < 1.0, "data.validation_fraction", "must be in [0, 1)")
        _check(self.max_length >= 8, "data.max_length", "must be >= 8")


@dataclass
class TokenizerConfig:
    name_or_path: Optional[str] = None  # None: train one (from scratch) or use the init_from checkpoint's
    kind: Literal["wordpiece", "bpe"] = "wordpiece"
    vocab_size: int = 8192
    min_frequency: int = 2
    lowercase: bool = True

    def __post_init__(self):
        _check(self.vocab_size >= 100, "tokenizer.vocab_size", "must be >= 100")


@dataclass
class ModelConfig:
    arch: str = "bert"  # any transformers masked-LM model type: bert, roberta, distilbert, modernbert, ...
    size: Literal["tiny", "mini", "small", "base"] = "tiny"
    init_from: Optional[str] = None  # hub name or local folder to continue pre-training from
    overrides: dict[str, Any] = field(default_factory=dict)  # extra transformers config kwargs
    trust_remote_code: bool = False
    sparse_prediction: bool = True  # vocabulary projection only on masked positions


@dataclass
class MaskingConfig:
    rate: float = 0.15
    mask_fraction: float = 0.8  # of selected tokens: replaced by [MASK]
    random_fraction: float = 0.1  # replaced by a random non-special token; the rest stay unchanged
    whole_word: bool = False

    def __post_init__(self):
        _check(0.0 < self.rate < 1.0, "masking.rate", "must be in (0, 1)")
        _check(0.0 <= self.mask_fraction <= 1.0, "masking.mask_fraction", "must be in [0, 1]")
        _check(0.0 <= self.random_fraction <= 1.0, "masking.random_fraction", "must be in [0, 1]")
        _check(
            self.mask_fraction + self.random_fraction <= 1.0 + 1e-9,
            "masking.random_fraction",
            "mask_fraction + random_fraction must be <= 1",
        )


@dataclass
class OptimConfig:
    lr: float = 5e-4
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    warmup_steps: Optional[int] = None  # None: warmup_ratio of the planned steps
    warmup_ratio: float = 0.06
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    ngram_lr_scale: float = 1.0  # LR multiplier for hashed n-gram tables (char models; no weight decay)

    def __post_init__(self):
        _check(self.lr > 0, "optim.lr", "must be > 0")
        _check(len(self.betas) == 2, "optim.betas", "must be two numbers")
        _check(self.ngram_lr_scale > 0, "optim.ngram_lr_scale", "must be > 0")


@dataclass
class TrainConfig:
    output_dir: str = "runs/mlm"
    seed: int = 0
    batch_size: int = 32
    grad_accum: int = 1
    max_steps: Optional[int] = None  # optimiser steps; None: epochs
    epochs: float = 1.0
    max_minutes: Optional[float] = None  # wall-clock budget; the schedule is planned from it
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: str = "auto"
    compile: bool = False
    # Data parallelism under torchrun (WORLD_SIZE > 1): "ddp" replicates the model, "fsdp"
    # shards parameters, gradients and optimiser state (FSDP2); "auto" = ddp. Ignored when
    # single-process. batch_size is per rank: the global batch is batch_size * world size.
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    eval_every: int = 200
    eval_at_start: bool = True
    log_every: int = 10
    save_every: int = 500
    keep_checkpoints: int = 2
    early_stopping_patience: Optional[int] = None  # evaluations without improvement
    max_bad_steps: int = 10  # consecutive NaN/inf losses before stopping
    progress: bool = True
    threads: Optional[int] = None  # torch intra-op threads; None: torch's default (all cores)
    # Experiment logging (see loggers.py): metrics.jsonl is always written; add "tensorboard"
    # and/or "wandb" to mirror it there. wandb defaults to offline (no network, no account).
    loggers: list[str] = field(default_factory=lambda: ["jsonl"])
    wandb_project: str = "mlmkit"
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    show_samples: int = 4  # Original/Masked/Predicted examples logged at each evaluation (0: none)

    def __post_init__(self):
        from .loggers import check_logger_names

        check_logger_names(self.loggers)
        _check(self.show_samples >= 0, "train.show_samples", "must be >= 0")
        _check(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        _check(self.grad_accum >= 1, "train.grad_accum", "must be >= 1")
        _check(self.max_steps is None or self.max_steps >= 1, "train.max_steps", "must be >= 1")
        _check(self.eval_every >= 1, "train.eval_every", "must be >= 1")


@dataclass
class Config:
    task: Literal["token", "char"] = "token"
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}': {why}")


# ---------------------------------------------------------------------------------- loading


def _shown(key: Any) -> str:
    """A key as it can be printed on one line (a newline in a --set key is shown as \\n)."""
    return repr(str(key))[1:-1]


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, checking keys and coercing values by type hint."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix or '<root>'}': expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"unknown config key '{_shown(dotted)}' (known keys here: {known})")
        kwargs[key] = _coerce(hints[key], value, dotted)
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - defensive
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}': {e}") from None


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key + ".")
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"config key '{key}': bad value {value!r}")
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
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"config key '{key}': expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        try:
            f = float(value)
        except ValueError:
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}") from None
        if not f.is_integer():
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
        return str(value)
    return value


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


def section_types(task: str) -> dict[str, type]:
    """Dataclass per section; the character task swaps in its own data/model/masking sections."""
    hints = typing.get_type_hints(Config)
    types_ = {f.name: hints[f.name] for f in dataclasses.fields(Config) if f.name != "task"}
    if task == "char":
        from .char_task import CharDataConfig, CharModelConfig, SpanMaskConfig

        types_.update(data=CharDataConfig, model=CharModelConfig, masking=SpanMaskConfig)
        types_.pop("tokenizer")
    return types_


def build_config(raw: dict) -> Config:
    """Validate a merged raw mapping into a Config (sections typed by the task)."""
    task = raw.get("task", "token")
    if task not in ("token", "char"):
        raise ConfigError(f"config key 'task': {task!r} is not one of token, char")
    types_ = section_types(task)
    kwargs: dict[str, Any] = {"task": task}
    for key, value in raw.items():
        if key in ("task", "description"):
            continue
        if key not in types_:
            raise ConfigError(f"unknown config key '{_shown(key)}' (known sections: {', '.join(sorted(types_))})")
        kwargs[key] = from_dict(types_[key], value, key + ".")
    for key, tp in types_.items():
        kwargs.setdefault(key, tp())
    cfg = Config.__new__(Config)
    for k, v in kwargs.items():
        setattr(cfg, k, v)
    if task == "char":
        cfg.tokenizer = None  # type: ignore[assignment]
    return cfg


def resolve_config(
    preset: str | None = None, config_file: str | None = None, overrides: list[str] | None = None,
    extra: dict | None = None,
) -> Config:
    """defaults <- preset <- config file <- `--set` overrides <- `extra` (the CLI's own flags)."""
    raw: dict = {}
    if preset:
        raw = deep_merge(raw, load_preset(preset))
    if config_file:
        raw = deep_merge(raw, load_yaml(config_file))
    for item in overrides or []:
        raw = deep_merge(raw, parse_override(item))
    if extra:
        raw = deep_merge(raw, extra)
    return build_config(raw)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {"task": cfg.task}
    for name in ("data", "tokenizer", "model", "masking", "optim", "train"):
        section = getattr(cfg, name, None)
        if section is not None:
            out[name] = dataclasses.asdict(section)
    return out


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")
