"""Experiment logging: JSONL always, TensorBoard event files when enabled, wandb (offline) API use,
and the Original/Masked/Predicted text sample at each evaluation."""

import json
import sys
import types

import pytest

from mlmkit.engine.config import OptimConfig, TrainConfig
from mlmkit.families import build_config
from mlmkit.token_mlm.data import group_texts
from mlmkit.errors import ConfigError
from mlmkit.report.loggers import build_loggers, read_samples
from mlmkit.token_mlm.masking import TokenMasker
from mlmkit.token_mlm.task import TokenMLMTask
from mlmkit.engine.loop import train


def _train(tmp_path, tokenizer, texts, model, **cfg):
    tr = group_texts(texts[:120], tokenizer, 32, progress=False)
    va = group_texts(texts[120:140], tokenizer, 32, progress=False)
    task = TokenMLMTask(model, tokenizer, tr, va, TokenMasker.from_tokenizer(tokenizer), batch_size=8, seed=1)
    base = dict(output_dir=str(tmp_path), max_steps=4, log_every=2, eval_every=2, save_every=100,
                progress=False, show_samples=2, eval_at_start=False)
    base.update(cfg)
    return train(task, TrainConfig(**base), OptimConfig(lr=3e-3), log=lambda s: None)


def test_tensorboard_event_file_is_written_when_enabled(tmp_path, tiny_tokenizer, english_texts, tiny_bert):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _train(tmp_path, tiny_tokenizer, english_texts, tiny_bert, loggers=["jsonl", "tensorboard"])
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert {"train/loss", "train/lr", "eval/loss", "eval/accuracy"} <= set(scalars)
    # the same numbers as metrics.jsonl, at the same steps
    jsonl = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
    want = {r["step"]: r["loss"] for r in jsonl if "loss" in r}
    got = {e.step: e.value for e in acc.Scalars("train/loss")}
    assert got.keys() == want.keys()
    assert all(abs(got[s] - want[s]) < 1e-4 * max(1, want[s]) for s in want)
    # the prediction sample is logged as text at each in-loop evaluation (steps 2 and 4)
    assert "samples/text_summary" in acc.Tags()["tensors"]
    texts = acc.Tensors("samples/text_summary")
    assert [t.step for t in texts] == [2, 4]


def test_default_logs_jsonl_and_text_samples_only(tmp_path, tiny_tokenizer, english_texts, tiny_bert):
    _train(tmp_path, tiny_tokenizer, english_texts, tiny_bert)
    assert not (tmp_path / "tensorboard").exists() and not (tmp_path / "wandb").exists()
    samples = read_samples(tmp_path)
    assert [s["step"] for s in samples] == [2, 4]
    for s in samples:
        assert s["text"].count("Example ") == 2
        assert "Original:" in s["text"] and "Masked:" in s["text"] and "Predicted:" in s["text"]


def test_show_samples_zero_logs_no_text(tmp_path, tiny_tokenizer, english_texts, tiny_bert, monkeypatch):
    def refuse(self, model, n):
        raise AssertionError("the trainer must not even ask the task for samples")

    monkeypatch.setattr(TokenMLMTask, "sample_text", refuse)
    _train(tmp_path, tiny_tokenizer, english_texts, tiny_bert, show_samples=0)
    assert read_samples(tmp_path) == []


def test_unknown_logger_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match="train.loggers.*tensorbord"):
        build_config({"train": {"loggers": ["jsonl", "tensorbord"]}})
    cfg = build_config({"train": {"loggers": "tensorboard"}})  # a single name is accepted
    assert cfg.train.loggers == ["tensorboard"]


def test_wandb_backend_runs_offline_and_mirrors_records(tmp_path, monkeypatch):
    """The wandb calls, checked against a stand-in module (the real one starts a service
    process, seconds per test; `WANDB_MODE=offline` runs are covered by the docs' smoke test)."""
    calls = {"init": [], "log": [], "finish": 0}

    class FakeRun:
        def log(self, data, step=None):
            calls["log"].append((step, data))

        def finish(self):
            calls["finish"] += 1

    fake = types.SimpleNamespace(init=lambda **kw: calls["init"].append(kw) or FakeRun(),
                                 Html=lambda s: ("html", s))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    loggers = build_loggers(TrainConfig(loggers=["wandb"], output_dir=str(tmp_path)), tmp_path)
    loggers.log({"step": 5, "loss": 2.5, "lr": 1e-3, "epoch": 0, "eval_loss": float("nan")})
    loggers.log_text("samples", "Original: a <b>", 5)
    loggers.close()
    (init,) = calls["init"]
    assert init["mode"] == "offline" and init["project"] == "mlmkit" and init["dir"] == str(tmp_path)
    assert init["config"]["loggers"] == ["wandb"]  # the run's config is recorded
    assert calls["log"][0] == (5, {"train/loss": 2.5, "train/lr": 1e-3, "train/epoch": 0.0})  # NaN dropped
    assert calls["log"][1] == (5, {"samples": ("html", "<pre>Original: a &lt;b&gt;</pre>")})
    assert calls["finish"] == 1
    assert (tmp_path / "samples.jsonl").is_file()  # JSONL is always on
    # the environment wins over the config; a resumed run continues its W&B run
    fake.init = lambda **kw: calls["init"].append(kw) or types.SimpleNamespace(id="abc123", log=None, finish=None)
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    build_loggers(TrainConfig(loggers=["wandb"]), tmp_path)
    assert calls["init"][-1]["project"] == "from-env" and calls["init"][-1]["mode"] == "disabled"
    assert (tmp_path / "wandb_run_id.txt").read_text() == "abc123"
    build_loggers(TrainConfig(loggers=["wandb"]), tmp_path, resume_step=7)
    assert calls["init"][-1]["id"] == "abc123" and calls["init"][-1]["resume"] == "allow"


def test_missing_backend_is_a_one_line_error(tmp_path, monkeypatch):
    from mlmkit.errors import MlmkitError

    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` fail
    with pytest.raises(MlmkitError, match="pip install wandb"):
        build_loggers(TrainConfig(loggers=["wandb"]), tmp_path)
