"""CharMLMTask end to end: configs, CANINE round trip, save/load, the span losses, a run's task from
its config (its training names: test_stream.py)."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from mlmkit.char_mlm.config import CharDataConfig, CharMaskingConfig, CharModelConfig
from mlmkit.char_mlm.data import Alphabet, FamilyMarks, holdout_key, is_validation
from mlmkit.char_mlm.evaluate import evaluate_char_model
from mlmkit.char_mlm.inputs import encode_names
from mlmkit.char_mlm.export import export_encoder, load_scratch_encoder
from mlmkit.char_mlm.model import WEIGHTS_NAME, is_char_model_dir, load_char_model, pack_count_tables
from mlmkit.char_mlm.masking import window_spans
from mlmkit.char_mlm.predict import char_predict, parse_pattern
from mlmkit.char_mlm.build import build_char_task
from mlmkit.char_mlm.task import CharMLMTask
from mlmkit.errors import ConfigError, MlmkitError
from mlmkit.char_mlm.encoders import ScratchCharEncoder, tiny_canine_config

SMALL = dict(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, dropout=0.0)
WORDS = ["mail", "shop", "temp", "box", "cloud", "web", "net", "data", "fast", "my", "go", "zip"]
TLDS = ["com", "net", "org", "de", "io"]




@pytest.fixture(scope="module")
def domains_file(tmp_path_factory):
    import random

    rng = random.Random(0)
    p = tmp_path_factory.mktemp("data") / "domains.txt"
    lines = []
    for i in range(3000):
        name = rng.choice(WORDS) + rng.choice(WORDS) + (str(rng.randint(0, 99)) if rng.random() < 0.2 else "")
        lines.append(f"{name}.{rng.choice(TLDS)}")
    lines[10] = "bad..name"
    lines[20] = "-hyphen.com"
    p.write_text("\n".join(lines) + "\n")
    return p


def _task(path, batch_size=32, model_kw=None, **data_kw):
    data = CharDataConfig(train=[str(path)], chunk_bytes=4096, shuffle_buffer=600, max_eval_samples=64, **data_kw)
    return CharMLMTask(data, CharModelConfig(**SMALL, **(model_kw or {})), CharMaskingConfig(),
                       batch_size=batch_size, seed=3)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="masking.rate"):
        CharMaskingConfig(rate=0.9)
    with pytest.raises(ConfigError, match="data.idn"):
        CharDataConfig(idn="ascii")
    with pytest.raises(ConfigError, match="model.downsampling_rate"):
        CharModelConfig(downsampling_rate=3)
    with pytest.raises(ConfigError, match="masking.align"):
        CharMaskingConfig(align="words")


def _train(task, steps, lr=3e-3, same_batch=False):
    opt = torch.optim.AdamW(task.model.parameters(), lr=lr)
    it = task.train_batches(0)
    fixed = next(it)
    losses = []
    task.model.train()
    for _ in range(steps):
        b = fixed if same_batch else next(it)
        out = task.forward(task.model, b)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    return losses


def test_tiny_canine_loads_trains_and_round_trips(tmp_path, domains_file):
    from transformers import CanineModel

    canine_dir = tmp_path / "tiny-canine"
    torch.manual_seed(0)
    CanineModel(tiny_canine_config(hidden_size=32, intermediate_size=64)).save_pretrained(canine_dir)
    data = CharDataConfig(train=[str(domains_file)], max_eval_samples=32, shuffle_buffer=600, chunk_bytes=4096)
    task = CharMLMTask(data, CharModelConfig(arch="canine", init_from=str(canine_dir), dropout=0.0),
                       CharMaskingConfig(), batch_size=16, seed=0)
    b = next(task.train_batches(0))
    assert (b["input_ids"] == 0xE003).any() and not (b["input_ids"] == 0xE003).equal(b["input_ids"] == 0xE000)
    losses = _train(task, 15, lr=3e-3, same_batch=True)
    assert losses[-1] < 0.7 * losses[0]
    out = tmp_path / "run"
    task.save_pretrained(task.model, out)
    assert json.loads((out / "mlmkit_char.json").read_text())["encoder_config"]["model_type"] == "canine"
    bundle = load_char_model(out)
    task.model.eval()
    with torch.no_grad():
        a = task.forward(task.model, b)
        c = task.forward(bundle.model, b)
    assert torch.allclose(a.loss, c.loss, atol=1e-6)
    enc_dir = export_encoder(out, tmp_path / "encoder")
    hf = CanineModel.from_pretrained(enc_dir).eval()
    with torch.no_grad():
        h1 = hf(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
        h2 = bundle.model.encode(b["input_ids"], b["input_idx"], b["attention_mask"])
    assert torch.allclose(h1, h2, atol=1e-5)


@pytest.mark.parametrize("ngram", [{}, {"ngram_buckets": 256}, {"ngram_buckets": 256, "ngram_dim": 8},
                                   {"head_ngram_buckets": 128, "head_ngram_max": 4},
                                   {"head_ngram_buckets": 128, "head_ngram_dim": 8, "head_ngram_dropout": 0.2},
                                   {"head_ngram_buckets": 128, "head_ngram_dim": 8, "head_ngram_dense": 1.0},
                                   {"arch": "cloze", "ngram_buckets": 256, "head_ngram_buckets": 128},
                                   {"head_ngram_buckets": 128, "head_ngram_counts": True, "head_ngram_joint": 2}])
def test_scratch_save_load_reproduces_predictions(tmp_path, domains_file, ngram):
    torch.manual_seed(0)
    task = _task(domains_file, model_kw=ngram)
    losses = _train(task, 30, lr=5e-3)
    assert sum(losses[-5:]) < sum(losses[:5])
    out = tmp_path / "run"
    task.save_pretrained(task.model, out)
    task.model.eval()
    bundle = load_char_model(out)
    p1 = char_predict(bundle, "mail[3].com", k=3)
    p2 = char_predict(out, "mail[MASK][MASK][MASK].com", k=3)
    assert p1 == p2 and 1 <= len(p1) <= 3  # invalid names (e.g. "mai..com") are dropped
    assert all(n.startswith("mail") and n.endswith(".com") and len(n) == 11 for n, _ in p1)
    assert all(a[1] >= b[1] for a, b in zip(p1, p1[1:]))
    unk = char_predict(bundle, "[?]mail.com", k=4)
    assert unk and all(n.endswith("mail.com") for n, _ in unk)
    m1 = evaluate_char_model(bundle, str(domains_file))
    m2 = evaluate_char_model(out, str(domains_file))
    assert m1 == m2
    assert 0.0 <= m1["eval_accuracy"] <= 1.0 and m1["eval_bits_per_char"] > 0 and m1["eval_targets"] > 0
    assert "eval_span_exact_match" in m1 and m1["eval_perplexity"] > 1.0
    enc_dir = export_encoder(out, tmp_path / "enc")
    enc = load_scratch_encoder(enc_dir)
    b = next(task.eval_batches())
    with torch.no_grad():
        assert torch.allclose(enc(b["input_idx"], b["attention_mask"]),
                              bundle.model.encode(b["input_ids"], b["input_idx"], b["attention_mask"]), atol=1e-5)


def test_dense_memory_loss_is_added_in_training_only(domains_file):
    """With `head_ngram_dense` the back-propagated loss is the span loss plus weight x the
    memory's every-character loss; the reported loss_sum (and evaluation) stay the span loss."""
    torch.manual_seed(0)
    task = _task(domains_file, model_kw={"head_ngram_buckets": 128, "head_ngram_dense": 0.5})
    torch.nn.init.normal_(task.model.head.ngram.emb.weight)
    batch = next(task.train_batches(0))
    model = task.model.train()
    out = task.forward(model, batch)
    span_only = torch.nn.functional.cross_entropy(
        model(batch["input_ids"], batch["input_idx"], batch["attention_mask"], batch["spans"],
              batch["targets"]).flatten(0, 1), batch["targets"].flatten(), ignore_index=-100)
    dense_sum, n = model.head.dense_loss(batch["clean_idx"])
    assert int(n) == 3 * int((batch["clean_idx"] >= Alphabet.N_SPECIALS).sum())
    assert torch.allclose(out.loss, span_only + 0.5 * dense_sum / n, atol=1e-5)
    assert torch.allclose(out.loss_sum / out.n_targets, span_only, atol=1e-5)
    model.eval()
    ev = task.forward(model, batch)
    assert torch.allclose(ev.loss, ev.loss_sum / ev.n_targets)  # evaluation: the span loss alone


def test_cloze_trains_on_a_window_at_every_character_and_evaluates_the_masked_spans(domains_file):
    """A cloze model's training targets are windows of the clean names, one starting at every
    character (whatever was masked); evaluation scores the masked spans, as for any model."""
    torch.manual_seed(0)
    task = _task(domains_file, model_kw={"arch": "cloze", "cloze_windows": 2})
    batch = next(task.train_batches(0))
    windows = window_spans(batch["clean_idx"], 2, Alphabet.N_SPECIALS)
    assert windows.shape[0] == int((batch["clean_idx"] >= Alphabet.N_SPECIALS).sum())
    out = task.forward(task.model.train(), batch)
    assert int(out.n_targets) == int(windows[:, 2].sum())
    ev = task.forward(task.model.eval(), batch)
    assert int(ev.n_targets) == int((batch["targets"] >= 0).sum()) < int(out.n_targets)
    with pytest.raises(ConfigError, match="model.downsampling_rate"):
        CharModelConfig(arch="cloze", downsampling_rate=2)


def test_saved_count_table_is_its_nonzero_cells_and_loads_back_exactly(tmp_path, domains_file):
    """The model folder holds a count table as its non-zero cells (a fraction of its bytes) and
    loads it back cell for cell; a folder with the table whole (a checkpoint, older mlmkit) loads
    too; a cell past the table's end or a missing weight is one clear error."""
    from safetensors.torch import load_file, save_file, save_model

    task = _task(domains_file, model_kw={"head_ngram_buckets": 128, "head_ngram_counts": True,
                                         "head_ngram_count_buckets": 4096})
    table = task.model.head.counts.table.detach().clone()
    out = tmp_path / "model"
    task.save_pretrained(task.model, out)
    saved = load_file(str(out / WEIGHTS_NAME))
    assert "head.counts.table" not in saved
    cells, values = saved["head.counts.table_cells"], saved["head.counts.table_values"]
    assert len(cells) == int((table > 0).sum()) > 0 and 5 * len(cells) < table.numel() / 2
    assert torch.equal(load_char_model(out).model.head.counts.table, table)
    save_model(task.model, str(out / WEIGHTS_NAME))  # the table whole, as older mlmkit wrote it
    assert "head.counts.table" in load_file(str(out / WEIGHTS_NAME))
    assert torch.equal(load_char_model(out).model.head.counts.table, table)
    full = pack_count_tables({"head.counts.table": torch.ones(64, 49, dtype=torch.uint8)})
    assert list(full) == ["head.counts.table"]  # every cell set: the table whole is the smaller
    save_file({**saved, "head.counts.table_cells": cells + table.numel()}, str(out / WEIGHTS_NAME))
    with pytest.raises(MlmkitError, match="past the end of its table"):
        load_char_model(out)
    save_file({k: v for k, v in saved.items() if k != "head.counts.trust"}, str(out / WEIGHTS_NAME))
    with pytest.raises(MlmkitError, match="does not fit .*head.counts.trust"):
        load_char_model(out)
    task.model.head.counts.table.data.zero_()  # nothing counted: two empty tensors, both kept
    task.save_pretrained(task.model, out)
    assert int(load_char_model(out).model.head.counts.table.sum()) == 0


def test_count_memory_holds_every_training_name_once(domains_file):
    """Each training name (held-out and invalid ones not) is counted once before training: every
    character under its K left contexts and its K right contexts at each of the 8 distances."""
    task = _task(domains_file, model_kw={"head_ngram_buckets": 128, "head_ngram_max": 3, "head_ngram_counts": True})
    names = [n for n in domains_file.read_text().split()
             if n not in ("bad..name", "-hyphen.com") and not is_validation(n, task.stream.holdout, "name")]
    head = task.model.head
    table = head.counts.table.detach().clone()
    assert head.counts.tally is None and table.dtype == torch.uint8 and int(table.sum()) > 0
    head.counts.table.data.zero_()  # count the expected names again, at once: the same table
    head.count_names(encode_names(names, task.alphabet.encode)[1])
    assert int(head.counts.tally.sum()) == sum(map(len, names)) * 3 * (1 + 8)
    head.counts.finish()
    assert torch.equal(head.counts.table, table)
    assert not head.counts.table.requires_grad and all(head.counts.table is not p for g in task.param_groups(task.model) for p in g.params)
    with pytest.raises(ConfigError, match="model.head_ngram_counts"):
        CharModelConfig(head_ngram_counts=True)


def test_count_families_count_each_stem_once_whatever_the_order(domains_file):
    """`model.head_ngram_count_families`: the counting pass marks each name whose family (the
    name without its TLD) it met before, and the table is that of counting every stem once, in
    any order: here the names again, reversed, in one block."""
    kw = {"head_ngram_buckets": 128, "head_ngram_max": 3, "head_ngram_counts": True}
    task = _task(domains_file, model_kw={**kw, "head_ngram_count_families": True})
    names = [n for n in domains_file.read_text().split()
             if n not in ("bad..name", "-hyphen.com") and not is_validation(n, task.stream.holdout, "name")]
    assert len({holdout_key(n) for n in names}) < len(names)  # the file has twins
    head = task.model.head
    table = head.counts.table.detach().clone()
    head.counts.table.data.zero_()
    names = names[::-1]
    head.count_names(encode_names(names, task.alphabet.encode)[1], *FamilyMarks()(names))
    head.counts.finish()
    assert torch.equal(head.counts.table, table)
    plain = _task(domains_file, model_kw=kw).model.head.counts.table
    assert int(plain.sum()) > int(table.sum())
    with pytest.raises(ConfigError, match="model.head_ngram_count_families"):
        CharModelConfig(head_ngram_buckets=128, head_ngram_count_families=True)


def test_pattern_syntax():
    assert parse_pattern("goo[MASK][MASK][MASK].com") == parse_pattern("goo[3].com")
    text, holes = parse_pattern("a[2]-b.[1]")[0]
    assert parse_pattern("[?]x.com", max_unknown=3)[2].unknown == [3]
    assert text == "a\0\0-b.\0" and holes == [False, True, True, False, False, False, True]
    assert len(parse_pattern("[?].com", max_unknown=5)) == 5
    with pytest.raises(MlmkitError, match="no hole"):
        parse_pattern("google.com")
    with pytest.raises(MlmkitError, match="unknown hole"):
        parse_pattern("goo[x].com")
    with pytest.raises(MlmkitError, match="has no TLD"):
        parse_pattern("[MASK]")
    with pytest.raises(MlmkitError, match=r"4,096 length combinations .*\(at most 512\)"):
        parse_pattern("[?]-[?]-[?]-[?].com")
    with pytest.raises(MlmkitError, match="at least 308 characters; the model takes at most 64"):
        parse_pattern("goo[MASK].com" + "x" * 300, max_length=64)


def test_ngram_ids_cover_the_windows_around_each_position():
    """Position i hashes the n characters ending at i (left) and starting at i (right), n = 2..4:
    changing character j changes the left rows of positions j..j+3 and the right rows of
    positions j-3..j, nothing else."""
    enc = ScratchCharEncoder(40, ngram_buckets=4096, ngram_max=4, **SMALL)
    x = torch.randint(5, 40, (1, 16))
    ids = enc.ngram_ids(x)
    assert ids.shape == (1, 16, 6) and int(ids.min()) >= 0 and int(ids.max()) < 6 * 4096
    for j in (0, 7, 15):
        y = x.clone()
        y[0, j] = 3  # MASK
        diff = (enc.ngram_ids(y) != ids)[0]
        assert diff[:, :3].any(-1).nonzero().flatten().tolist() == list(range(j, min(j + 4, 16)))
        assert diff[:, 3:].any(-1).nonzero().flatten().tolist() == list(range(max(j - 3, 0), j + 1))
    with pytest.raises(ConfigError, match="model.ngram_max"):
        CharModelConfig(ngram_buckets=16, ngram_max=1)


@pytest.mark.parametrize("rate", [1, 2, 4])
def test_downsampling_rates_keep_character_resolution(rate):
    enc = ScratchCharEncoder(40, downsampling_rate=rate, **{k: v for k, v in SMALL.items()})
    x = torch.randint(5, 40, (3, 19))
    am = torch.ones_like(x)
    am[0, 11:] = 0
    assert enc(x, am).shape == (3, 19, 32)


def test_build_from_run_config_and_eval_other_file(tmp_path, domains_file):
    from types import SimpleNamespace

    from mlmkit.engine.config import TrainConfig
    from mlmkit.engine.distributed import start_run

    cfg = SimpleNamespace(
        data=CharDataConfig(train=[str(domains_file)], max_eval_samples=16, shuffle_buffer=600, chunk_bytes=4096),
        model=CharModelConfig(**SMALL), masking=CharMaskingConfig(),
        train=TrainConfig(batch_size=8, seed=1))
    logs = []
    task = build_char_task(cfg, start_run(cfg.train), log=logs.append)
    assert task.batch_size == 8 and task.seed == 1 and "invalid rows skipped: empty_label 1" in logs[0]
    task.save_pretrained(task.model, tmp_path / "m")
    assert is_char_model_dir(tmp_path / "m") and not is_char_model_dir(tmp_path)
    other = tmp_path / "test.txt"
    other.write_text("alpha.com\nbeta.org\ngamma.net\nbad..x\n")
    m = evaluate_char_model(tmp_path / "m", [str(other)])  # another file: every valid name is scored
    assert m["eval_names"] == 3 and m["invalid_rows"] == {"empty_label": 1}


def test_train_rate_masks_training_batches_only(domains_file):
    """`masking.train_rate` raises the share of predicted characters in training batches; the
    evaluation batches keep `masking.rate`, so runs trained at different rates compare."""
    data = CharDataConfig(train=[str(domains_file)], chunk_bytes=4096, shuffle_buffer=600, max_eval_samples=256)

    def share(batches):
        masked = sum(int((b["targets"] >= 0).sum()) for b in batches)
        chars = sum(int(b["attention_mask"].sum()) - 2 * b["attention_mask"].shape[0] for b in batches)
        return masked / chars

    plain = CharMLMTask(data, CharModelConfig(**SMALL), CharMaskingConfig(rate=0.15), batch_size=64, seed=3)
    high = CharMLMTask(data, CharModelConfig(**SMALL), CharMaskingConfig(rate=0.15, train_rate=0.4), batch_size=64, seed=3)
    train_plain = share(list(itertools.islice(plain.train_batches(0), 20)))
    train_high = share(list(itertools.islice(high.train_batches(0), 20)))
    # ~0.38 vs ~0.26 on these short names (ensure_one_span lifts the plain rate above 0.15)
    assert abs(train_high - 0.4) < 0.05 and train_plain < train_high - 0.08
    assert share(list(high.eval_batches())) == share(list(plain.eval_batches()))
    with pytest.raises(ConfigError, match="masking.train_rate"):
        CharMaskingConfig(train_rate=0.9)



def test_sparse_ngram_tables_train_and_resume_exactly(tmp_path, domains_file):
    """model.sparse_ngram: SparseAdam beside AdamW; the trainer's clip takes the sparse gradients,
    checkpoints carry both optimisers, and a resumed run repeats the uninterrupted one."""
    import shutil

    from mlmkit.engine import checkpoint as ckpt_io
    from mlmkit.engine.config import OptimConfig, TrainConfig
    from mlmkit.engine.loop import train
    from mlmkit.engine.optim import SplitOptimizer, make_optimizer

    kw = {"ngram_buckets": 64, "head_ngram_buckets": 64, "head_ngram_max": 3, "sparse_ngram": True,
          "ngram_lr_scale": 3.0}

    def run(out, resume=False):
        torch.manual_seed(0)
        cfg = TrainConfig(output_dir=str(out), max_steps=6, log_every=1, eval_every=100, save_every=3,
                          progress=False, seed=3)
        logs = []
        train(_task(domains_file, model_kw=kw), cfg, OptimConfig(lr=3e-3), resume=resume, log=logs.append)
        assert not resume or "resumed from step-00000003 (step 3, epoch 0, batch 3)" in logs
        return {r["step"]: r["loss"] for r in map(json.loads, open(out / "metrics.jsonl")) if "loss" in r}

    task = _task(domains_file, model_kw=kw)
    opt = make_optimizer(task.model, OptimConfig(), torch.device("cpu"), task.param_groups(task.model))
    assert isinstance(opt, SplitOptimizer) and opt.sparse.param_groups[0]["lr_scale"] == 3.0
    full = run(tmp_path / "full")
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "full", cut)
    for c in ckpt_io.list_checkpoints(cut / "checkpoints"):
        if c.name != "step-00000003":
            shutil.rmtree(c)
    resumed = run(cut, resume=True)
    assert [full[s] for s in (4, 5, 6)] == [resumed[s] for s in (4, 5, 6)]


def test_checkpoints_hold_the_count_table_as_its_cells_and_resume_exactly(tmp_path, domains_file):
    """A checkpoint holds a count table as the model folder does (its set cells), a run resumed
    from it repeats the uninterrupted one, and a checkpoint with the table whole (older mlmkit)
    still loads."""
    import shutil

    from safetensors.torch import load_file, save_model

    from mlmkit.engine import checkpoint as ckpt_io
    from mlmkit.engine.config import OptimConfig, TrainConfig
    from mlmkit.engine.loop import train

    kw = {"head_ngram_buckets": 128, "head_ngram_counts": True, "head_ngram_count_buckets": 4096, "sparse_ngram": True}

    def run(out, resume=False):
        torch.manual_seed(0)
        cfg = TrainConfig(output_dir=str(out), max_steps=4, log_every=1, eval_every=100, save_every=2,
                          progress=False, seed=3)
        task = _task(domains_file, model_kw=kw)
        if resume:  # so that the table the resumed steps use can only be the checkpoint's
            task.model.head.counts.table.data.zero_()
        logs = []
        train(task, cfg, OptimConfig(lr=3e-3), resume=resume, log=logs.append)
        assert not resume or "resumed from step-00000002 (step 2, epoch 0, batch 2)" in logs
        return task, {r["step"]: r["loss"] for r in map(json.loads, open(out / "metrics.jsonl")) if "loss" in r}

    task, full = run(tmp_path / "full")
    table = task.model.head.counts.table.detach().clone()
    ckpt = tmp_path / "full" / "checkpoints" / "step-00000002"
    saved = load_file(str(ckpt / "model.safetensors"))
    assert "head.counts.table" not in saved and len(saved["head.counts.table_cells"]) == int((table > 0).sum())
    assert torch.equal(load_char_model(ckpt).model.head.counts.table, table)  # a checkpoint is a model folder
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "full", cut)
    shutil.rmtree(cut / "checkpoints" / "step-00000004")
    _, resumed = run(cut, resume=True)
    assert [full[s] for s in (3, 4)] == [resumed[s] for s in (3, 4)]
    whole = tmp_path / "whole"
    shutil.copytree(ckpt, whole)
    save_model(load_char_model(ckpt).model, str(whole / "model.safetensors"))
    fresh = _task(domains_file, model_kw=kw)
    fresh.model.head.counts.table.data.zero_()
    ckpt_io.load_weights(whole, fresh.model, codec=fresh.weights_codec)
    assert torch.equal(fresh.model.head.counts.table, table)


def test_loss_divisor_counts_real_targets_only(tmp_path, domains_file):
    """A step's gradient is the gradient of the mean loss over the *real* masked characters of
    its micro-batches: the -100 padding of the (spans x longest span) target tensor must not
    count (it used to, scaling every character step's gradient down by a varying factor)."""
    import copy

    from mlmkit.engine.config import OptimConfig, TrainConfig
    from mlmkit.engine.loop import train

    torch.manual_seed(0)
    task = _task(domains_file, batch_size=16)
    reference = copy.deepcopy(task.model)
    first, second = itertools.islice(task.train_batches(0), 2)
    bias = task.model.head.out.bias
    seen = []
    bias.register_hook(lambda g: seen.append(g.detach().clone()))
    cfg = TrainConfig(output_dir=str(tmp_path), max_steps=1, grad_accum=2, save_every=0, eval_at_start=False,
                      eval_every=100, progress=False, seed=3)
    train(task, cfg, OptimConfig(lr=1e-3, grad_clip=0.0), save_final=False, log=lambda s: None)
    reference.train()
    out1, out2 = task.forward(reference, first), task.forward(reference, second)
    n1, n2 = int(out1.n_targets), int(out2.n_targets)
    assert n1 < first["targets"].numel() and n2 < second["targets"].numel()  # the targets are padded
    ((out1.loss * n1 + out2.loss * n2) / (n1 + n2)).backward()
    assert len(seen) == 2
    assert torch.allclose(seen[0] + seen[1], reference.head.out.bias.grad, rtol=1e-4, atol=1e-7)


def _char_rows(batch):
    """Each name's (masked input, [(span start, length, gold characters)]), without padding."""
    rows = []
    for r in range(batch["input_idx"].shape[0]):
        n = int(batch["attention_mask"][r].sum())
        spans = [(int(s[1]), int(s[2]), tuple(batch["targets"][i, : int(s[2])].tolist()))
                 for i, s in enumerate(batch["spans"]) if int(s[0]) == r]
        rows.append((tuple(batch["input_idx"][r, :n].tolist()), spans))
    return rows


def test_evaluation_masks_do_not_depend_on_seed_or_batch_size(domains_file):
    a = CharMLMTask(CharDataConfig(train=[str(domains_file)], chunk_bytes=4096, shuffle_buffer=600, max_eval_samples=40),
                    CharModelConfig(**SMALL), CharMaskingConfig(), batch_size=8, seed=1)
    b = CharMLMTask(CharDataConfig(train=[str(domains_file)], chunk_bytes=4096, shuffle_buffer=600, max_eval_samples=40),
                    CharModelConfig(**SMALL), CharMaskingConfig(), batch_size=32, seed=9)
    rows = lambda t: [row for batch in t.eval_batches() for row in _char_rows(batch)]
    assert len(rows(a)) == len(a.eval_domains) > 20 and rows(a) == rows(b)


def test_eval_applies_masking_overrides_and_refuses_other_sections(tmp_path, domains_file):
    task = _task(domains_file)
    task.save_pretrained(task.model, tmp_path / "m")
    names = [str(domains_file)]
    base = evaluate_char_model(tmp_path / "m", names, max_samples=64)
    ones = evaluate_char_model(tmp_path / "m", names, max_samples=64, overrides={"masking": {"max_span": 1}})
    assert ones["eval_targets"] == ones["eval_spans"]  # one character a span: the override was applied
    assert base["eval_targets"] > base["eval_spans"]  # the model's own masking: longer spans
    for bad in ({"model": {"dropout": 0.1}}, {"masking": {"whole_word": True}}):
        with pytest.raises(ConfigError):
            evaluate_char_model(tmp_path / "m", names, max_samples=64, overrides=bad)
