import json
import math
import shutil

import pytest
import torch

from mlmkit.engine import checkpoint as ckpt_io
from mlmkit.engine.config import OptimConfig, TrainConfig
from mlmkit.token_mlm.data import group_texts, line_by_line
from mlmkit.errors import MlmkitError
from mlmkit.token_mlm.masking import TokenMasker
from mlmkit.engine.task import LossOutput
from mlmkit.token_mlm.task import TokenMLMTask
from mlmkit.engine.loop import train


def _task(tokenizer, texts, model, mode="group_texts", batch_size=8):
    fn = group_texts if mode == "group_texts" else line_by_line
    tr = fn(texts[:400], tokenizer, 64, progress=False)
    va = fn(texts[400:450], tokenizer, 64, progress=False)
    return TokenMLMTask(model, tokenizer, tr, va, TokenMasker.from_tokenizer(tokenizer), batch_size=batch_size, seed=1)


def _losses(run_dir):
    return {r["step"]: r["loss"] for r in map(json.loads, open(run_dir / "metrics.jsonl")) if "loss" in r}


def _cfg(out, **kw):
    base = dict(output_dir=str(out), max_steps=8, log_every=1, eval_every=4, save_every=4,
                keep_checkpoints=5, progress=False, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_training_lowers_loss_and_saves_a_loadable_model(tmp_path, tiny_tokenizer, english_texts, tiny_bert):
    from transformers import AutoModelForMaskedLM

    task = _task(tiny_tokenizer, english_texts, tiny_bert)
    before = None
    summary = train(task, _cfg(tmp_path, max_steps=30, eval_every=10), OptimConfig(lr=3e-3),
                    log=lambda s: None, on_eval=lambda e: None)
    evals = [r for r in map(json.loads, open(tmp_path / "metrics.jsonl")) if "eval_loss" in r]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    assert summary["step"] == 30
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "model.safetensors").is_file()
    for a, b in zip(loaded.state_dict().values(), tiny_bert.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["group_texts", "line_by_line"])
def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path, tiny_tokenizer, english_texts, mode):
    from transformers import BertConfig, BertForMaskedLM

    def fresh():
        torch.manual_seed(0)
        return BertForMaskedLM(BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=1,
                                          num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))

    full = tmp_path / "full"
    train(_task(tiny_tokenizer, english_texts, fresh(), mode), _cfg(full), OptimConfig(lr=2e-3), log=lambda s: None)
    # Simulate a crash right after the step-4 checkpoint: drop everything written after it.
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    for c in ckpt_io.list_checkpoints(cut / "checkpoints"):
        if c.name != "step-00000004":
            shutil.rmtree(c)
    lines = [l for l in open(cut / "metrics.jsonl") if json.loads(l).get("step", 0) <= 4]
    (cut / "metrics.jsonl").write_text("".join(lines))
    shutil.rmtree(cut / "model")
    logs = []
    train(_task(tiny_tokenizer, english_texts, fresh(), mode), _cfg(cut), OptimConfig(lr=2e-3), resume=True,
          log=logs.append)
    assert "resumed from step-00000004 (step 4, epoch 0, batch 4)" in logs  # not a rerun from scratch
    a, b = _losses(full), _losses(cut)
    assert [a[s] for s in range(5, 9)] == [b[s] for s in range(5, 9)]  # bit-exact


def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path, tiny_tokenizer, english_texts, tiny_bert):
    train(_task(tiny_tokenizer, english_texts, tiny_bert), _cfg(tmp_path), OptimConfig(), log=lambda s: None)
    ckpts = ckpt_io.list_checkpoints(tmp_path / "checkpoints")
    assert [c.name for c in ckpts] == ["step-00000004", "step-00000008"]
    weights = ckpts[-1] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    messages = []
    assert ckpt_io.latest_valid(tmp_path / "checkpoints", log=messages.append) == ckpts[0]
    assert "truncated" in messages[0]


class _NaNTask:
    """Wraps a task and makes its loss NaN."""

    def __init__(self, inner):
        self.inner, self.model = inner, inner.model

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def forward(self, model, batch):
        out = self.inner.forward(model, batch)
        nan = out.loss * float("nan")
        return LossOutput(nan, out.n_targets, nan.detach(), out.n_correct, out.n_tokens)


def test_nan_losses_are_skipped_then_stop_with_a_checkpoint(tmp_path, tiny_tokenizer, english_texts, tiny_bert):
    before = {k: v.clone() for k, v in tiny_bert.state_dict().items()}
    task = _NaNTask(_task(tiny_tokenizer, english_texts, tiny_bert))
    logs = []
    with pytest.raises(MlmkitError, match="3 consecutive NaN/inf"):
        train(task, _cfg(tmp_path, max_bad_steps=3), OptimConfig(), log=logs.append)
    assert sum("step skipped" in l for l in logs) == 3
    assert ckpt_io.latest_valid(tmp_path / "checkpoints") is not None
    for k, v in tiny_bert.state_dict().items():  # no NaN reached the weights
        assert torch.equal(v, before[k])


def test_eval_is_independent_of_batch_size(tiny_tokenizer, english_texts, tiny_bert):
    from mlmkit.engine.evaluation import evaluate

    task = _task(tiny_tokenizer, english_texts, tiny_bert, mode="line_by_line")
    a = evaluate(task, tiny_bert, torch.device("cpu"), "fp32")
    task.eval_batch_size = 3
    b = evaluate(task, tiny_bert, torch.device("cpu"), "fp32")
    assert a["eval_targets"] == b["eval_targets"]
    assert math.isclose(a["eval_loss"], b["eval_loss"], rel_tol=1e-5)


def test_data_workers_give_the_same_run(tmp_path, tiny_tokenizer, english_texts):
    """Batches built ahead by 2 DataLoader worker processes: the same batches in the same order,
    so the same losses bit for bit (and a resume from the middle still lines up)."""
    from transformers import BertConfig, BertForMaskedLM

    def run(out, workers):
        torch.manual_seed(0)
        model = BertForMaskedLM(BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
        train(_task(tiny_tokenizer, english_texts, model, "line_by_line"), _cfg(out, data_workers=workers),
              OptimConfig(lr=2e-3), log=lambda s: None)
        return _losses(out)

    assert run(tmp_path / "w0", 0) == run(tmp_path / "w2", 2)


class _NanGrad(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose gradients are not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("nan")


class _NanGradTask(_NaNTask):
    def forward(self, model, batch):
        out = self.inner.forward(model, batch)
        return LossOutput(_NanGrad.apply(out.loss), out.n_targets, out.loss_sum, out.n_correct, out.n_tokens)


def test_nan_gradients_with_a_finite_loss_never_reach_the_weights(tmp_path, tiny_tokenizer, english_texts, tiny_bert):
    before = {k: v.clone() for k, v in tiny_bert.state_dict().items()}
    logs = []
    with pytest.raises(MlmkitError, match="2 consecutive NaN/inf steps"):
        train(_NanGradTask(_task(tiny_tokenizer, english_texts, tiny_bert)), _cfg(tmp_path, max_bad_steps=2),
              OptimConfig(), log=logs.append)
    assert sum("gradient norm is nan" in l for l in logs) == 2
    for k, v in tiny_bert.state_dict().items():
        assert torch.equal(v, before[k])
    events = [json.loads(l) for l in open(tmp_path / "metrics.jsonl") if "event" in l]
    assert [e["event"] for e in events] == ["nonfinite_step_skipped"] * 2


def test_non_finite_weights_are_never_saved(tmp_path, tiny_tokenizer, english_texts, tiny_bert, monkeypatch):
    task = _task(tiny_tokenizer, english_texts, tiny_bert)
    real_step = torch.optim.AdamW.step

    def poisoned(self, *a, **k):  # the update itself goes wrong at the third step
        out = real_step(self, *a, **k)
        if self.state and max(s["step"] for s in self.state.values()) >= 3:
            next(iter(self.param_groups))["params"][0].data.fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", poisoned)
    with pytest.raises(MlmkitError, match="weights at step 3 are not finite: not saved"):
        train(task, _cfg(tmp_path, save_every=2), OptimConfig(), log=lambda s: None)
    assert [c.name for c in ckpt_io.list_checkpoints(tmp_path / "checkpoints")] == ["step-00000002"]


def test_the_best_checkpoint_goes_through_the_finiteness_check(tmp_path, tiny_tokenizer, english_texts, tiny_bert,
                                                                monkeypatch):
    """A NaN in a weight evaluation never reads (the second token-type row: every input is type
    0) leaves the evaluation finite and improving, so the best save is what must refuse it."""
    task = _task(tiny_tokenizer, english_texts, tiny_bert)
    real_step = torch.optim.AdamW.step
    unused_row = tiny_bert.bert.embeddings.token_type_embeddings.weight

    def poisoned(self, *a, **k):
        out = real_step(self, *a, **k)
        if self.state and max(s["step"] for s in self.state.values()) >= 2:
            unused_row.data[1].fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", poisoned)
    cfg = _cfg(tmp_path, eval_every=1, save_every=0, restore_best=True, eval_at_start=False)
    with pytest.raises(MlmkitError, match="weights at step 2 are not finite: not saved .as checkpoints/best"):
        train(task, cfg, OptimConfig(), log=lambda s: None)
    from safetensors.torch import load_file

    best = load_file(str(tmp_path / "checkpoints" / "best" / "model.safetensors"))  # step 1's, finite
    assert all(bool(torch.isfinite(t).all()) for t in best.values())


def test_non_finite_numbers_are_refused_by_the_config():
    from mlmkit.errors import ConfigError
    from mlmkit.families import build_config

    from mlmkit.config import parse_override

    for bad in ("nan", ".inf", "-.inf"):  # as `--set optim.weight_decay=nan` gives them (YAML)
        with pytest.raises(ConfigError, match="optim.weight_decay': expected a finite number"):
            build_config(parse_override(f"optim.weight_decay={bad}"))


def test_early_stopping_ends_on_the_best_weights(tmp_path, tiny_tokenizer, english_texts, tiny_bert):
    """The loss rises after the first evaluations (a learning rate far too high): early stopping
    ends `patience` evaluations later, but the saved model is the best evaluation's."""
    from mlmkit.engine import checkpoint as ckpt_io
    from transformers import AutoModelForMaskedLM

    task = _task(tiny_tokenizer, english_texts, tiny_bert)
    summary = train(task, _cfg(tmp_path, max_steps=40, eval_every=2, early_stopping_patience=2), OptimConfig(lr=0.5),
                    log=lambda s: None)
    evals = {r["step"]: r["eval_loss"] for r in map(json.loads, open(tmp_path / "metrics.jsonl"))
             if "eval_loss" in r and not r.get("final")}
    best = min(evals, key=evals.get)
    assert summary["stopped"].startswith("early stopping") and summary["best_step"] == best < summary["step"]
    final = [r for r in map(json.loads, open(tmp_path / "metrics.jsonl")) if r.get("final")][-1]
    assert final["eval_loss"] == pytest.approx(evals[best], rel=1e-6)  # scored on the best weights
    saved = AutoModelForMaskedLM.from_pretrained(tmp_path / "model")
    assert (tmp_path / "checkpoints" / ckpt_io.BEST).is_dir()
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(), tiny_bert.state_dict().values()))


class _PositionTask:
    """Wraps a task; each batch says where it was read (`DATA_STATE`), and resume reports what
    it was handed."""

    def __init__(self, inner):
        self.inner, self.model, self.loaded = inner, inner.model, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def train_batches(self, epoch, start=0, stride=1):
        from mlmkit.engine.task import DATA_STATE

        for i, batch in enumerate(self.inner.train_batches(epoch, start, stride)):
            yield {**batch, DATA_STATE: {"epoch": epoch, "batch": start + i * stride}}

    def load_data_state(self, states):
        self.loaded.append(states)


@pytest.mark.parametrize("workers", [0, 2])
def test_each_batchs_data_position_is_saved_and_handed_back_on_resume(tmp_path, tiny_tokenizer, english_texts,
                                                                       workers):
    """The engine takes `DATA_STATE` off the batches (the model never sees it), saves the last one
    trained on with the checkpoint, and gives it back to the task before the resumed run reads."""
    from transformers import BertConfig, BertForMaskedLM

    def task():
        torch.manual_seed(0)
        model = BertForMaskedLM(BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
        return _PositionTask(_task(tiny_tokenizer, english_texts, model, "line_by_line"))

    cfg = _cfg(tmp_path, max_steps=6, save_every=4, eval_every=100, grad_accum=2, data_workers=workers)
    train(task(), cfg, OptimConfig(lr=2e-3), log=lambda s: None)
    step4 = tmp_path / "checkpoints" / "step-00000004"
    assert json.loads((step4 / "trainer_state.json").read_text())["data_state"] == [{"epoch": 0, "batch": 7}]
    shutil.rmtree(tmp_path / "checkpoints" / "step-00000006")
    resumed = task()
    train(resumed, _cfg(tmp_path, max_steps=6, save_every=4, eval_every=100, grad_accum=2, data_workers=workers),
          OptimConfig(lr=2e-3), resume=True, log=lambda s: None)
    assert resumed.loaded == [[{"epoch": 0, "batch": 7}]]
