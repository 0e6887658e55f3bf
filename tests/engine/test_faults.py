"""Surviving faults: kill -9, SIGTERM, a full disk, and resume cost.

The process tests run the real CLI (`python -m mlmkit train`) in a subprocess. To keep CI fast
one chain of runs serves both: run A is killed with SIGKILL after its step-4 checkpoint, run B
resumes it and gets SIGTERM a few steps later, run C (in this process) resumes B to the end. The
reference is the same command, uninterrupted, also run in this process. Every logged loss of the chain must equal the
reference's bit for bit (single process, fp32, CPU).
"""

from __future__ import annotations

import contextlib
import errno
import io
import re
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mlmkit.engine import checkpoint as ckpt_io
from mlmkit.engine.config import OptimConfig, TrainConfig
from mlmkit.errors import MlmkitError
from mlmkit.engine.loop import train

MAX_STEPS = 30


def _args(data: Path, out: Path) -> list[str]:
    return ["train", "--data", str(data), "--output", str(out), "--max-steps", str(MAX_STEPS),
            "--set", "train.log_every=1", "--set", "train.save_every=2", "--set", "train.keep_checkpoints=3",
            "--set", "train.eval_every=1000", "--set", "train.eval_at_start=false",
            "--set", "train.progress=false", "--set", "train.device=cpu", "--set", "train.precision=fp32",
            "--set", "train.batch_size=8", "--set", "train.show_samples=0", "--set", "data.max_length=32",
            "--set", "tokenizer.vocab_size=400", "--set", "model.overrides={hidden_size: 32, num_hidden_layers: 1, "
            "num_attention_heads: 2, intermediate_size: 64}"]


def _env() -> dict:
    # One thread, in the subprocesses and for the in-process reference: float reductions may
    # depend on the thread count, and on a busy 2-core CI machine one thread is several times
    # faster than two fighting for cores.
    return {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _spawn(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mlmkit", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())


def _metrics(run: Path) -> list[dict]:
    if not (run / "metrics.jsonl").is_file():
        return []
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line being written right now
            pass
    return out


def _max_loss_step(run: Path) -> int:
    return max((r["step"] for r in _metrics(run) if "loss" in r), default=0)


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    """Poll until `condition()` (bounded); fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before {what}:\n{proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture(scope="module")
def chain(tmp_path_factory, english_texts, _one_thread):
    root = tmp_path_factory.mktemp("faults")
    data = root / "data.txt"
    data.write_text("\n".join(english_texts[:600]) + "\n")
    run = root / "run"
    facts: dict = {"run": run}

    # A: killed with SIGKILL at whatever step it has reached once step 4 is checkpointed.
    a = _spawn(_args(data, run))
    _wait_for(lambda: (run / "checkpoints" / "step-00000004" / ckpt_io.MANIFEST).is_file(), a, "checkpoint 4")
    facts["a_was_running"] = a.poll() is None
    a.kill()
    a.communicate(timeout=60)
    facts["a_rc"] = a.returncode
    facts["a_last_step"] = _max_loss_step(run)

    # B: resumes A, then gets SIGTERM once it has logged 3 steps past A's last one.
    b = _spawn(_args(data, run) + ["--resume"])
    target = facts["a_last_step"] + 3
    _wait_for(lambda: _max_loss_step(run) >= target, b, f"step {target}")
    b.send_signal(signal.SIGTERM)
    _, b_err = b.communicate(timeout=120)
    facts.update(b_rc=b.returncode, b_err=b_err)
    facts["b_checkpoints"] = {c.name: ckpt_io.verify(c) for c in ckpt_io.list_checkpoints(run / "checkpoints")}

    # C: resumes B and finishes -- in this process (no signal needed, and no start-up cost).
    from mlmkit.cli import app

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        app(_args(data, run) + ["--resume"], standalone_mode=False)
    facts["c_err"] = err.getvalue()

    # The reference: the same command, uninterrupted, in this process, on the tokenizer run A
    # trained (which B and C reloaded from its checkpoints).
    ref = root / "ref"
    app(_args(data, ref) + ["--set", f"tokenizer.name_or_path={run / 'tokenizer'}"], standalone_mode=False)
    facts["ref"] = ref
    return facts


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in _metrics(run) if "loss" in r]


def test_kill_9_then_resume_reproduces_every_later_loss_bit_exactly(chain):
    assert chain["a_was_running"] and chain["a_rc"] == -signal.SIGKILL
    assert 4 <= chain["a_last_step"] < MAX_STEPS - 3
    assert "reusing this run's tokenizer" in chain["c_err"]  # not a retrained, renumbered one
    # B really resumed (a rerun from scratch would log the same losses): from A's newest checkpoint
    resumed = re.search(r"resumed from step-(\d+) \(step (\d+)", chain["b_err"])
    assert resumed and int(resumed.group(1)) >= 4 and int(resumed.group(2)) == int(resumed.group(1))
    got, ref = _losses(chain["run"]), _losses(chain["ref"])
    # One record per step (what A logged after its last checkpoint was dropped at resume) ...
    assert [s for s, _ in got] == list(range(1, MAX_STEPS + 1))
    # ... and every loss equal to the uninterrupted run's, bit for bit.
    assert got == ref


def test_sigterm_saves_at_the_next_step_boundary_and_exits_0(chain):
    assert chain["b_rc"] == 0, chain["b_err"]
    msg = [l for l in chain["b_err"].splitlines() if "received SIGTERM" in l]
    assert msg and "continue with --resume" in msg[0], chain["b_err"]
    step = int(msg[0].split("checkpoint saved at step ")[1].split()[0])
    assert chain["a_last_step"] + 3 <= step < MAX_STEPS
    # B's newest checkpoint is the one written on SIGTERM, and it verifies.
    assert max(chain["b_checkpoints"]) == f"step-{step:08d}"
    assert chain["b_checkpoints"][f"step-{step:08d}"] is None
    # C continued from exactly there, and the final model exists.
    assert f"resumed from step-{step:08d}" in chain["c_err"]
    assert (chain["run"] / "model" / "model.safetensors").is_file()


# ---------------------------------------------------------------------------- in-process faults
def _tiny_task(tokenizer, texts):
    from transformers import BertConfig, BertForMaskedLM

    from mlmkit.token_mlm.data import group_texts
    from mlmkit.token_mlm.masking import TokenMasker
    from mlmkit.token_mlm.task import TokenMLMTask

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
    seqs = group_texts(texts[:200], tokenizer, 32, progress=False)
    return TokenMLMTask(model, tokenizer, seqs, None, TokenMasker.from_tokenizer(tokenizer), batch_size=4, seed=1)


def _cfg(out: Path, **kw) -> TrainConfig:
    base = dict(output_dir=str(out), max_steps=6, log_every=1, eval_every=100, eval_at_start=False,
                save_every=2, keep_checkpoints=2, progress=False, device="cpu", precision="fp32", show_samples=0)
    return TrainConfig(**{**base, **kw})


def test_disk_full_while_saving_is_one_line_and_keeps_the_previous_checkpoint(
        tmp_path, monkeypatch, tiny_tokenizer, english_texts):
    real_save = ckpt_io.save_model
    calls = []

    def save_model(model, filename, *a, **k):
        calls.append(filename)
        if len(calls) == 2:  # the step-4 checkpoint: the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(model, filename, *a, **k)

    monkeypatch.setattr(ckpt_io, "save_model", save_model)
    with pytest.raises(MlmkitError) as e:
        train(_tiny_task(tiny_tokenizer, english_texts), _cfg(tmp_path), OptimConfig(), log=lambda s: None)
    msg = str(e.value)
    assert "\n" not in msg and "No space left on device" in msg and "step 4" in msg
    ckpts = ckpt_io.list_checkpoints(tmp_path / "checkpoints")
    assert [c.name for c in ckpts] == ["step-00000002"] and ckpt_io.verify(ckpts[0]) is None
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp left


def test_unwritable_checkpoint_folder_is_a_clear_error(tmp_path, tiny_tokenizer, english_texts):
    (tmp_path / "checkpoints").write_text("not a folder")  # works even as root, unlike chmod
    with pytest.raises(MlmkitError, match="could not write checkpoint step 2 to .*checkpoints"):
        train(_tiny_task(tiny_tokenizer, english_texts), _cfg(tmp_path), OptimConfig(), log=lambda s: None)


def test_resume_does_not_collate_or_read_skipped_batches(tiny_tokenizer, english_texts):
    task = _tiny_task(tiny_tokenizer, english_texts)
    collated, read = [], []
    real_collate, real_get = task.collate, task.train.get
    task.collate = lambda seqs, idx, g: collated.append(len(idx)) or real_collate(seqs, idx, g)
    task.train.get = lambda i: read.append(i) or real_get(i)
    n = task.num_batches(0)
    assert n > 20
    batch = next(task.train_batches(0, start=n - 3))
    assert collated == [4] and len(read) == 4  # only the batch asked for
    # and it is the batch an uninterrupted pass yields at that index
    task.collate, task.train.get = real_collate, real_get
    full = list(task.train_batches(0))[n - 3]
    assert all(torch.equal(batch[k], full[k]) for k in batch)



def test_weights_are_never_unpickled_and_remote_code_is_opt_in():
    """Every torch.load in the package passes weights_only=True, nothing passes
    trust_remote_code=True literally (it comes from --trust-remote-code), and the model loader
    defaults to no remote code."""
    import ast
    import inspect

    import mlmkit
    from mlmkit.token_mlm.model import load_model

    root = Path(mlmkit.__file__).parent
    loads = 0
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            kwargs = {k.arg: k.value for k in node.keywords}
            if isinstance(node.func, ast.Attribute) and node.func.attr == "load" and \
                    getattr(node.func.value, "id", None) == "torch":
                loads += 1
                flag = kwargs.get("weights_only")
                assert isinstance(flag, ast.Constant) and flag.value is True, f"{path}:{node.lineno}"
            remote = kwargs.get("trust_remote_code")
            assert not (isinstance(remote, ast.Constant) and remote.value is True), f"{path}:{node.lineno}"
            # from_pretrained unpickles in full only when model.allow_pickle says so
            weights = kwargs.get("weights_only")
            assert not (isinstance(weights, ast.Constant) and weights.value is False), f"{path}:{node.lineno}"
    assert loads >= 2  # the checkpoint loader's, at least
    assert inspect.signature(load_model).parameters["trust_remote_code"].default is False
    assert inspect.signature(load_model).parameters["allow_pickle"].default is False


def test_what_a_crash_leaves_behind_is_cleaned_up(tmp_path):
    from mlmkit.engine.metrics import truncate_metrics as _truncate_metrics

    # metrics.jsonl: steps after the checkpoint and a torn last line go; earlier records stay.
    metrics = tmp_path / "metrics.jsonl"
    records = [{"step": 0, "eval_loss": 9.0}] + [{"step": s, "loss": float(s)} for s in range(1, 7)]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 7, "lo')
    _truncate_metrics(metrics, 4)
    assert [json.loads(l)["step"] for l in metrics.read_text().splitlines()] == [0, 1, 2, 3, 4]
    # A half-written checkpoint folder of a killed save is removed by the next save.
    root = tmp_path / "checkpoints"
    (root / ".step-00000005.abc").mkdir(parents=True)
    (root / ".step-00000005.abc" / "model.safetensors").write_bytes(b"half")
    model = torch.nn.Linear(2, 2)
    ckpt_io.save_checkpoint(root, 6, model, torch.optim.SGD(model.parameters(), lr=0.1), None, {"step": 6})
    assert [p.name for p in root.iterdir()] == ["step-00000006"]


def test_a_real_write_failure_is_one_line_and_leaves_no_temp_folder(tmp_path, english_texts):
    """The file-size limit (`ulimit -f`) makes the real writers fail (safetensors' Rust writer
    raises its own error type, not OSError): one line naming the folder, no temp folder left."""
    data = tmp_path / "d.txt"
    data.write_text("\n".join(english_texts[:400]) + "\n")
    run = tmp_path / "run"
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20)); "
            "from mlmkit.cli import main; sys.argv = ['mlmkit'] + sys.argv[1:]; main()")
    args = ["train", "--preset", "scratch-tiny", "--data", str(data), "-o", str(run), "--max-steps", "4",
            "--set", "train.max_minutes=null", "--set", "train.save_every=2", "--set", "train.progress=false",
            "--set", "tokenizer.vocab_size=500", "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=_env(), timeout=300)
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
    assert f"could not write checkpoint step 2 to {run / 'checkpoints'}" in errors[0]
    assert "File too large" in errors[0] and "there is no earlier checkpoint" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not [p for p in (run / "checkpoints").iterdir()]  # neither a checkpoint nor a temp folder
