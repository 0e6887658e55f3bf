"""Who may write into an output folder: one kind of run per folder, one process at a time.

Every command that writes a folder (`train`, `prepare`, `finetune`, `export`) asks `claim` first.
A folder belongs to one kind of output -- a pre-training run, a fine-tuning run, an exported
model -- and a command refuses a folder that holds another kind (or, for `finetune` and `export`,
any earlier output) with one line naming what is there; `--overwrite` clears it, and only a folder
mlmkit recognises as its own is ever cleared. A folder is known by its lock file's `kind`, and,
for folders written before there was one, by what is in it (`holding`).

While a process writes a run folder it holds an advisory lock (`fcntl.flock`) on
`.mlmkit.lock` in it, so a second process -- a job scheduler requeueing a job that still runs, a
second terminal -- stops with one line naming the holder's PID instead of training the same run
twice. The kernel drops the lock when the holder dies, however it dies, so a lock left by a dead
process is taken over (with a message). The lock file stays (removing it would race with a
process opening it); what it holds between runs is the folder's kind.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import MlmkitError
from .runs import CHECKPOINTS_DIR, CONFIG_FILE, MASKED_LM_SUBDIR, METRICS_FILE, MODEL_DIR, SUMMARY_FILE, run_in_use

LOCK_FILE = ".mlmkit.lock"
PRETRAINING, FINETUNING, EXPORT = "pre-training run", "fine-tuning run", "exported model"
MODEL_FOLDER, OTHER = "model folder", "files mlmkit did not write"
OWN_KINDS = (PRETRAINING, FINETUNING, EXPORT)  # what `--overwrite` may clear
# The kind each writing command makes.
KIND_OF = {"train": PRETRAINING, "prepare": PRETRAINING, "finetune": FINETUNING, "export": EXPORT}
MODEL_MARKERS = ("config.json", "mlmkit_char.json", "model.safetensors", "pytorch_model.bin")


@dataclass
class Holding:
    """What a folder holds: its `kind` and the entries that show it."""

    kind: str
    evidence: list[str]

    def __str__(self) -> str:
        return f"{_a(self.kind)} ({', '.join(self.evidence[:4])}{', ...' if len(self.evidence) > 4 else ''})"


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def holding(folder: Path) -> Holding | None:
    """What `folder` holds; None when it is absent or empty (a lock file alone is empty)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    names = sorted(p.name for p in folder.iterdir() if p.name != LOCK_FILE)
    if not names:
        return None
    kind = _locked_kind(folder)
    if kind is None:
        kind = _kind_by_content(folder, set(names))
    shown = [n for n in names if n in _EVIDENCE] or names
    return Holding(kind, shown)


_EVIDENCE = {CHECKPOINTS_DIR, MODEL_DIR, METRICS_FILE, SUMMARY_FILE, CONFIG_FILE, "tokenizer", "metrics.json",
             "training_config.yaml", MASKED_LM_SUBDIR, "README.md", *MODEL_MARKERS}


def _locked_kind(folder: Path) -> str | None:
    try:
        kind = json.loads((folder / LOCK_FILE).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if kind in OWN_KINDS else None


def _kind_by_content(folder: Path, names: set[str]) -> str:
    """The kind of a folder without a lock file (written by an older mlmkit, or an export)."""
    metrics = folder / "metrics.json"
    if metrics.is_file():
        try:
            if "base_model" in json.loads(metrics.read_text(encoding="utf-8")):
                return FINETUNING
        except (OSError, ValueError, TypeError):
            pass
    if names & {CHECKPOINTS_DIR, MODEL_DIR, SUMMARY_FILE, METRICS_FILE, CONFIG_FILE, "tokenizer"}:
        return PRETRAINING
    if names & {"training_config.yaml", MASKED_LM_SUBDIR}:
        return EXPORT
    if names & set(MODEL_MARKERS):
        readme = folder / "README.md"
        if readme.is_file() and "mlmkit" in readme.read_text(encoding="utf-8", errors="replace"):
            return EXPORT
        return MODEL_FOLDER
    return OTHER


# ----------------------------------------------------------------------------------- locking
_HELD: dict[str, "RunLock"] = {}  # folders this process holds, by real path


class RunLock:
    """The advisory lock of one folder, held by this process until `release` (or its exit)."""

    def __init__(self, folder: Path, kind: str, fd: int):
        self.folder, self.kind, self.fd = folder, kind, fd

    def set_kind(self, kind: str | None) -> None:
        self.kind = kind
        _write_lock_file(self.fd, {**({"kind": kind} if kind else {}), **_me()})

    def release(self, remove: bool = False) -> None:
        """Unlock; `remove`: delete the lock file too (a folder to share, such as an export)."""
        import fcntl

        if self.fd < 0:
            return
        try:  # what stays between runs: the kind, not a holder
            if remove:
                (self.folder / LOCK_FILE).unlink(missing_ok=True)
            else:
                _write_lock_file(self.fd, {"kind": self.kind} if self.kind else {})
        except OSError:
            pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = -1
        _HELD.pop(_key(self.folder), None)


def _key(folder: Path) -> str:
    return os.path.realpath(folder)


def _me() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(["mlmkit", *sys.argv[1:3]]) if sys.argv else "mlmkit"}


def _write_lock_file(fd: int, record: dict) -> None:
    data = (json.dumps(record) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _read_holder(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def lock(folder: Path, log: Callable[[str], None] = print) -> RunLock:
    """Take `folder`'s lock for this process (creating the folder); a folder another process
    holds is one line naming it. Taking a folder this process holds already returns that lock.
    The lock's kind is the folder's until `claim` has checked it and sets its own."""
    import fcntl

    folder = Path(folder)
    held = _HELD.get(_key(folder))
    if held is not None:
        return held
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        h = _read_holder(path)
        who = f"process {h.get('pid', '?')} on {h.get('host', '?')}" + (f" ({h['command']}, since {h['since']})"
                                                                        if "command" in h and "since" in h else "")
        raise MlmkitError(f"{folder} is in use by {who}: one process at a time writes a run folder; wait for "
                          "it to end or stop it first") from None
    except OSError as e:  # a file system without locks: say so rather than write unguarded
        os.close(fd)
        raise MlmkitError(f"cannot lock {path}: {e.strerror or e} (is the folder on a file system without "
                          "file locks?)") from None
    before = _read_holder(path)
    pid = before.get("pid")
    if isinstance(pid, int) and pid != os.getpid() and (before.get("host") != socket.gethostname() or not _alive(pid)):
        log(f"note: took over the lock of {folder} from process {pid}, which is no longer running")
    # The kind stays what the folder held (None for a new one) until the caller has checked it.
    run_lock = RunLock(folder, before.get("kind") if before.get("kind") in OWN_KINDS else None, fd)
    run_lock.set_kind(run_lock.kind)
    _HELD[_key(folder)] = run_lock
    return run_lock


def held(folder: Path) -> bool:
    """True if this process holds `folder`'s lock."""
    return _key(Path(folder)) in _HELD


# ------------------------------------------------------------------------------- claiming
def claim(folder: Path, command: str, *, resume: bool = False, overwrite: bool = False,
          source: Path | None = None, task: str | None = None, log: Callable[[str], None] = print) -> RunLock:
    """Lock `folder` for `command` and check it may write there (`_check`); `--overwrite`
    clears an output of mlmkit's first. `source`: the folder the command reads (a run or model
    folder), which the output may never contain; `task`: the model family of a pre-training
    run (a run folder holds one family's run)."""
    folder = Path(folder)
    kind = KIND_OF[command]
    if source is not None:
        _check_not_over_source(folder, Path(source), command)
    run_lock = lock(folder, log)
    try:
        found = holding(folder)
        if found is not None and overwrite and found.kind in OWN_KINDS:
            _clear(folder, found)
        elif found is not None:
            _check(folder, found, command, resume=resume, task=task)
        run_lock.set_kind(kind)
    except BaseException:
        run_lock.release()
        raise
    return run_lock


def check_output(folder: Path, command: str, *, task: str | None = None) -> None:
    """`claim`'s checks without the lock, for a command that writes nothing into `folder` itself
    but whose run will (`prepare` fills the cache for a later `train -o folder`): a wrong folder is
    said now rather than after the work."""
    found = holding(Path(folder))
    if found is not None:
        _check(Path(folder), found, command, resume=False, task=task)


def _check(folder: Path, found: Holding, command: str, *, resume: bool, task: str | None) -> None:
    kind = KIND_OF[command]
    if kind == PRETRAINING and found.kind == OTHER:
        return  # a run writes its own files beside a user's (it never removes them)
    if kind == PRETRAINING and found.kind == PRETRAINING:
        theirs = _task_of(folder)
        if task and theirs and theirs != task:
            raise MlmkitError(f"{folder} holds a {theirs} pre-training run, not a {task} one: choose another output "
                              "folder (or replace it with --overwrite)")
        used = run_in_use(folder)
        if used and not resume and command == "train":
            raise MlmkitError(f"{folder} already holds a run ({', '.join(used)}): continue it with --resume, or "
                              "start it again with --overwrite")
        return
    if found.kind in OWN_KINDS:
        raise MlmkitError(f"{folder} holds {found}, not a new {kind}: choose another output folder, or replace "
                          f"it with --overwrite")
    raise MlmkitError(f"{folder} holds {found}: mlmkit writes {_a(kind)} only into a new or empty folder "
                      "(it never clears files it did not write)")


def _task_of(folder: Path) -> str | None:
    """The `task` (model family) in a run folder's config.yaml; None if unknown."""
    import yaml

    try:
        task = (yaml.safe_load((folder / CONFIG_FILE).read_text(encoding="utf-8")) or {}).get("task")
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return None
    return task if isinstance(task, str) else None


def _clear(folder: Path, found: Holding) -> None:
    """Remove what an mlmkit output left in `folder` (the lock file stays: this process holds it)."""
    from .runs import clear_run

    if found.kind == PRETRAINING:
        clear_run(folder)
        return
    for p in folder.iterdir():
        if p.name == LOCK_FILE:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _check_not_over_source(out: Path, source: Path, command: str) -> None:
    """The output folder must not be, or contain, the folder the command reads: writing (or
    clearing) it would destroy what is being read."""
    o, s = Path(os.path.realpath(out)), Path(os.path.realpath(source))
    if o == s or o in s.parents:
        raise MlmkitError(f"{command}: the output folder {out} {'is' if o == s else 'contains'} the model it reads "
                          f"({source}); write to another folder")
