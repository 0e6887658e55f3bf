"""Atomic, verifiable training checkpoints.

A checkpoint is a folder `step-NNNNNNNN/` with the model weights (safetensors), the optimiser and
RNG states (torch files, loaded with `weights_only=True`), the trainer state (JSON) and a
`manifest.json` holding every file's size and SHA-256. It is written into a temporary folder,
fsync'ed, then renamed: a crash mid-write leaves either the old set or the new one, never a
half checkpoint that looks whole. At resume the newest folder whose manifest verifies is used;
a corrupted one is reported and skipped.

Distributed runs: only rank 0 writes, but saving is a collective call (every rank calls
`save_checkpoint`): the RNG states of all ranks are gathered so each rank resumes its own dropout
stream, FSDP's sharded parameters and optimiser state are gathered into full (unsharded) state
dicts -- a checkpoint does not depend on the number of ranks that wrote it -- and a write error
on rank 0 is sent to every rank, so all of them stop with the same message instead of hanging.
FSDP checkpoints key the optimiser state by parameter name, DDP/single-process ones by index:
resume with the same strategy. Resuming reads the files on every rank (a shared file system).

A task may write its weights in its own exact form (`Task.weights_codec`, e.g. a mostly-zero table
as its set cells); loading turns them back into the model's state dict before anything is set.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_model, save_model

from ..errors import MlmkitError
from .task import WeightsCodec

MANIFEST = "manifest.json"
BEST = "best"  # the weights of the best evaluation (`train.restore_best`), beside the step-N folders


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


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _full_state(model: torch.nn.Module, optimizer):
    """Full (unsharded) model and optimiser state dicts of an FSDP model, on CPU, on rank 0
    (empty elsewhere). A collective: every rank must call it."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    optim_sd = None if optimizer is None else get_optimizer_state_dict(model, optimizer, options=opts)
    return get_model_state_dict(model, options=opts), optim_sd


def _storage_key(t: torch.Tensor) -> tuple:
    """What two names of one tied weight share: saving keeps one name per key, loading accepts
    either."""
    return t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape)


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors refuses tensors that share memory (tied weights): keep one name per storage,
    as `safetensors.torch.save_model` does; loading restores the tie through the module. Empty
    tensors share no memory (all sit at address 0): each is kept."""
    from safetensors.torch import save_file

    seen, out = set(), {}
    for name, t in tensors.items():
        key = _storage_key(t)
        if t.device.type != "meta" and t.numel() and key in seen:
            continue
        seen.add(key)
        out[name] = t.contiguous()
    save_file(out, str(path), metadata={"format": "pt"})


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], file: Path) -> None:
    """`state` into `model`: every weight must be there, and no other (a tied weight saved once,
    see `save_tensors`, loads through either name)."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    ptrs: dict = {}
    for name, t in model.state_dict().items():
        ptrs.setdefault(_storage_key(t), []).append(name)
    tied = {n for names in ptrs.values() if len(names) > 1 and any(m in state for m in names) for n in names}
    missing = [m for m in missing if m not in tied]
    if missing or unexpected:
        raise MlmkitError(f"{file}: does not fit the model "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")


def save_checkpoint(root: Path, step: int, model: torch.nn.Module, optimizer, scaler,
                    trainer_state: dict[str, Any], keep: int = 2, *, sharded: bool = False,
                    best: bool = False, model_files: Callable[[Path], None] | None = None,
                    submodule: str = "", codec: WeightsCodec | None = None) -> Path:
    """Write checkpoint `step` under `root`; `sharded`: the model is FSDP-sharded; `best`: write
    the model weights alone to `root/best` (replacing the previous best, never rotated);
    `model_files(folder)` adds what makes the weights a loadable model folder (`Task.model_files`);
    `submodule`: the weights are that submodule's, under its own names (`Task.saved_submodule`);
    `codec`: how the weights are written (`Task.weights_codec`; None: as they are).
    In a distributed run every rank must call this (see the module docstring)."""
    root = Path(root)
    final = root / (BEST if best else f"step-{step:08d}")
    if best:
        optimizer = scaler = None
        keep = 0
    dist = _dist()
    rank = dist.get_rank() if dist else 0
    rngs = [rng_state()]
    if dist:
        rngs = [None] * dist.get_world_size()
        dist.all_gather_object(rngs, rng_state())
    model_sd, optim_sd = _full_state(model, optimizer) if sharded else (None, None)
    if model_sd is not None and submodule:
        model_sd = {k.removeprefix(submodule + "."): v for k, v in model_sd.items()}
    elif submodule:
        model = model.get_submodule(submodule)
    error = None
    if rank == 0:
        error = _write(root, final, step, model, optimizer, scaler, trainer_state, keep,
                       rngs, model_sd, optim_sd, model_files, codec)
    if dist:
        box = [error]
        dist.broadcast_object_list(box, src=0)
        error = box[0]
    if error:
        raise MlmkitError(error)
    return final


def _write(root: Path, final: Path, step: int, model, optimizer, scaler, trainer_state, keep,
           rngs, model_sd, optim_sd, model_files=None, codec: WeightsCodec | None = None) -> str | None:
    """Rank 0's part of `save_checkpoint`; returns an error message instead of raising."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        # Half-written folders of a process killed mid-save (kill -9, power loss): rank 0 is the
        # only writer, so any that exist now are dead; they were never visible as checkpoints.
        for stale in root.glob(".step-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".step-{step:08d}.", dir=root))
        if model_sd is None:
            optim_sd = None if optimizer is None else optimizer.state_dict()
        if model_sd is None and codec is None:
            save_model(model, str(tmp / "model.safetensors"))
        else:
            state = model.state_dict() if model_sd is None else model_sd
            save_tensors(codec.pack(state) if codec else state, tmp / "model.safetensors")
        if model_files is not None:
            model_files(tmp)
        if optim_sd is not None:
            torch.save(optim_sd, tmp / "optimizer.pt")
        # "rng" is rank 0's (and the only one of a single-process run); "rng_per_rank" lets
        # each rank of a distributed run resume its own stream.
        extra = {"rng": rngs[0], "rng_per_rank": rngs, "sharded": model_sd is not None}
        if scaler is not None:
            extra["scaler"] = scaler.state_dict()
        torch.save(extra, tmp / "rng.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2))
        files = {}
        for p in sorted(tmp.iterdir()):
            with open(p, "rb") as f:
                os.fsync(f.fileno())
            files[p.name] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        manifest = {"step": step, "files": files, "manifest_sha256": _manifest_digest(step, files)}
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
    except Exception as e:  # disk full, file-size limit, read-only or vanished folder...
        if "tmp" in locals() and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        reason = write_failure(e, root)
        earlier = list_checkpoints(root)
        kept = f"the previous checkpoint ({earlier[-1].name}) is intact" if earlier else "there is no earlier checkpoint"
        return f"could not write checkpoint step {step} to {root}: {reason}; {kept}"
    # Rotation only after the new checkpoint is complete, so a failed save never costs the
    # last good one. The one just written is always kept, with the keep - 1 newest before it;
    # checkpoints of later steps are what a resume rolled back from (corrupt, or not loadable).
    if keep > 0:
        earlier = [c for c in list_checkpoints(root) if c.name < final.name]
        later = [c for c in list_checkpoints(root) if c.name > final.name]
        for old in earlier[: max(len(earlier) - (keep - 1), 0)] + later:
            shutil.rmtree(old, ignore_errors=True)
    return None


def write_failure(e: BaseException, folder: Path) -> str:
    """Why a write into `folder` failed, in one line. Python's writers raise OSError with an errno;
    safetensors' Rust writer says "(os error N)"; torch.save's C++ writer loses the errno and
    says only "unexpected pos" -- so then the file-size limit and the free space are looked at."""
    code = getattr(e, "errno", None)
    match = re.search(r"\(os error (\d+)\)", str(e))
    if code is None and match:
        code = int(match.group(1))
    if code is not None:
        return os.strerror(code) + (" (the file-size limit, ulimit -f)" if code == errno.EFBIG else "")
    if "unexpected pos" in str(e):
        limit = _file_size_limit()
        if limit is not None:
            return f"File too large or no space left on device (the file-size limit, ulimit -f, is {limit:,} bytes)"
        free = _free_bytes(folder)
        if free is not None and free < 256 << 20:
            return f"No space left on device ({free / 2**20:.0f} MB free)"
        return "the write was cut short (is the disk full?)"
    return " ".join(str(e).split()) or type(e).__name__  # one line


def _file_size_limit() -> int | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def _free_bytes(folder: Path) -> int | None:
    for p in (Path(folder), *Path(folder).parents):
        if p.exists():
            try:
                return shutil.disk_usage(p).free
            except OSError:
                return None
    return None


def list_checkpoints(root: Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))


REQUIRED = ("model.safetensors", "rng.pt", "trainer_state.json")  # + optimizer.pt, except `best`


def _manifest_digest(step: int, files: dict) -> str:
    """The manifest's own checksum: a manifest edited or emptied after writing does not verify."""
    return hashlib.sha256(json.dumps({"step": step, "files": files}, sort_keys=True).encode()).hexdigest()


def verify(ckpt: Path) -> str | None:
    """None if the checkpoint is whole, else what is wrong with it."""
    mpath = ckpt / MANIFEST
    if not mpath.is_file():
        return "no manifest"
    try:
        manifest = json.loads(mpath.read_text())
        files, step = manifest["files"], manifest["step"]
        if manifest.get("manifest_sha256") != _manifest_digest(step, files):
            return "the manifest fails its own checksum"
        required = REQUIRED if ckpt.name == BEST else REQUIRED + ("optimizer.pt",)
        missing = [name for name in required if name not in files]
        if missing:
            return f"the manifest lists no {missing[0]}"
        for name, meta in files.items():
            p = ckpt / name
            if not p.is_file():
                return f"missing {name}"
            if p.stat().st_size != meta["bytes"]:
                return f"{name} is truncated"
            if _sha256(p) != meta["sha256"]:
                return f"{name} fails its checksum"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return f"unreadable manifest ({type(e).__name__})"
    return None


def iter_valid(root: Path, log=print):
    """The checkpoints that verify, newest first, verified one at a time as they are asked for
    (each corrupt one reported)."""
    for ckpt in reversed(list_checkpoints(root)):
        problem = verify(ckpt)
        if problem is None:
            yield ckpt
        else:
            log(f"checkpoint {ckpt.name} is corrupt ({problem}); falling back to the previous one")


def latest_valid(root: Path, log=print) -> Path | None:
    return next(iter_valid(root, log), None)


def check_resumable(run: Path, resume) -> None:
    """Before any work, that there is something to resume: `resume` True needs a checkpoint in
    `run/checkpoints` that verifies; a path, that checkpoint; "auto", one that verifies when
    there are any (none at all: a new run starts). Otherwise one line, and nothing is touched."""
    run = Path(run)
    if isinstance(resume, (str, Path)) and resume != "auto":
        ckpt = Path(resume)
        problem = verify(ckpt) if ckpt.is_dir() else "no such checkpoint folder"
        if problem:
            raise MlmkitError(f"cannot resume from {ckpt}: {problem}")
        return
    flag = "--auto-resume" if resume == "auto" else "--resume"
    root = run / "checkpoints"
    existing = list_checkpoints(root)
    if not existing and resume == "auto":
        return
    if not run.is_dir():
        raise MlmkitError(f"cannot resume {run}: there is no such run folder; nothing was written (check -o, or "
                          f"start a new run without {flag})")
    if any(verify(c) is None for c in reversed(existing)):
        return
    raise MlmkitError(nothing_to_resume(root, len(existing), flag))


def nothing_to_resume(root: Path, n_existing: int, flag: str = "--resume") -> str:
    why = (f"none of its {n_existing} checkpoint(s) verifies and loads" if n_existing else "it holds no checkpoint")
    return (f"cannot resume from {root}: {why}; nothing was resumed and nothing deleted (check -o, or start a "
            f"new run without {flag})")


def check_model_folder(path: Path) -> None:
    """A checkpoint folder given as a model folder (eval, predict, export, --init-from) is verified
    against its manifest first: a damaged one would load and give NaN or nonsense."""
    path = Path(path)
    if not path.is_dir():
        return
    if (path / MANIFEST).is_file() or (path / "trainer_state.json").is_file() or path.parent.name == "checkpoints":
        problem = verify(path)
        if problem:
            raise MlmkitError(f"checkpoint {path} is damaged: {problem} (use another checkpoint of the run)")


def load_weights(ckpt: Path, model: torch.nn.Module, *, sharded: bool = False, submodule: str = "",
                 codec: WeightsCodec | None = None) -> None:
    """Only the model weights of checkpoint `ckpt` (e.g. `best`), into `model` (`submodule`,
    `codec`: as `save_checkpoint`; checkpoints of older mlmkit versions hold the whole model's
    names, and those written without a codec load with one)."""
    from safetensors import safe_open

    with safe_open(str(ckpt / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    # The submodule's own names, unless they are not all its names. (Not "starts with
    # `submodule.`": ModernBERT's own names start with "model." too, the submodule's name.)
    whole = not submodule or not keys <= set(model.get_submodule(submodule).state_dict())
    target, file = model if whole else model.get_submodule(submodule), ckpt / "model.safetensors"
    if not sharded and codec is None:
        load_model(target, str(file))
        return
    from safetensors.torch import load_file

    state = load_file(str(file))
    if codec is not None:
        state = codec.unpack(state, target)
    if not sharded:
        load_state(target, state, file)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    if not whole:
        state = {f"{submodule}.{k}": v for k, v in state.items()}
    # strict=False: a tied weight is stored once (see `save_tensors`) and loading it
    # through either name restores both. A name the model does not have is still an error:
    # it would be left out silently (a table the task's codec did not unpack, a wrong file).
    unexpected = sorted(set(state) - set(model.state_dict()))
    if unexpected:
        raise MlmkitError(f"{file}: does not fit the model (unexpected {unexpected[:3]})")
    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=False))


def load_checkpoint(ckpt: Path, model: torch.nn.Module, optimizer, scaler, *,
                    sharded: bool = False, submodule: str = "", codec: WeightsCodec | None = None) -> dict[str, Any]:
    """Restore model, optimiser, scaler and this rank's RNG state; returns the trainer state.
    `sharded`: the model is FSDP-sharded (every rank reads the full files and keeps its shard)."""
    extra = torch.load(ckpt / "rng.pt", weights_only=True, map_location="cpu")
    if bool(extra.get("sharded", False)) != sharded:
        raise MlmkitError(f"checkpoint {ckpt} was written {'with' if extra.get('sharded') else 'without'} "
                          "FSDP; resume it with the same train.strategy")
    optim_sd = torch.load(ckpt / "optimizer.pt", weights_only=True, map_location="cpu")
    load_weights(ckpt, model, sharded=sharded, submodule=submodule, codec=codec)
    if sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, optimizer, optim_sd, options=StateDictOptions(full_state_dict=True))
    else:
        optimizer.load_state_dict(optim_sd)
    if scaler is not None and "scaler" in extra:
        scaler.load_state_dict(extra["scaler"])
    dist = _dist()
    rank = dist.get_rank() if dist else 0
    per_rank = extra.get("rng_per_rank") or [extra["rng"]]
    # Same world size: each rank gets its own stream back; otherwise rank 0's (data order and
    # masks do not depend on it, only dropout does).
    set_rng_state(per_rank[rank] if rank < len(per_rank) else extra["rng"])
    return json.loads((ckpt / "trainer_state.json").read_text())
