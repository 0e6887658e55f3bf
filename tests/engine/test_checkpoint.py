"""Checkpoints: any byte changed in any file (manifest included) is caught; a checkpoint that
verifies but does not load falls back to the previous one; none left is an error that deletes
nothing."""

import json
import shutil

import pytest
import torch

from mlmkit.engine import checkpoint as ckpt_io
from mlmkit.engine.config import OptimConfig, TrainConfig
from mlmkit.engine.loop import train
from mlmkit.errors import MlmkitError
from mlmkit.token_mlm.data import group_texts
from mlmkit.token_mlm.masking import TokenMasker
from mlmkit.token_mlm.task import TokenMLMTask


def _model(tok, hidden=32):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    return BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=64, max_position_embeddings=64))


def _run(out, tok, texts, *, resume=False, steps=6, hidden=32, logs=None):
    seqs = group_texts(texts[:300], tok, 32, progress=False)
    task = TokenMLMTask(_model(tok, hidden), tok, seqs, seqs, TokenMasker.from_tokenizer(tok), batch_size=8, seed=1)
    cfg = TrainConfig(output_dir=str(out), max_steps=steps, log_every=1, eval_every=100, save_every=2,
                      keep_checkpoints=5, progress=False)
    return train(task, cfg, OptimConfig(), resume=resume, log=(logs.append if logs is not None else lambda s: None))


@pytest.fixture()
def run(tmp_path, tiny_tokenizer, english_texts):
    _run(tmp_path / "run", tiny_tokenizer, english_texts)
    return tmp_path / "run"


def test_a_flipped_byte_in_any_file_fails_verification(run):
    newest = ckpt_io.list_checkpoints(run / "checkpoints")[-1]
    assert ckpt_io.verify(newest) is None
    for f in sorted(newest.iterdir()):
        copy = run / "flip" / newest.name
        shutil.rmtree(copy.parent, ignore_errors=True)
        shutil.copytree(newest, copy)
        data = bytearray((copy / f.name).read_bytes())
        data[len(data) // 2] ^= 0x01  # one bit, same size
        (copy / f.name).write_bytes(bytes(data))
        problem = ckpt_io.verify(copy)
        assert problem is not None, f.name
        if f.name != ckpt_io.MANIFEST:
            assert problem in (f"{f.name} fails its checksum",) or "manifest" in problem, problem


def test_an_emptied_or_malformed_manifest_is_reported_not_raised(run):
    newest = ckpt_io.list_checkpoints(run / "checkpoints")[-1]
    manifest = json.loads((newest / ckpt_io.MANIFEST).read_text())
    (newest / ckpt_io.MANIFEST).write_text(json.dumps({**manifest, "files": {}}))
    assert ckpt_io.verify(newest) == "the manifest fails its own checksum"
    (newest / ckpt_io.MANIFEST).write_text('{"step": 6}')
    assert ckpt_io.verify(newest).startswith("unreadable manifest")
    (newest / ckpt_io.MANIFEST).write_text("[1, 2]")
    assert ckpt_io.verify(newest).startswith("unreadable manifest")


def test_a_checkpoint_that_does_not_load_falls_back(run, tiny_tokenizer, english_texts):
    ckpts = ckpt_io.list_checkpoints(run / "checkpoints")
    # a checkpoint of another model shape: it verifies, but loading it fails
    other = run.parent / "other"
    _run(other, tiny_tokenizer, english_texts, steps=2, hidden=16)
    shutil.rmtree(ckpts[-1])
    shutil.copytree(ckpt_io.list_checkpoints(other / "checkpoints")[-1], ckpts[-1])
    manifest = json.loads((ckpts[-1] / ckpt_io.MANIFEST).read_text())
    assert ckpt_io.verify(ckpts[-1]) is None and manifest["step"] == 2
    logs = []
    _run(run, tiny_tokenizer, english_texts, resume=True, steps=7, logs=logs)
    assert any(f"checkpoint {ckpts[-1].name} could not be loaded" in l for l in logs)
    assert f"resumed from {ckpts[-2].name} (step 4, epoch 0, batch 4)" in logs


def test_no_usable_checkpoint_is_an_error_that_deletes_nothing(run, tiny_tokenizer, english_texts):
    for c in ckpt_io.list_checkpoints(run / "checkpoints"):
        (c / "model.safetensors").write_bytes(b"broken")
    before = {p.name: p.stat().st_size for p in run.iterdir()}
    metrics = (run / "metrics.jsonl").read_text()
    with pytest.raises(MlmkitError, match="none of its 3 checkpoint.s. verifies and loads; nothing was resumed"):
        _run(run, tiny_tokenizer, english_texts, resume=True)
    assert (run / "metrics.jsonl").read_text() == metrics
    assert {p.name: p.stat().st_size for p in run.iterdir()} == before
    # "auto" (a job scheduler's requeue) too: checkpoints that all fail are not "nothing to resume"
    with pytest.raises(MlmkitError, match="none of its 3 checkpoint.s. verifies and loads; nothing was resumed"):
        _run(run, tiny_tokenizer, english_texts, resume="auto")
    assert (run / "metrics.jsonl").read_text() == metrics
    assert {p.name: p.stat().st_size for p in run.iterdir()} == before
    with pytest.raises(MlmkitError, match="no such run folder"):
        _run(run.parent / "typo", tiny_tokenizer, english_texts, resume=True)
    assert not (run.parent / "typo").exists()
    logs = []
    _run(run.parent / "fresh", tiny_tokenizer, english_texts, resume="auto", steps=2, logs=logs)
    assert any("starting a new run" in l for l in logs)


def test_rotation_keeps_the_checkpoint_just_written(run, tiny_tokenizer, english_texts):
    """Resumed from step 4 because step 6 does not verify: the new step-6 ... checkpoints replace
    the rolled-back ones, and the one just written is never the one rotated away."""
    ckpts = ckpt_io.list_checkpoints(run / "checkpoints")
    (ckpts[-1] / "model.safetensors").write_bytes(b"broken")  # step 6
    seqs = group_texts(english_texts[:300], tiny_tokenizer, 32, progress=False)
    task = TokenMLMTask(_model(tiny_tokenizer), tiny_tokenizer, seqs, seqs, TokenMasker.from_tokenizer(tiny_tokenizer),
                        batch_size=8, seed=1)
    cfg = TrainConfig(output_dir=str(run), max_steps=5, log_every=1, eval_every=100, save_every=5,
                      keep_checkpoints=1, progress=False)
    train(task, cfg, OptimConfig(), resume=True, log=lambda s: None)
    assert [c.name for c in ckpt_io.list_checkpoints(run / "checkpoints")] == ["step-00000005"]
    assert ckpt_io.verify(run / "checkpoints" / "step-00000005") is None


def test_resume_from_a_named_checkpoint(run, tiny_tokenizer, english_texts):
    logs = []
    older = run / "checkpoints" / "step-00000002"
    _run(run, tiny_tokenizer, english_texts, resume=str(older), steps=3, logs=logs)
    assert "resumed from step-00000002 (step 2, epoch 0, batch 2)" in logs
    with pytest.raises(MlmkitError, match="cannot resume from .*nope: no such checkpoint folder"):
        _run(run, tiny_tokenizer, english_texts, resume=str(run / "nope"))


def test_a_wrapped_model_is_saved_under_its_inner_names_and_old_checkpoints_still_load(tmp_path):
    class Wrapper(torch.nn.Module):  # like token_mlm's SparseMLM around a transformers model
        def __init__(self):
            super().__init__()
            self.model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))

    torch.manual_seed(0)
    a, b = Wrapper(), Wrapper()
    new = ckpt_io.save_checkpoint(tmp_path / "new", 1, a, None, None, {"step": 1}, best=True, submodule="model")
    old = ckpt_io.save_checkpoint(tmp_path / "old", 1, a, None, None, {"step": 1}, best=True)  # before submodule
    from safetensors import safe_open

    with safe_open(str(new / "model.safetensors"), "pt") as f:
        assert sorted(f.keys()) == ["0.bias", "0.weight", "1.bias", "1.weight"]
    for ckpt in (new, old):
        ckpt_io.load_weights(ckpt, b, submodule="model")
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
        torch.nn.init.zeros_(b.model[0].weight)
