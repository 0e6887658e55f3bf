"""Atomic, verifiable training checkpoints.

A checkpoint is a folder `step-NNNNNNNN/` with the model weights (safetensors), the optimiser and
RNG states (torch files, loaded with `weights_only=True`), the trainer state (JSON) and a
`manifest.json` holding every file's size and SHA-256. It is written into a temporary folder,
fsync'ed, then renamed: a crash mid-write leaves either the old set or the new one, never a
half checkpoint that looks whole. At resume the newest folder whose manifest verifies is used;
a corrupted one is reported and skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from .errors import MlmkitError

MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(root: Path, step: int, model: torch.nn.Module, optimizer, scaler,
                    trainer_state: dict[str, Any], keep: int = 2) -> Path:
    root = Path(root)
    final = root / f"step-{step:08d}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".step-{step:08d}.", dir=root))
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        extra = {"rng": rng_state()}
        if scaler is not None:
            extra["scaler"] = scaler.state_dict()
        torch.save(extra, tmp / "rng.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2))
        files = {}
        for p in sorted(tmp.iterdir()):
            with open(p, "rb") as f:
                os.fsync(f.fileno())
            files[p.name] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        manifest = {"step": step, "files": files}
        mpath = tmp / MANIFEST
        with open(mpath, "w") as f:
            json.dump(manifest, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
    except OSError as e:
        if "tmp" in locals() and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        raise MlmkitError(f"could not write checkpoint to {root}: {e.strerror or e}; "
                          "the previous checkpoint is intact") from None
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))


def verify(ckpt: Path) -> str | None:
    """None if the checkpoint is whole, else what is wrong with it."""
    mpath = ckpt / MANIFEST
    if not mpath.is_file():
        return "no manifest"
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError):
        return "unreadable manifest"
    for name, meta in manifest.get("files", {}).items():
        p = ckpt / name
        if not p.is_file():
            return f"missing {name}"
        if p.stat().st_size != meta["bytes"]:
            return f"{name} is truncated"
        if _sha256(p) != meta["sha256"]:
            return f"{name} fails its checksum"
    return None


def latest_valid(root: Path, log=print) -> Path | None:
    for ckpt in reversed(list_checkpoints(root)):
        problem = verify(ckpt)
        if problem is None:
            return ckpt
        log(f"checkpoint {ckpt.name} is corrupt ({problem}); falling back to the previous one")
    return None


def load_checkpoint(ckpt: Path, model: torch.nn.Module, optimizer, scaler) -> dict[str, Any]:
    load_model(model, str(ckpt / "model.safetensors"))
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True, map_location="cpu"))
    extra = torch.load(ckpt / "rng.pt", weights_only=True, map_location="cpu")
    if scaler is not None and "scaler" in extra:
        scaler.load_state_dict(extra["scaler"])
    set_rng_state(extra["rng"])
    return json.loads((ckpt / "trainer_state.json").read_text())
