"""Randomised fault scenarios for mlmkit's run folders, after the idea of Jepsen: drive a real
run through a fault chosen at random, continue it as a user would, and check invariants.

A scenario (`run_scenario(seed)`) picks a model family (token or char), a fault and the step it
lands at:

    kill9        SIGKILL while training (or while a checkpoint is being written)
    sigterm      SIGTERM: the run saves at the next step boundary and exits 0
    write_fail   a file-size limit (ulimit -f) that a random checkpoint file exceeds
    corrupt      kill -9, then one random byte flipped in a random checkpoint file
    concurrent   a second process on the live run (--resume or --auto-resume)
    misuse       kill -9, then a mistaken command from `MISUSES`

then continues with `--resume` or `--auto-resume` (what a user or a job scheduler does) and
checks: no checkpoint that verified is lost by the fault or the misuse; every failure is one
`error:` line with a non-zero exit and no traceback; the continued run logs exactly the losses
and evaluations of an uninterrupted run (bit for bit); no saved tensor is non-finite; no
metrics or samples record is written twice; no temporary folder is left behind.

Runs are tiny (30 steps, a checkpoint every 3) and start as forked copies of this process, which
has imported torch and transformers once: a scenario takes a second or two, not ten.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

MAX_STEPS = 30
COMMON = ["--max-steps", str(MAX_STEPS), "--set", "train.max_minutes=null", "--set", "train.save_every=3",
          "--set", "train.keep_checkpoints=3", "--set", "train.log_every=1", "--set", "train.eval_every=10",
          "--set", "train.progress=false", "--set", "train.show_samples=1", "--set", "train.device=cpu",
          "--set", "train.precision=fp32"]
FAMILIES = {
    "token": ["train", "--preset", "scratch-tiny", "--data", "mlmkit:samples/english.txt",
              "--set", "data.max_samples=800", "--set", "tokenizer.vocab_size=400", "--set", "data.max_length=64",
              "--set", "model.overrides={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
              "intermediate_size: 64}", "--set", "train.batch_size=8"],
    "char": ["train", "--preset", "domains-tiny", "--set", "data.max_samples=3000", "--set", "model.num_layers=1",
             "--set", "model.hidden_size=32", "--set", "model.num_heads=2", "--set", "model.intermediate_size=64",
             "--set", "model.ngram_buckets=512", "--set", "model.head_ngram_buckets=1024",
             "--set", "model.head_ngram_count_buckets=4096",
             "--set", "train.batch_size=16", "--set", "data.max_eval_samples=100"],
}
FAULTS = ("kill9", "sigterm", "write_fail", "corrupt", "concurrent", "misuse")
OTHER = {"token": "char", "char": "token"}


def misuses(family: str, run: Path, spare: Path) -> list[tuple[str, list[str]]]:
    """Mistaken commands on a run that is mid-way (killed): (what, argv). Each must be refused
    without touching the run."""
    base = FAMILIES[family] + COMMON + ["-o", str(run)]
    ckpt = str(run / "checkpoints")
    return [
        ("the same command again, no --resume", base),
        ("--resume with another learning rate", base + ["--resume", "--set", "optim.lr=0.5"]),
        ("--resume with the other family's preset", FAMILIES[OTHER[family]] + COMMON + ["-o", str(run), "--resume"]),
        ("--resume with a bad value", base + ["--resume", "--set", "train.log_every=0"]),
        ("--resume with a value of the wrong type", base + ["--resume", "--set", "train.batch_size=abc"]),
        ("--resume and --overwrite together", base + ["--resume", "--overwrite"]),
        ("--resume on a mistyped folder", FAMILIES[family] + COMMON + ["-o", str(run) + "-typo", "--resume"]),
        ("finetune into the run", ["finetune", str(run), "--data", str(spare / "labels.csv"), "-o", str(run)]),
        ("export the run over itself", ["export", str(run), str(run), "--overwrite"]),
        ("export a run that has no model/ yet", ["export", str(run), str(spare / "export")]),
        ("predict on a run without model/", ["predict", str(run), "x[MASK]y" if family == "token" else "goo[?].com"]),
        ("eval a run without model/", ["eval", str(run)]),
        ("predict with --top-k 0", ["predict", ckpt, "a [MASK] b", "--top-k", "0"]),
        ("prepare the other family into the run", ["prepare"] + FAMILIES[OTHER[family]][1:] + ["-o", str(run)]),
        ("an unknown config key", base + ["--resume", "--set", "train.max_step=3"]),
        ("an unknown option", base + ["--resume", "--max-step", "3"]),
    ]


# --------------------------------------------------------------------------- forked processes
class Child:
    """`mlmkit ARGS` in a forked copy of this process (torch and transformers already imported);
    a subset of `subprocess.Popen`: pid, poll, wait, send_signal, returncode (-N: signal N)."""

    def __init__(self, args: list[str], logs: Path, fsize: int | None = None):
        logs.mkdir(parents=True, exist_ok=True)
        self.err_path = logs / f"{time.monotonic_ns()}.err"
        self.args, self.returncode = args, None
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:
            _child_main(args, self.err_path, fsize)

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float = 300):
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                self.send_signal(signal.SIGKILL)
                os.waitpid(self.pid, 0)
                raise AssertionError(f"mlmkit {' '.join(self.args[:3])} did not end within {timeout} s")
            time.sleep(0.005)
        return self.returncode

    def send_signal(self, sig) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace") if self.err_path.is_file() else ""


def _child_main(args: list[str], err_path: Path, fsize: int | None) -> None:
    code = 70
    try:
        fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        sys.argv = ["mlmkit", *args]
        from mlmkit.cli import main

        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 -- whatever escapes the CLI is itself a finding
        traceback.print_exc()
        code = 70
    finally:
        try:
            sys.stderr.flush()
        finally:
            os._exit(code)


# --------------------------------------------------------------------------- run folders
def metrics(run: Path, name: str = "metrics.jsonl") -> list[dict]:
    path = run / name
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        if isinstance(rec, dict):
            out.append(rec)
    return out


def last_step(run: Path) -> int:
    return max((r["step"] for r in metrics(run) if "loss" in r), default=0)


def verified_checkpoints(run: Path) -> dict[str, str]:
    """{name: manifest digest} of the checkpoints that verify now."""
    from mlmkit.engine.checkpoint import MANIFEST, list_checkpoints, verify

    out = {}
    for c in list_checkpoints(run / "checkpoints"):
        if verify(c) is None:
            out[c.name] = hashlib.sha256((c / MANIFEST).read_bytes()).hexdigest()
    return out


def fingerprint(folder: Path) -> dict[str, str]:
    LOCK_FILE = ".mlmkit.lock"  # (a literal: the harness also runs against older mlmkit versions)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


def non_finite_files(run: Path) -> list[str]:
    """Saved weight files holding a NaN or inf (read with numpy: no torch threads here)."""
    import numpy as np
    from safetensors.numpy import load_file

    bad = []
    for f in sorted(run.rglob("*.safetensors")):
        for name, t in load_file(str(f)).items():
            if t.dtype.kind == "f" and not np.isfinite(t).all():
                bad.append(f"{f.relative_to(run)}:{name}")
    return bad


def temp_leftovers(*folders: Path) -> list[str]:
    out = []
    for folder in folders:
        if folder.is_dir():
            out += [str(p) for p in folder.rglob(".*") if p.name != ".mlmkit.lock"]
            out += [str(p) for p in folder.rglob("*.tmp")]
    return out


# --------------------------------------------------------------------------- scenarios
@dataclass
class Outcome:
    seed: int
    family: str
    fault: str
    detail: str = ""
    landed: bool = True  # the fault happened while the run was still going
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.failures.append(what)


class Chaos:
    """Shared state of a chaos session: the work folder, the data cache, reference runs."""

    def __init__(self, root: Path):
        self.root = root
        self.cache = root / "cache"
        os.environ["MLMKIT_CACHE"] = str(self.cache)
        os.environ["OMP_NUM_THREADS"] = "1"
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"
        self.refs: dict[str, dict] = {}
        self._warm_imports()
        self._write_labels()

    @staticmethod
    def _warm_imports() -> None:
        """Import what a run imports, once, before forking (imports only: no thread pool runs)."""
        import torch

        torch.set_num_threads(1)
        import mlmkit.cli  # noqa: F401
        import mlmkit.engine.loop  # noqa: F401
        import mlmkit.token_mlm.task  # noqa: F401
        import mlmkit.char_mlm.task  # noqa: F401
        import mlmkit.export  # noqa: F401
        import mlmkit.finetune  # noqa: F401
        import transformers  # noqa: F401
        from transformers import BertForMaskedLM  # noqa: F401

    def _write_labels(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "labels.csv", "w") as f:
            f.write("text,label\n" + "".join(f"text number {i},{'ab'[i % 2]}\n" for i in range(40)))

    def reference(self, family: str) -> dict:
        """The uninterrupted run of the family's command: its records and checkpoint file sizes."""
        if family not in self.refs:
            run = self.root / f"reference-{family}"
            shutil.rmtree(run, ignore_errors=True)
            child = Child(FAMILIES[family] + COMMON + ["-o", str(run)], self.root / "logs")
            code = child.wait()
            if code != 0:
                raise RuntimeError(f"the reference {family} run failed:\n{child.stderr[-3000:]}")
            sizes = sorted({p.stat().st_size for c in (run / "checkpoints").iterdir() if c.is_dir()
                            for p in c.iterdir() if p.name != "manifest.json"})
            self.refs[family] = {"records": _comparable(metrics(run)), "sizes": sizes,
                                 "samples": [r["step"] for r in metrics(run, "samples.jsonl")]}
        return self.refs[family]

    def command(self, family: str, run: Path, *extra: str) -> list[str]:
        return FAMILIES[family] + COMMON + ["-o", str(run), *extra]


def _comparable(records: list[dict]) -> list[dict]:
    """Metrics records without wall-clock fields (time, throughput)."""
    drop = {"time_s", "tokens_per_s", "names_per_s", "samples_per_s"}
    return [{k: v for k, v in r.items() if k not in drop and not k.endswith("_per_s")} for r in records]


def one_line_failure(out: Outcome, child: Child, what: str) -> None:
    err = child.stderr
    lines = [l for l in err.splitlines() if l.startswith("error:")]
    out.check(child.returncode not in (0, None), f"{what}: exit {child.returncode}, expected a failure")
    out.check("Traceback" not in err, f"{what}: a traceback:\n{err[-1500:]}")
    out.check(len(lines) == 1 or (child.returncode == 2 and "Usage:" in err),
              f"{what}: {len(lines)} error lines:\n{err[-1500:]}")


def wait_for_step(child: Child, run: Path, step: int, timeout: float = 120) -> bool:
    """Poll until the run has logged `step` (True) or the process ended first (False)."""
    deadline = time.monotonic() + timeout
    while last_step(run) < step:
        if child.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def run_scenario(chaos: Chaos, seed: int) -> Outcome:
    rng = random.Random(seed)
    family = rng.choice(sorted(FAMILIES))
    fault = FAULTS[seed % len(FAULTS)] if seed < len(FAULTS) * 2 else rng.choice(FAULTS)
    out = Outcome(seed, family, fault)
    ref = chaos.reference(family)
    work = Path(tempfile.mkdtemp(prefix=f"s{seed:04d}-", dir=chaos.root))
    run = work / "run"
    try:
        globals()[f"_fault_{fault}"](chaos, rng, family, run, work, out)
        if not out.failures:
            _continue_and_compare(chaos, rng, family, run, ref, out)
    except Exception as e:  # noqa: BLE001 -- a harness error is reported as the scenario's failure
        out.failures.append(f"harness: {type(e).__name__}: {e}\n{traceback.format_exc()[-1500:]}")
    if not out.failures:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _interrupt(chaos: Chaos, rng: random.Random, family: str, run: Path, out: Outcome, sig=signal.SIGKILL) -> Child:
    """Start the run and send `sig` once it has logged a random step (or, for SIGKILL, once
    a checkpoint folder is being written); the process has ended when this returns."""
    child = Child(chaos.command(family, run), chaos.root / "logs")
    if sig == signal.SIGKILL and rng.random() < 0.3:
        out.detail = "during a checkpoint write"
        ckpts = run / "checkpoints"
        deadline = time.monotonic() + 120
        while child.poll() is None and time.monotonic() < deadline:
            if ckpts.is_dir() and any(p.name.startswith(".step-") for p in ckpts.iterdir()):
                break
            time.sleep(0.0005)
    else:
        step = rng.randint(1, MAX_STEPS - 1)
        out.detail = f"at step {step}"
        wait_for_step(child, run, step)
    out.landed = child.poll() is None
    child.send_signal(sig)
    child.wait()
    return child


def _fault_kill9(chaos, rng, family, run, work, out) -> None:
    _interrupt(chaos, rng, family, run, out)
    _every_checkpoint_verifies(run, out, "after kill -9")


def _fault_sigterm(chaos, rng, family, run, work, out) -> None:
    child = _interrupt(chaos, rng, family, run, out, signal.SIGTERM)
    out.check(child.returncode == 0, f"SIGTERM: exit {child.returncode}:\n{child.stderr[-1500:]}")
    if out.landed:
        out.check("continue with --resume" in child.stderr, f"SIGTERM: no resume hint:\n{child.stderr[-800:]}")
    _every_checkpoint_verifies(run, out, "after SIGTERM")


def _fault_write_fail(chaos, rng, family, run, work, out) -> None:
    sizes = chaos.reference(family)["sizes"]
    limit = rng.randint(sizes[0], sizes[-1]) if len(sizes) > 1 else sizes[0] // 2
    out.detail = f"ulimit -f {limit} bytes"
    child = Child(chaos.command(family, run), chaos.root / "logs", fsize=limit)
    child.wait()
    if child.returncode == 0:
        out.landed = False  # every file fitted
        return
    one_line_failure(out, child, "a write past the file-size limit")
    line = next((l for l in child.stderr.splitlines() if l.startswith("error:")), "")
    out.check("File too large" in line, f"the write failure does not say what happened: {line}")
    if "could not write checkpoint" in line:
        out.check("intact" in line or "no earlier checkpoint" in line, f"nothing said of the earlier checkpoint: {line}")
    _every_checkpoint_verifies(run, out, "after a write failure")


def _fault_corrupt(chaos, rng, family, run, work, out) -> None:
    _interrupt(chaos, rng, family, run, out)
    ckpts = [c for c in sorted((run / "checkpoints").glob("step-*")) if c.is_dir()] if (run / "checkpoints").is_dir() else []
    if not ckpts:
        out.landed = False
        return
    target = rng.choice(ckpts)
    victim = rng.choice(sorted(p for p in target.iterdir() if p.is_file()))
    data = bytearray(victim.read_bytes())
    where = rng.randrange(len(data))
    data[where] ^= 1 << rng.randrange(8)
    victim.write_bytes(bytes(data))
    out.detail += f"; flipped a bit of {target.name}/{victim.name} at byte {where}"


def _fault_concurrent(chaos, rng, family, run, work, out) -> None:
    first = Child(chaos.command(family, run), chaos.root / "logs")
    step = rng.randint(1, MAX_STEPS - 1)
    out.detail = f"second process at step {step}"
    wait_for_step(first, run, step)
    flag = rng.choice(["--resume", "--auto-resume"])
    second = Child(chaos.command(family, run, flag), chaos.root / "logs")
    second.wait()
    out.landed = first.poll() is None
    first.wait()
    out.check(first.returncode == 0, f"the first process failed:\n{first.stderr[-1500:]}")
    if out.landed:
        one_line_failure(out, second, f"a second process ({flag})")
        out.check(f"in use by process {first.pid}" in second.stderr, f"the lock holder is not named:\n{second.stderr[-800:]}")


def _fault_misuse(chaos, rng, family, run, work, out) -> None:
    _interrupt(chaos, rng, family, run, out)
    what, args = rng.choice(misuses(family, run, chaos.root))
    out.detail += f"; then: {what}"
    before = fingerprint(run)
    child = Child(args, chaos.root / "logs")
    child.wait()
    one_line_failure(out, child, what)
    out.check(fingerprint(run) == before, f"{what}: changed the run's files")
    out.check(not Path(str(run) + "-typo").exists(), f"{what}: created the mistyped folder")


def _every_checkpoint_verifies(run: Path, out: Outcome, when: str) -> None:
    from mlmkit.engine.checkpoint import list_checkpoints, verify

    for c in list_checkpoints(run / "checkpoints"):
        problem = verify(c)
        out.check(problem is None, f"{when}: checkpoint {c.name} does not verify ({problem})")


def _continue_and_compare(chaos, rng, family, run, ref, out) -> None:
    """Continue as a user would, then compare with the uninterrupted run."""
    flag = rng.choice(["--resume", "--auto-resume"])
    had = verified_checkpoints(run)
    child = Child(chaos.command(family, run, flag), chaos.root / "logs")
    child.wait()
    if child.returncode != 0 and ((not had and flag == "--resume") or "verifies" in child.stderr):
        # nothing to resume (the fault came before the first checkpoint, or hit the only one):
        # one line, then the user starts the run again
        one_line_failure(out, child, f"{flag} with nothing to resume")
        child = Child(chaos.command(family, run, "--overwrite"), chaos.root / "logs")
        child.wait()
    out.check(child.returncode == 0, f"continuing with {flag}: exit {child.returncode}:\n{child.stderr[-1500:]}")
    if child.returncode != 0:
        return
    got = _comparable(metrics(run))
    out.check(got == ref["records"], _first_difference(got, ref["records"]))
    steps = [r["step"] for r in metrics(run) if "loss" in r]
    out.check(len(steps) == len(set(steps)), "metrics.jsonl holds a step twice")
    samples = [r["step"] for r in metrics(run, "samples.jsonl")]
    out.check(samples == ref["samples"], f"samples.jsonl steps {samples} != {ref['samples']}")
    out.check(not non_finite_files(run), f"non-finite tensors: {non_finite_files(run)[:3]}")
    left = temp_leftovers(run, chaos.cache)
    out.check(not left, f"temporary files left: {left[:3]}")


def _first_difference(got: list[dict], want: list[dict]) -> str:
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return f"metrics record {i} differs from the uninterrupted run's: {a} != {b}"
    return f"{len(got)} metrics records, the uninterrupted run has {len(want)}"


def run_many(root: Path, seeds: list[int], log=print) -> list[Outcome]:
    chaos = Chaos(root)
    outcomes = []
    for seed in seeds:
        t = time.monotonic()
        o = run_scenario(chaos, seed)
        outcomes.append(o)
        status = "ok" if not o.failures else "FAILED"
        log(f"scenario {seed:4d} {o.family:5s} {o.fault:10s} {status:6s} {time.monotonic() - t:5.1f}s  "
            f"{o.detail}{'' if o.landed else ' (the run ended first)'}")
        for f in o.failures:
            log("    " + f.replace("\n", "\n    "))
    return outcomes
