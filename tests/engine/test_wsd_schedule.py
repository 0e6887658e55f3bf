"""The warmup-stable-decay schedule (`optim.schedule: wsd`): exact multipliers at chosen points of
the run, and the loop's LR following the step count or the time budget, whichever is further."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mlmkit.config import from_dict
from mlmkit.engine.config import OptimConfig, TrainConfig
from mlmkit.engine.loop import Trainer, train
from mlmkit.engine.optim import lr_factor
from mlmkit.errors import ConfigError
from mlmkit.token_mlm.data import group_texts
from mlmkit.token_mlm.masking import TokenMasker
from mlmkit.token_mlm.task import TokenMLMTask


def wsd(progress, shape, warmup=0.1, decay_ratio=0.2, min_ratio=0.1):
    return lr_factor(progress, warmup, "wsd", min_ratio, decay_ratio=decay_ratio, decay_shape=shape)


@pytest.mark.parametrize("progress, linear, one_minus_sqrt", [
    (0.05, 0.5, 0.5),  # warmup, linear: half way
    (0.1, 1.0, 1.0),  # warmup done
    (0.5, 1.0, 1.0),  # stable
    (0.8, 1.0, 1.0),  # the last 20% starts: decay from the peak
    (0.85, 0.1 + 0.9 * 0.75, 0.1 + 0.9 * 0.5),  # a quarter into the decay: 1 - 1/4, 1 - sqrt(1/4)
    (0.9, 0.1 + 0.9 * 0.5, 0.1 + 0.9 * (1 - math.sqrt(0.5))),
    (0.98, 0.1 + 0.9 * 0.1, 0.1 + 0.9 * (1 - math.sqrt(0.9))),
    (1.0, 0.1, 0.1),  # min_lr_ratio at the end
])
def test_wsd_multiplier_at_chosen_points(progress, linear, one_minus_sqrt):
    assert wsd(progress, "linear") == pytest.approx(linear, abs=1e-12)
    assert wsd(progress, "1-sqrt") == pytest.approx(one_minus_sqrt, abs=1e-12)


def test_wsd_edge_cases():
    # no decay: the peak to the end
    assert wsd(1.0, "linear", decay_ratio=0.0) == 1.0
    # a decay longer than the warmup leaves starts where the warmup ends
    assert wsd(0.5, "linear", warmup=0.5, decay_ratio=0.8) == 1.0
    assert wsd(0.75, "linear", warmup=0.5, decay_ratio=0.8, min_ratio=0.0) == pytest.approx(0.5)
    # the other schedules are unchanged by the wsd keys
    assert lr_factor(0.55, 0.1, "cosine", 0.0, decay_ratio=0.9) == pytest.approx(0.5)


def test_wsd_keys_are_checked_and_named():
    cfg = from_dict(OptimConfig, {"schedule": "wsd", "decay_ratio": 0.1, "decay_shape": "linear"})
    assert (cfg.schedule, cfg.decay_ratio, cfg.decay_shape) == ("wsd", 0.1, "linear")
    assert (OptimConfig().decay_ratio, OptimConfig().decay_shape) == (0.2, "1-sqrt")
    with pytest.raises(ConfigError, match=r"^config key 'optim.decay_ratio': must be in \[0, 1\]"):
        from_dict(OptimConfig, {"decay_ratio": 1.5}, "optim.")
    with pytest.raises(ConfigError, match=r"^config key 'optim.decay_shape': 'cosine' is not one of 1-sqrt, linear"):
        from_dict(OptimConfig, {"decay_shape": "cosine"}, "optim.")


def _lrs(tmp_path, tiny_tokenizer, english_texts, monkeypatch, *, seconds_per_step=None, **train_kw):
    """The LR of every step of a tiny run with the WSD schedule (warmup 10%, decay over the last
    40%, linear, to 0); `seconds_per_step`: the run's clock reads that many seconds per step done."""
    from transformers import BertConfig, BertForMaskedLM

    if seconds_per_step is not None:
        monkeypatch.setattr(Trainer, "_elapsed", lambda self: seconds_per_step * self.state.step)
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=16, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=32, max_position_embeddings=32))
    seqs = group_texts(english_texts[:100], tiny_tokenizer, 32, progress=False)
    task = TokenMLMTask(model, tiny_tokenizer, seqs, None, TokenMasker.from_tokenizer(tiny_tokenizer), batch_size=2)
    cfg = TrainConfig(output_dir=str(tmp_path), log_every=1, save_every=0, eval_at_start=False, progress=False,
                      **train_kw)
    optim = OptimConfig(lr=1.0, warmup_ratio=0.1, schedule="wsd", decay_ratio=0.4, decay_shape="linear")
    train(task, cfg, optim, save_final=False, log=lambda s: None)
    return [r["lr"] for r in map(json.loads, open(tmp_path / "metrics.jsonl")) if "lr" in r]


# Step k+1 is taken at progress k/10: warmup to 0.1, the peak until 0.6, then linear to 0 at 1.0.
TEN_STEPS = [1e-3, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25]


def test_wsd_follows_the_step_count(tmp_path, tiny_tokenizer, english_texts, monkeypatch):
    lrs = _lrs(tmp_path, tiny_tokenizer, english_texts, monkeypatch, max_steps=10)
    assert lrs == pytest.approx(TEN_STEPS)


def test_wsd_follows_the_time_budget(tmp_path, tiny_tokenizer, english_texts, monkeypatch):
    """No step count: a one-minute budget, 6 s a step -> the same ten steps, planned from time."""
    lrs = _lrs(tmp_path, tiny_tokenizer, english_texts, monkeypatch, seconds_per_step=6.0, max_minutes=1.0)
    assert lrs == pytest.approx(TEN_STEPS)


def test_wsd_follows_whichever_end_is_nearer(tmp_path, tiny_tokenizer, english_texts, monkeypatch):
    """40 planned steps but a budget that ends after 10 (6 s a step of 60 s): time leads, so the
    decay happens in those 10 steps, not at steps 24..40."""
    lrs = _lrs(tmp_path, tiny_tokenizer, english_texts, monkeypatch, seconds_per_step=6.0, max_minutes=1.0,
               max_steps=40)
    assert lrs == pytest.approx(TEN_STEPS)
