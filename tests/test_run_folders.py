"""No command loses a run: a folder holds one kind of output, one process writes it at a time,
--auto-resume never throws a run away, and every checkpoint is verified before it is used.

One tiny pre-training run is trained once (module fixture) and copied for each test that
damages or misuses it; every misuse must be one line, a non-zero exit, and leave the run's
files byte for byte as they were."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli_runner import run_cli
from mlmkit.engine import checkpoint as ckpt_io
from mlmkit.errors import MlmkitError
from mlmkit.folders import LOCK_FILE

TINY = ["--set", "model.size=tiny", "--set", "tokenizer.vocab_size=400", "--set", "train.progress=false",
        "--set", "train.eval_every=4", "--set", "train.save_every=2", "--set", "train.max_minutes=null",
        "--set", "train.show_samples=0", "--set", "model.overrides={hidden_size: 32, num_hidden_layers: 1, "
        "num_attention_heads: 2, intermediate_size: 64}"]


def _cli(args: list[str]) -> tuple[int, str]:
    """`mlmkit ARGS` in this process (a module fixture has no capsys): (exit code, stderr)."""
    import contextlib
    import io

    from mlmkit.cli import main

    err, argv = io.StringIO(), sys.argv
    sys.argv = ["mlmkit", *args]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main()
        code = 0
    except SystemExit as e:
        code = e.code or 0
    finally:
        sys.argv = argv
    return code, err.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, english_texts):
    root = tmp_path_factory.mktemp("runs")
    data = root / "corpus.txt"
    data.write_text("\n".join(english_texts[:500]) + "\n")
    labels = root / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i, t in enumerate(english_texts[:60]):
            w.writerow([t, "ab"[i % 2]])
    run = root / "run"
    code, err = _cli(["train", "--preset", "scratch-tiny", "--data", str(data), "-o", str(run), "--max-steps", "4",
                      *TINY])
    assert code == 0, err
    return {"root": root, "data": data, "labels": labels, "run": run}


@pytest.fixture()
def run(trained, tmp_path) -> Path:
    """A copy of the trained run to misuse."""
    copy = tmp_path / "run"
    shutil.copytree(trained["run"], copy)
    return copy


def _fingerprint(folder: Path) -> dict[str, str]:
    """Every file under `folder` (the lock file aside) with its SHA-256: what must not change."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


def _refused(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    lines = [l for l in err.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _train_args(trained, out: Path, *extra: str) -> list[str]:
    return ["train", "--preset", "scratch-tiny", "--data", str(trained["data"]), "-o", str(out), "--max-steps", "4",
            *TINY, *extra]


# ------------------------------------------------------------------------ one kind per folder
def test_finetune_into_the_pretraining_run_it_reads_is_refused_and_the_run_survives(trained, run):
    before = _fingerprint(run)
    for extra in ([], ["--overwrite"]):
        code, err = _cli(["finetune", str(run), "--data", str(trained["labels"]), "-o", str(run), *extra])
        _refused(code, err, "the model it reads", str(run))
    assert _fingerprint(run) == before
    code, err = _cli(_train_args(trained, run, "--resume", "--max-steps", "6"))
    assert code == 0 and "resumed from step-00000004" in err, err  # still a run that resumes


def test_each_command_refuses_another_kind_of_output(trained, run, tmp_path):
    cls = tmp_path / "cls"
    code, err = _cli(["finetune", str(run), "--data", str(trained["labels"]), "-o", str(cls), "--epochs", "1"])
    assert code == 0, err
    cls_files = _fingerprint(cls)
    # train into a fine-tuning run: refused, with or without --resume
    for extra in ([], ["--resume"], ["--auto-resume"]):
        code, err = _cli(_train_args(trained, cls, *extra))
        _refused(code, err, str(cls), "fine-tuning run")
    # finetune again into it: refused without --overwrite
    code, err = _cli(["finetune", str(run), "--data", str(trained["labels"]), "-o", str(cls)])
    _refused(code, err, "holds a fine-tuning run", "--overwrite")
    # export into a pre-training run or a fine-tuning run: refused
    other = tmp_path / "other"
    shutil.copytree(run, other)
    for out in (other, cls):
        code, err = _cli(["export", str(run), str(out)])
        _refused(code, err, str(out), "holds a")
    code, err = _cli(["prepare", "--preset", "scratch-tiny", "--data", str(trained["data"]), "-o", str(cls), *TINY])
    _refused(code, err, "fine-tuning run")
    assert _fingerprint(cls) == cls_files
    # the explicit --overwrite clears mlmkit's own output and writes the new one
    code, err = _cli(["export", str(run), str(cls), "--overwrite"])
    assert code == 0, err
    assert (cls / "README.md").is_file() and not (cls / "metrics.json").exists() and not (cls / LOCK_FILE).exists()
    code, err = _cli(_train_args(trained, cls))  # now an export: train refuses it too
    _refused(code, err, "holds an exported model")


def test_export_never_clears_the_model_it_reads_nor_files_mlmkit_did_not_write(trained, run, tmp_path):
    before = _fingerprint(run)
    for out in (run, run.parent):  # the run itself, a folder containing it
        code, err = _cli(["export", str(run), str(out), "--overwrite"])
        _refused(code, err, "the model it reads")
    assert _fingerprint(run) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    code, err = _cli(["export", str(run), str(mine), "--overwrite"])
    _refused(code, err, "files mlmkit did not write")
    assert (mine / "notes.txt").read_text() == "my notes"


def test_a_killed_run_without_a_final_model_is_still_a_run(trained, run, tmp_path):
    shutil.rmtree(run / "model")
    (run / "summary.json").unlink()
    before = _fingerprint(run)
    code, err = _cli(_train_args(trained, run))
    _refused(code, err, "already holds a run", "--resume")
    code, err = _cli(["predict", str(run), "the [MASK] of god"])
    _refused(code, err, "without a final model/", "step-00000004")
    code, err = _cli(["finetune", str(trained["run"]), "--data", str(trained["labels"]), "-o", str(run)])
    _refused(code, err, "holds a pre-training run")
    code, err = _cli(["export", str(trained["run"]), str(run)])
    _refused(code, err, "holds a pre-training run")
    assert _fingerprint(run) == before


def test_the_python_api_step_by_step_obeys_the_run_folder_rule(trained, tmp_path):
    from mlmkit import build_task, resolve_config, train

    sets = [s for s in TINY if s != "--set"] + ["train.max_steps=2", f"train.output_dir={tmp_path / 'api'}"]
    cfg = resolve_config("scratch-tiny", None, sets + [f"data.train=[{trained['data']}]"])
    train(build_task(cfg, log=lambda s: None), cfg.train, cfg.optim, log=lambda s: None)
    metrics = (tmp_path / "api" / "metrics.jsonl").read_text()
    with pytest.raises(MlmkitError, match="already holds a run"):
        train(build_task(cfg, log=lambda s: None), cfg.train, cfg.optim, log=lambda s: None)
    assert (tmp_path / "api" / "metrics.jsonl").read_text() == metrics


# ------------------------------------------------------------------------ one process at a time
_HOLDER = """
import sys
from pathlib import Path
from mlmkit.folders import lock
lock(Path(sys.argv[1]))
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_locked_run_folder_refuses_a_second_process_and_a_dead_holder_is_taken_over(trained, run):
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = _fingerprint(run)
        for extra in (["--resume"], ["--auto-resume"]):
            code, err = _cli(_train_args(trained, run, *extra, "--max-steps", "6"))
            _refused(code, err, f"is in use by process {holder.pid}")
        assert _fingerprint(run) == before
    finally:
        holder.kill()
        holder.wait()
    code, err = _cli(_train_args(trained, run, "--resume", "--max-steps", "6"))
    assert code == 0, err
    assert f"took over the lock of {run} from process {holder.pid}, which is no longer running" in err


# ------------------------------------------------------------------------ --auto-resume
def _flip_byte(path: Path, offset: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_auto_resume_when_no_checkpoint_verifies_is_the_resume_error_and_deletes_nothing(trained, run):
    for ckpt in ckpt_io.list_checkpoints(run / "checkpoints"):
        _flip_byte(ckpt / "model.safetensors")
    before = _fingerprint(run)
    for flag in ("--auto-resume", "--resume"):
        code, err = _cli(_train_args(trained, run, flag, "--max-steps", "6"))
        _refused(code, err, "none of its 2 checkpoint(s) verifies", "nothing deleted")
    assert _fingerprint(run) == before


def test_auto_resume_in_an_absent_folder_starts_a_new_run(trained, tmp_path):
    code, err = _cli(_train_args(trained, tmp_path / "new", "--auto-resume"))
    assert code == 0 and "starting a new run" in err, err
    assert (tmp_path / "new" / "model").is_dir()


# ------------------------------------------------------------------------ verify before use
def test_eval_predict_export_and_init_from_refuse_a_damaged_checkpoint(trained, run, tmp_path):
    ckpt = run / "checkpoints" / "step-00000004"
    _flip_byte(ckpt / "model.safetensors", offset=-3)  # an exponent byte of the last weight
    for args in (["eval", str(ckpt), "--data", str(trained["data"])], ["predict", str(ckpt), "the [MASK] of god"],
                 ["export", str(ckpt), str(tmp_path / "exp")],
                 _train_args(trained, tmp_path / "cont", "--init-from", str(ckpt))):
        code, err = _cli(args)
        _refused(code, err, f"checkpoint {ckpt} is damaged", "model.safetensors fails its checksum")
    assert not (tmp_path / "exp").exists() and not (tmp_path / "cont" / "checkpoints").exists()


def test_init_from_reports_what_loaded_and_stops_when_the_encoder_did_not(trained, run, tmp_path):
    from safetensors.torch import load_file, save_file

    # an encoder-only export: the MLM head is created fresh, and said so
    code, err = _cli(["export", str(run), str(tmp_path / "enc"), "--encoder-only"])
    assert code == 0, err
    code, err = _cli(_train_args(trained, tmp_path / "a", "--init-from", str(tmp_path / "enc")))
    assert code == 0, err
    assert "tensors loaded" in err and "the MLM head" in err and "starts fresh" in err, err
    # predict on the encoder-only folder: its fills would be random
    code, err = _cli(["predict", str(tmp_path / "enc"), "the [MASK] of god"])
    _refused(code, err, "has no masked-LM head", "masked-lm/")
    # a folder whose weights carry other names: nothing of the encoder loads
    bad = tmp_path / "bad"
    shutil.copytree(run / "model", bad)
    state = load_file(str(bad / "model.safetensors"))
    save_file({"other." + k: v for k, v in state.items()}, str(bad / "model.safetensors"), metadata={"format": "pt"})
    code, err = _cli(_train_args(trained, tmp_path / "b", "--init-from", str(bad)))
    _refused(code, err, "of the encoder's tensors are not in the checkpoint", "model.allow_partial_init=true")
    assert not (tmp_path / "b" / "checkpoints").exists()
    code, err = _cli(_train_args(trained, tmp_path / "c", "--init-from", str(bad),
                                 "--set", "model.allow_partial_init=true"))
    assert code == 0 and "0 of" in err, err


def test_init_from_a_bert_folder_into_a_canine_model_stops(run, tmp_path):
    code, err = _cli(["train", "--preset", "domains-tiny", "-o", str(tmp_path / "c"), "--max-steps", "1",
                      "--set", "model.arch=canine", "--set", f"model.init_from={run / 'model'}",
                      "--set", "train.progress=false", "--set", "train.max_minutes=null"])
    _refused(code, err, "of the encoder's tensors are not in the checkpoint", "model.allow_partial_init")


# ------------------------------------------------------------------------ every save is finite
def test_a_nan_evaluation_never_makes_a_best_checkpoint(trained, tmp_path):
    """At lr 3e38 the first update overflows: the evaluation after it is NaN, which must not count
    as the best so far (the weights behind it were saved as checkpoints/best before)."""
    code, err = _cli(_train_args(trained, tmp_path / "nan", "--set", "optim.lr=3e38", "--set", "train.restore_best=true",
                                 "--set", "train.eval_at_start=false", "--set", "train.eval_every=1",
                                 "--set", "train.max_bad_steps=1"))
    _refused(code, err, "consecutive NaN/inf steps")
    assert "eval loss nan" in err
    assert not (tmp_path / "nan" / "checkpoints" / "best").exists()


def test_a_full_disk_is_named_and_the_previous_checkpoint_is_intact(tmp_path, monkeypatch):
    import torch

    root = tmp_path / "checkpoints"
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.AdamW(model.parameters())
    ckpt_io.save_checkpoint(root, 2, model, opt, None, {"step": 2})

    def full(*a, **k):  # what torch.save's C++ writer says when the disk fills up
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 8177472 vs 8177360")

    monkeypatch.setattr(ckpt_io.torch, "save", full)
    monkeypatch.setattr(ckpt_io, "_file_size_limit", lambda: None)
    monkeypatch.setattr(ckpt_io.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))
    with pytest.raises(MlmkitError) as e:
        ckpt_io.save_checkpoint(root, 4, model, opt, None, {"step": 4})
    msg = str(e.value)
    assert "No space left on device (1 MB free)" in msg and str(root) in msg
    assert "the previous checkpoint (step-00000002) is intact" in msg and "enforce" not in msg
    assert [c.name for c in ckpt_io.list_checkpoints(root)] == ["step-00000002"]


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_really_full_disk_during_training_is_one_line(trained, tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "3m"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, "-m", "mlmkit", *_train_args(trained, disk / "run"),
                               "--set", "train.max_steps=8", "--set", "model.size=mini",
                               "--set", "model.overrides={}", "--set", f"data.cache_dir={tmp_path / 'cache'}"],
                              capture_output=True, text=True, env=env, timeout=600)
        line = _refused(proc.returncode, proc.stderr, "No space left on device", str(disk / "run"))
        assert "Traceback" not in proc.stderr and "enforce" not in line
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
