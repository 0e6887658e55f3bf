"""A run's tokenizer: the same command trains the same one on any machine, a run's config.yaml
names it (`tokenizer.fingerprint`), and `--resume` takes the checkpoint's, never a new one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli_runner import run_cli
from mlmkit.errors import MlmkitError
from mlmkit.token_mlm.tokenizers import load_tokenizer, tokenizer_digest

# A tiny run: the tokenizer is trained on ~1,900 records at vocab 1000, where the unseeded trainer
# numbered the vocabulary differently in every process tried; 4 steps, evaluated every 2.
ARGS = ["train", "--preset", "scratch-tiny", "--data", "mlmkit:samples/english.txt", "--max-steps", "4",
        "--set", "train.eval_every=2", "--set", "train.save_every=2", "--set", "train.log_every=1",
        "--set", "train.max_minutes=null", "--set", "tokenizer.vocab_size=1000", "--set", "data.max_samples=2000",
        "--set", "data.max_eval_samples=64", "--set", "train.batch_size=8", "--set", "train.threads=1",
        "--set", "data.prepare_workers=1", "--set", "train.progress=false"]
TRAINED = "training a wordpiece tokenizer"


def _losses(run: Path) -> list[tuple]:
    """Every training and evaluation loss of a run, in order."""
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r.get("loss"), r.get("eval_loss")) for r in records]


def _vocab(folder: Path) -> dict:
    return json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]


def _fingerprint(run: Path) -> str | None:
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())["tokenizer"]["fingerprint"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same command in two processes, each with its own empty cache (two fresh machines)."""
    root = tmp_path_factory.mktemp("two-machines")
    procs = []
    for name in ("a", "b"):
        env = {**os.environ, "MLMKIT_CACHE": str(root / f"cache-{name}"), "HF_HUB_OFFLINE": "1"}
        procs.append(subprocess.Popen([sys.executable, "-m", "mlmkit", *ARGS, "-o", str(root / name)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    errs = [p.communicate(timeout=600)[1] for p in procs]
    for p, err in zip(procs, errs):
        assert p.returncode == 0, err
    return {"a": root / "a", "b": root / "b", "cache_a": root / "cache-a", "errs": errs}


def test_the_same_command_on_two_empty_caches_logs_the_same_losses(two_runs):
    a, b = two_runs["a"], two_runs["b"]
    assert all(TRAINED in err for err in two_runs["errs"])  # each trained its own tokenizer
    assert _vocab(a / "tokenizer") == _vocab(b / "tokenizer")
    assert _fingerprint(a) == _fingerprint(b) == tokenizer_digest(load_tokenizer(str(a / "tokenizer")))
    assert len(_losses(a)) == 8 and _losses(a) == _losses(b)


def test_a_run_config_reproduces_the_run_on_an_empty_cache(two_runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLMKIT_CACHE", str(tmp_path / "empty-cache"))
    again = tmp_path / "again"
    code, _, err = run_cli(["train", "--config", str(two_runs["a"] / "config.yaml"), "-o", str(again)],
                           capsys, monkeypatch)
    assert code == 0, err
    assert TRAINED in err
    assert _vocab(again / "tokenizer") == _vocab(two_runs["a"] / "tokenizer")
    assert _losses(again) == _losses(two_runs["a"])


def test_resume_takes_the_checkpoints_tokenizer_when_the_run_lost_its_own(two_runs, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(two_runs["a"], run)
    shutil.rmtree(run / "tokenizer")
    monkeypatch.setenv("MLMKIT_CACHE", str(tmp_path / "empty-cache"))  # and the cache was cleaned
    # (the command's own flags, whose config has no fingerprint: the saved one is kept)
    code, _, err = run_cli([*ARGS, "--max-steps", "6", "--resume", "-o", str(run)], capsys, monkeypatch)
    assert code == 0, err
    assert TRAINED not in err
    ckpt = run / "checkpoints" / "step-00000004"
    assert f"reusing this run's tokenizer from {ckpt}" in err
    assert "resumed from step-00000004" in err and _losses(run)[-1][0] == 6
    digest = tokenizer_digest(load_tokenizer(str(ckpt)))
    assert tokenizer_digest(load_tokenizer(str(run / "tokenizer"))) == digest == _fingerprint(run)


def test_a_config_naming_another_tokenizer_stops_before_preparing_data(two_runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLMKIT_CACHE", str(two_runs["cache_a"]))  # the tokenizer is cached there
    run = tmp_path / "run"
    code, _, err = run_cli([*ARGS, "--set", "tokenizer.fingerprint=0123456789abcdef", "-o", str(run)],
                           capsys, monkeypatch)
    assert code != 0
    errors = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "0123456789abcdef" in errors[0] and _fingerprint(two_runs["a"]) in errors[0], errors[0]
    assert "prepared data" not in err and not (run / "tokenizer").exists()


# ---------------------------------------------------------------- where a resumed run's tokenizer comes from
def _checkpoint_without_tokenizer(run: Path, step: int = 2) -> Path:
    """A checkpoint that verifies but holds no tokenizer files (as a bare EncoderForMaskedLM's)."""
    from mlmkit.engine.checkpoint import save_checkpoint

    model = torch.nn.Linear(2, 2)
    return save_checkpoint(run / "checkpoints", step, model, torch.optim.SGD(model.parameters(), lr=0.1), None,
                           {"step": step})


def test_a_resumed_run_without_any_copy_of_its_tokenizer_stops(tmp_path, tiny_tokenizer):
    from mlmkit.token_mlm.build import _resume_source

    run = tmp_path / "run"
    ckpt = _checkpoint_without_tokenizer(run)
    for resume in (True, "auto", str(ckpt)):
        with pytest.raises(MlmkitError, match="no checkpoint of it holds a tokenizer and .*tokenizer is missing"):
            _resume_source(run, resume, own=True)
    assert _resume_source(run, True, own=False) is None  # a named tokenizer: load it by name
    tiny_tokenizer.save_pretrained(run / "tokenizer")
    assert _resume_source(run, True, own=True) == run / "tokenizer"
    # "auto" in a folder with nothing to resume starts a new run: its tokenizer is trained (or cached)
    assert _resume_source(tmp_path / "new", "auto", own=True) is None
    with pytest.raises(MlmkitError, match="it has no checkpoint that verifies"):
        _resume_source(tmp_path / "new", True, own=True)
