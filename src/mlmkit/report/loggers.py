"""Experiment logging back-ends: JSONL always, TensorBoard and Weights & Biases when asked for.

The trainer appends every metrics record to ``<run>/metrics.jsonl`` (the source of truth
that ``mlmkit plot`` and ``mlmkit export`` read). The back-ends here mirror those records
elsewhere and also receive the text samples (Original / Masked / Predicted) logged at each
evaluation. Choose them with ``train.loggers`` in the config, e.g. ``--set train.loggers=[jsonl,tensorboard]``.

TensorBoard and wandb are optional dependencies (``pip install mlmkit[logging]``); asking for one
that is not installed is a one-line error at start-up, not a crash an hour into the run. wandb
runs in offline mode by default (``train.wandb_mode``), so it works without network or an account;
sync later with ``wandb sync <run>/wandb/offline-run-*``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MlmkitError

LOGGER_NAMES = ("jsonl", "tensorboard", "wandb")
SAMPLES_FILE = "samples.jsonl"


def _scalars(record: dict) -> dict[str, float]:
    """The numeric, finite entries of a metrics record, minus the step counter itself."""
    out = {}
    for k, v in record.items():
        if k == "step" or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(v):
            out[k] = float(v)
    return out


def _tag(key: str) -> str:
    # Group the dashboards: eval_loss -> eval/loss, loss -> train/loss.
    if key.startswith("eval_"):
        return "eval/" + key[len("eval_"):]
    return "train/" + key


class JsonlLogger:
    """Metrics go to metrics.jsonl via the trainer; text samples go to samples.jsonl here
    (kept apart so metrics.jsonl stays one flat numeric record per line)."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / SAMPLES_FILE

    def log(self, record: dict) -> None:
        pass  # the trainer writes metrics.jsonl itself (it must exist even with no loggers)

    def log_text(self, tag: str, text: str, step: int) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "tag": tag, "text": text, "time": time.time()}) + "\n")

    def close(self) -> None:
        pass


class TensorBoardLogger:
    def __init__(self, out_dir: Path, resume_step: int | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise MlmkitError("train.loggers includes 'tensorboard' but it is not installed "
                              "(pip install tensorboard)") from None
        self.log_dir = Path(out_dir) / "tensorboard"
        # A resumed run purges what the stopped one logged after its checkpoint (written again now).
        self.writer = SummaryWriter(log_dir=str(self.log_dir),
                                    purge_step=None if resume_step is None else resume_step + 1)

    def log(self, record: dict) -> None:
        step = int(record.get("step", 0))
        for key, value in _scalars(record).items():
            self.writer.add_scalar(_tag(key), value, step)

    def log_text(self, tag: str, text: str, step: int) -> None:
        # TensorBoard renders text as Markdown; a fenced block keeps the columns aligned.
        self.writer.add_text(tag, "```\n" + text + "\n```", step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


WANDB_ID_FILE = "wandb_run_id.txt"


class WandbLogger:
    """`WANDB_PROJECT` / `WANDB_MODE` in the environment win over train.wandb_project / _mode;
    a resumed run continues its W&B run (the id is kept in the run folder)."""

    def __init__(self, out_dir: Path, project: str, mode: str, config: dict | None, resume: bool = False):
        import os

        try:
            import wandb
        except ImportError:
            raise MlmkitError("train.loggers includes 'wandb' but it is not installed (pip install wandb)") from None
        self.wandb = wandb
        id_file = Path(out_dir) / WANDB_ID_FILE
        kwargs = {}
        if resume and id_file.is_file():
            kwargs = {"id": id_file.read_text().strip(), "resume": "allow"}
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or project, dir=str(out_dir),
                              mode=os.environ.get("WANDB_MODE") or mode, config=config or {},
                              name=Path(out_dir).resolve().name, reinit="finish_previous", **kwargs)
        if getattr(self.run, "id", None):
            id_file.write_text(str(self.run.id))

    def log(self, record: dict) -> None:
        scalars = {_tag(k): v for k, v in _scalars(record).items()}
        if scalars:
            self.run.log(scalars, step=int(record.get("step", 0)))

    def log_text(self, tag: str, text: str, step: int) -> None:
        self.run.log({tag: self.wandb.Html("<pre>" + _html_escape(text) + "</pre>")}, step=step)

    def close(self) -> None:
        self.run.finish()


def _html_escape(text: str) -> str:
    import html

    return html.escape(text)


class Loggers:
    """Fans every call out to the chosen back-ends; a no-op on non-main ranks. The trainer hands
    it records and text (the samples a task renders); loggers never call back into the trainer
    or a task."""

    def __init__(self, backends: list):
        self.backends = backends

    def log(self, record: dict) -> None:
        for b in self.backends:
            b.log(record)

    def log_text(self, tag: str, text: str, step: int) -> None:
        for b in self.backends:
            b.log_text(tag, text, step)

    def close(self) -> None:
        for b in self.backends:
            b.close()


def check_logger_names(names: list[str]) -> None:
    for name in names:
        if name not in LOGGER_NAMES:
            raise ConfigError(f"config key 'train.loggers': unknown logger {name!r} "
                              f"(choose from {', '.join(LOGGER_NAMES)})")


def build_loggers(cfg, out_dir: str | Path, *, enabled: bool = True, run_config: dict | None = None,
                  resume_step: int | None = None) -> Loggers:
    """Loggers for a `TrainConfig` (fields `loggers`, `show_samples`, `wandb_project`, `wandb_mode`).

    `enabled=False` (non-main DDP ranks) gives a logger that does nothing. `run_config`: what the
    experiment trackers record (default: the run's config.yaml in `out_dir`, else `cfg`).
    `resume_step`: the step a resumed run continues from."""
    if not enabled:
        return Loggers([])
    names = list(getattr(cfg, "loggers", None) or ["jsonl"])
    check_logger_names(names)
    if "jsonl" not in names:
        names.insert(0, "jsonl")  # JSONL always
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if run_config is None and (out_dir / "config.yaml").is_file():
        import yaml

        run_config = yaml.safe_load((out_dir / "config.yaml").read_text(encoding="utf-8"))  # every section
    if run_config is None and dataclasses.is_dataclass(cfg):
        run_config = dataclasses.asdict(cfg)
    backends: list = []
    for name in dict.fromkeys(names):  # de-duplicated, order kept
        if name == "jsonl":
            backends.append(JsonlLogger(out_dir))
        elif name == "tensorboard":
            backends.append(TensorBoardLogger(out_dir, resume_step))
        elif name == "wandb":
            backends.append(WandbLogger(out_dir, getattr(cfg, "wandb_project", "mlmkit"),
                                        getattr(cfg, "wandb_mode", "offline"), run_config,
                                        resume=resume_step is not None))
    return Loggers(backends)


def read_samples(run_dir: str | Path) -> list[dict[str, Any]]:
    """The text samples a run logged (for notebooks and tests)."""
    path = Path(run_dir) / SAMPLES_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
