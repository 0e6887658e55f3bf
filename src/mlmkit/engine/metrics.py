"""`metrics.jsonl`: one JSON record per log step and evaluation, written by rank 0 and mirrored
to the chosen loggers (TensorBoard, wandb). `mlmkit plot` and `mlmkit export` read it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import MlmkitError


class MetricsFile:
    def __init__(self, path: Path, loggers, enabled: bool = True):
        self.path, self.loggers, self.enabled = Path(path), loggers, enabled

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:  # disk full, folder gone: one line, not a traceback
            raise MlmkitError(f"could not write {self.path}: {e.strerror or e}") from None
        self.loggers.log(record)


def truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop the metric records of steps after the checkpoint (written before a
    crash, e.g. `kill -9`): the resumed run writes those steps again, so metrics.jsonl reads
    as one uninterrupted run. A torn last line (killed mid-write) is dropped too. With no
    checkpoint (step 0) everything goes: the run starts over. The final evaluation goes too: a
    resumed run ends with its own (resuming a finished run would otherwise log it twice)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and step > 0 and record.get("step", 0) <= step and not record.get("final"):
            kept.append(line + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)  # atomic: a crash here leaves the old file or the new one
