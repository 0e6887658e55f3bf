"""Data-parallel training on CPU (gloo): 2 ranks must train exactly what 1 process trains.

One spawn of 2 worker processes runs DDP, then FSDP (and an FSDP resume); the reference is the
same configuration in this process with world size 1 and the global batch. Rank r of a 2-rank
run holds half the rows of every global batch, so the parameters after N steps match the
reference only if (a) the union of the ranks' rows is the reference batch, (b) a row's mask does
not depend on its rank, (c) the loss is token-weighted across ranks and (d) gradients really are
synchronised (they were not, before the task called the wrapped module).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mlmkit.engine.config import OptimConfig, TrainConfig
from mlmkit.errors import MlmkitError

from .test_loop import _NanGradTask

STEPS = 3
PER_RANK_BATCH = 4
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _NanGradOnOneRank(_NanGradTask):
    """The task, except that on rank `bad` the gradients are NaN while the loss stays finite: only
    the reduced gradients can tell the other rank that the step must be skipped."""

    def __init__(self, inner, bad: int):
        super().__init__(inner)
        self.bad = bad

    def forward(self, model, batch):
        if self.inner.rank != self.bad:
            return self.inner.forward(model, batch)
        return super().forward(model, batch)


def _initial_bert(vocab: int) -> torch.nn.Module:
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)  # the same initial model on every rank and in the reference
    # No dropout: the ranks' dropout streams cannot reproduce one process's stream.
    return BertForMaskedLM(BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                                      attention_probs_dropout_prob=0.0))


def _run(tok_dir: str, texts: list[str], out: Path, *, batch: int, steps: int, strategy: str = "auto",
         resume: bool = False, rank: int = 0, world: int = 1, log=lambda s: None, nan_rank: int | None = None,
         max_bad_steps: int = 10) -> dict:
    """Build the tiny task and train it (the same code for the reference and the workers)."""
    from transformers import AutoTokenizer

    from mlmkit.token_mlm.data import group_texts
    from mlmkit.token_mlm.masking import TokenMasker
    from mlmkit.token_mlm.task import TokenMLMTask
    from mlmkit.engine.loop import train

    tok = AutoTokenizer.from_pretrained(tok_dir)
    model = _initial_bert(len(tok))
    seqs = group_texts(texts[:160], tok, 32, progress=False)
    val = group_texts(texts[160:200], tok, 32, progress=False)
    task = TokenMLMTask(model, tok, seqs, val, TokenMasker.from_tokenizer(tok), batch_size=batch, seed=5,
                        rank=rank, world_size=world)
    if nan_rank is not None:
        task = _NanGradOnOneRank(task, nan_rank)
    cfg = TrainConfig(output_dir=str(out), max_steps=steps, grad_accum=2, log_every=1, eval_every=2,
                      eval_at_start=False, save_every=2, keep_checkpoints=3, progress=False, device="cpu",
                      precision="fp32", strategy=strategy, show_samples=0, max_bad_steps=max_bad_steps)
    return train(task, cfg, OptimConfig(lr=2e-3, schedule="constant", warmup_ratio=0.0), resume=resume, log=log)


def _run_char(names: Path, out: Path, *, batch: int, rank: int = 0, world: int = 1, strategy: str = "auto",
              sparse: bool = True, steps: int = STEPS, resume: bool = False) -> dict:
    """The character task with sparse n-gram tables (`model.sparse_ngram`) and a counted memory
    (`model.head_ngram_counts`: each rank counts its chunks, the tables are summed), 3 steps; with
    `resume`, rank 0's log lines go to `out/log.txt`."""
    from mlmkit.char_mlm.config import CharDataConfig, CharMaskingConfig, CharModelConfig
    from mlmkit.char_mlm.task import CharMLMTask
    from mlmkit.engine.loop import train

    torch.manual_seed(0)
    data = CharDataConfig(train=[str(names)], chunk_bytes=4096, shuffle_buffer=400, max_eval_samples=16)
    model = CharModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, dropout=0.0,
                            ngram_buckets=64, head_ngram_buckets=64, head_ngram_max=3, sparse_ngram=sparse,
                            head_ngram_counts=True, head_ngram_count_buckets=128)
    task = CharMLMTask(data, model, CharMaskingConfig(), batch_size=batch, seed=2, rank=rank, world_size=world)
    if resume:  # so that the table the resumed run ends with can only be its checkpoint's
        task.model.head.counts.table.data.zero_()
    cfg = TrainConfig(output_dir=str(out), max_steps=steps, log_every=1, eval_every=100, eval_at_start=False,
                      save_every=0, progress=False, device="cpu", precision="fp32", show_samples=0,
                      strategy=strategy)
    logs = []
    result = train(task, cfg, OptimConfig(lr=3e-3, schedule="constant", warmup_ratio=0.0), resume=resume,
                   log=logs.append)
    if resume and rank == 0:
        (out / "log.txt").write_text("\n".join(logs))
    return result


def _run_char_hub(root: Path, out: Path, *, batch: int = 4, rank: int = 0, world: int = 1, resume: bool = False) -> dict:
    """The character task on 2 text files read through the hub code path (2 shards: each of 2
    ranks reads its own), 3 steps, a checkpoint at the end."""
    from mlmkit.char_mlm.config import CharDataConfig, CharMaskingConfig, CharModelConfig
    from mlmkit.char_mlm.task import CharMLMTask
    from mlmkit.engine.loop import train

    torch.manual_seed(0)
    parts = [str(root / "part0.txt"), str(root / "part1.txt")]
    data = CharDataConfig(train=["text"], format="hf", text_column="text", hf_data_files=parts,
                          validation=[str(root / "names.txt")], shuffle_buffer=8, max_eval_samples=8)
    model = CharModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, dropout=0.0,
                            ngram_buckets=64, head_ngram_buckets=64, head_ngram_max=3)
    task = CharMLMTask(data, model, CharMaskingConfig(), batch_size=batch, seed=2, rank=rank, world_size=world)
    cfg = TrainConfig(output_dir=str(out), max_steps=STEPS, log_every=1, eval_every=100, eval_at_start=False,
                      save_every=0, progress=False, device="cpu", precision="fp32", show_samples=0)
    return train(task, cfg, OptimConfig(lr=3e-3), resume=resume, log=lambda s: None)


def _worker(rank: int, port: int, tok_dir: str, texts: list[str], root: str) -> None:
    import torch.distributed as dist

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # A short timeout: a rank stuck in a collective fails the test instead of hanging CI.
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    try:
        for strategy in ("ddp", "fsdp"):
            out = Path(root) / strategy
            _run(tok_dir, texts, out, batch=PER_RANK_BATCH, steps=STEPS, strategy=strategy, rank=rank, world=WORLD)
            if rank == 0:  # keep the 3-step result; the resume below overwrites model/
                shutil.copytree(out / "model", Path(root) / f"{strategy}-model-3")
            # Resume from the step-3 checkpoint (FSDP: full, gathered state) for one more step.
            _run(tok_dir, texts, out, batch=PER_RANK_BATCH, steps=STEPS + 1, strategy=strategy, resume=True,
                 rank=rank, world=WORLD)
        _run_char(Path(root) / "names.txt", Path(root) / "char-ddp", batch=PER_RANK_BATCH, rank=rank, world=WORLD)
        _run_char(Path(root) / "names.txt", Path(root) / "char-fsdp", batch=PER_RANK_BATCH, rank=rank, world=WORLD,
                  strategy="fsdp")
        if rank == 0:  # the resume below overwrites model/
            shutil.copytree(Path(root) / "char-fsdp" / "model", Path(root) / "char-fsdp-model-3")
        # its checkpoint holds the count table as its cells: resuming unpacks it for the shards
        _run_char(Path(root) / "names.txt", Path(root) / "char-fsdp", batch=PER_RANK_BATCH, rank=rank, world=WORLD,
                  strategy="fsdp", steps=STEPS + 1, resume=True)
        _run_char_hub(Path(root), Path(root) / "char-hub", rank=rank, world=WORLD)
        try:
            _run(tok_dir, texts, Path(root) / "nan", batch=PER_RANK_BATCH, steps=STEPS, strategy="ddp", rank=rank,
                 world=WORLD, nan_rank=1, max_bad_steps=2)
        except MlmkitError as e:  # each rank writes how its run ended
            (Path(root) / f"nan-rank{rank}.txt").write_text(str(e))
    finally:
        dist.destroy_process_group()


def _weights(run: Path, step: int | None = None) -> dict[str, torch.Tensor]:
    """The final model's weights, or a checkpoint's (whose keys are those of `SparseMLM`)."""
    if step is None:
        return load_file(str(run / "model" / "model.safetensors"))
    weights = load_file(str(run / "checkpoints" / f"step-{step:08d}" / "model.safetensors"))
    return {k.removeprefix("model."): v for k, v in weights.items()}


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, open(run / "metrics.jsonl")) if "loss" in r}


def _assert_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < atol, f"max parameter difference {worst}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_tokenizer, english_texts):
    import torch.multiprocessing as mp

    # One thread here and in the workers: on a busy 2-core machine, OpenMP threads fighting for
    # cores make a tiny model's step many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield _launch(tmp_path_factory, tiny_tokenizer, english_texts, mp)
    finally:
        torch.set_num_threads(threads)


def _launch(tmp_path_factory, tiny_tokenizer, english_texts, mp):

    root = tmp_path_factory.mktemp("dist")
    tok_dir = str(root / "tok")
    tiny_tokenizer.save_pretrained(tok_dir)
    texts = english_texts[:200]
    words = ["mail", "shop", "temp", "box", "web", "net", "data", "fast"]
    (root / "names.txt").write_text("".join(f"{a}{b}{i}.com\n" for i in range(60) for a in words for b in words[:4]))
    for f in range(2):
        (root / f"part{f}.txt").write_text("".join(f"{a}{f}x{i}.net\n" for i in range(30) for a in words))
    ctx = mp.start_processes(_worker, args=(_free_port(), tok_dir, texts, str(root)), nprocs=WORLD,
                             join=False, start_method="spawn")
    # Reference while the workers start: one process, the global batch (2 x 4 rows).
    _run(tok_dir, texts, root / "ref", batch=PER_RANK_BATCH * WORLD, steps=STEPS)
    ref4 = root / "ref4"
    shutil.copytree(root / "ref", ref4)
    _run(tok_dir, texts, ref4, batch=PER_RANK_BATCH * WORLD, steps=STEPS + 1, resume=True)
    _run_char(root / "names.txt", root / "char-ref", batch=PER_RANK_BATCH * WORLD)
    _run_char(root / "names.txt", root / "char-ref-dense", batch=PER_RANK_BATCH * WORLD, sparse=False)
    for _ in range(300):  # bounded: 300 x 1 s
        if ctx.join(timeout=1):  # raises ProcessRaisedException with the worker's traceback
            break
    else:
        for p in ctx.processes:
            p.kill()
        pytest.fail("distributed workers did not finish in 300 s")
    return root


def test_ddp_two_ranks_match_one_process_with_the_global_batch(runs):
    ref, ddp = _weights(runs / "ref"), load_file(str(runs / "ddp-model-3" / "model.safetensors"))
    step2 = _weights(runs / "ref", 2)
    assert any(not torch.equal(ref[k], step2[k]) for k in step2)  # it did train
    _assert_close(ref, ddp, atol=2e-5)
    # The logged loss is the token-weighted mean over both ranks (not a sum, not scaled by W).
    a, b = _losses(runs / "ref4"), _losses(runs / "ddp")
    assert sorted(a) == sorted(b) == list(range(1, STEPS + 2))
    for s in a:
        assert b[s] == pytest.approx(a[s], rel=1e-5)
    # Token-weighted evaluation: each rank scores half the batches, the sums are reduced.
    ev = lambda run: [r for r in map(json.loads, open(run / "metrics.jsonl")) if r.get("final")][-1]
    assert ev(runs / "ddp")["eval_targets"] == ev(runs / "ref")["eval_targets"]
    assert ev(runs / "ddp")["eval_loss"] == pytest.approx(ev(runs / "ref4")["eval_loss"], rel=1e-5)
    # Resumed under DDP for one more step (per-rank RNG restored): still the same trajectory.
    _assert_close(_weights(runs / "ref4"), _weights(runs / "ddp"), atol=2e-5)


def test_fsdp_two_ranks_match_and_save_full_checkpoints(runs):
    from transformers import AutoModelForMaskedLM

    fsdp = runs / "fsdp"
    # The step-3 checkpoint holds the full (gathered) model: same keys and values as the reference.
    ref3, got3 = _weights(runs / "ref", 3), _weights(fsdp, 3)
    assert set(ref3) <= set(got3)  # (the single-process file stores tied weights once)
    _assert_close(ref3, {k: got3[k] for k in ref3}, atol=2e-5)
    # Resumed under FSDP for one more step: still the single-process trajectory.
    _assert_close(_weights(runs / "ref4"), _weights(fsdp), atol=2e-5)
    # The final model folder is a normal, loadable transformers model.
    model = AutoModelForMaskedLM.from_pretrained(fsdp / "model")
    assert model.get_input_embeddings().weight.shape[1] == 32


def test_elastic_resume_two_ranks_to_one_continues_the_same_order(runs, tiny_tokenizer, english_texts):
    """The DDP run's step-3 checkpoint (2 ranks x 4 rows) resumed by one process with 8 rows: the
    same global batches and masks, so step 4 lands where the 1-process run's step 4 did."""
    from mlmkit.engine import checkpoint as ckpt_io
    from mlmkit.errors import MlmkitError

    tok_dir = str(runs / "tok")
    elastic = runs / "elastic"
    shutil.copytree(runs / "ddp", elastic)
    for c in ckpt_io.list_checkpoints(elastic / "checkpoints"):
        if c.name != "step-00000003":
            shutil.rmtree(c)
    with pytest.raises(MlmkitError, match="global batch of 8 .*train.batch_size=8"):
        _run(tok_dir, english_texts[:200], elastic, batch=PER_RANK_BATCH, steps=STEPS + 1, resume=True)
    logs = []
    _run(tok_dir, english_texts[:200], elastic, batch=PER_RANK_BATCH * WORLD, steps=STEPS + 1, resume=True,
         log=logs.append)
    assert any("elastic resume: 2 -> 1 rank(s)" in line for line in logs)
    _assert_close(_weights(runs / "ref4"), _weights(elastic), atol=2e-5)
    a, b = _losses(runs / "ref4"), _losses(elastic)
    assert b[STEPS + 1] == pytest.approx(a[STEPS + 1], rel=1e-5)


def test_ddp_exchanges_only_the_touched_rows_of_sparse_tables(runs):
    """Character task with sparse n-gram tables under DDP: the tables stay out of DDP's dense
    all-reduce; the loop exchanges the rows each rank touched. 2 ranks x 4 names end where one
    process with 8 does, n-gram tables included, and their counted tables are equal (each rank
    counted half of the names)."""
    from mlmkit.char_mlm.model import load_char_model

    ref = load_char_model(runs / "char-ref" / "model").model.state_dict()
    ddp = load_char_model(runs / "char-ddp" / "model").model.state_dict()
    tables = [k for k in ref if "ngram" in k and k.endswith("emb.weight")]
    assert tables and all((ref[k] != 0).any() for k in tables)  # the tables did train (they start at 0)
    assert torch.equal(ref["head.counts.table"], ddp["head.counts.table"]) and ref["head.counts.table"].sum() > 0
    _assert_close(ref, ddp, atol=2e-5)


def test_fsdp_trains_and_saves_the_character_model_with_its_count_table(runs):
    """The character model under FSDP (its n-gram tables dense, as FSDP needs): 2 ranks x 4 names
    end where one process with 8 and dense tables does, and the saved model holds the byte count
    table (the gathered weights are copied to their own storage, which safetensors requires)."""
    from mlmkit.char_mlm.model import load_char_model

    ref = load_char_model(runs / "char-ref-dense" / "model").model.state_dict()
    fsdp = load_char_model(runs / "char-fsdp-model-3").model.state_dict()
    assert fsdp["head.counts.table"].dtype == torch.uint8 and int(fsdp["head.counts.table"].sum()) > 0
    assert torch.equal(ref["head.counts.table"], fsdp["head.counts.table"])
    _assert_close(ref, fsdp, atol=2e-5)
    # resumed under FSDP from its checkpoint, whose count table is written as its set cells
    checkpoint = load_file(str(runs / "char-fsdp" / "checkpoints" / f"step-{STEPS:08d}" / "model.safetensors"))
    assert "head.counts.table" not in checkpoint and "head.counts.table_cells" in checkpoint
    assert f"resumed from step-{STEPS:08d}" in (runs / "char-fsdp" / "log.txt").read_text()
    resumed = load_char_model(runs / "char-fsdp" / "model").model.state_dict()
    assert torch.equal(resumed["head.counts.table"], ref["head.counts.table"])


def test_ranks_stream_their_own_shards_and_the_checkpoint_keeps_each_ranks_position(runs):
    """A hub stream with as many shards as ranks: each rank reads its own shard; the checkpoint
    holds every rank's stream position, and resuming on another number of ranks is refused with
    one line (the order of a split stream depends on the ranks)."""
    from mlmkit.errors import MlmkitError

    state = json.loads((runs / "char-hub" / "checkpoints" / f"step-{STEPS:08d}" / "trainer_state.json").read_text())
    marks = state["data_state"]
    assert [m["split"] for m in marks] == [[0, 2], [1, 2]]
    # windows of 8 rows, 2 batches of 4 each: the third batch is in window 1, 8 rows into each shard
    assert [(m["window"], m["cursor"]["k"], m["cursor"]["row"]) for m in marks] == [(1, 0, 8)] * 2
    elastic = runs / "char-hub-1"
    shutil.copytree(runs / "char-hub", elastic)
    with pytest.raises(MlmkitError, match="split over 2 ranks.*resume it on 2 ranks"):
        _run_char_hub(runs, elastic, batch=8, resume=True)


def test_nan_gradients_on_one_rank_make_every_rank_skip_the_step(runs):
    """Rank 1's gradients are NaN, its loss finite. The gradient norm is checked without a vote,
    on the reduced gradients, so rank 0 sees the NaN too: both ranks skip both steps and stop
    together (neither waits in a collective for the other), and no NaN reaches the weights."""
    for rank in range(WORLD):
        assert "2 consecutive NaN/inf steps" in (runs / f"nan-rank{rank}.txt").read_text()
    from transformers import AutoTokenizer

    saved = _weights(runs / "nan", 0)  # the checkpoint written on stopping, at step 0
    initial = _initial_bert(len(AutoTokenizer.from_pretrained(runs / "tok"))).state_dict()
    assert saved and all(torch.equal(initial[k], v) for k, v in saved.items())


def test_a_successful_command_leaves_its_process_group_and_ends_its_rank(tmp_path, monkeypatch):
    """A rank that exits with its gloo group up, or that finalises normally after leaving it, can
    abort in the C++ teardown ("terminate called without an active exception") and fail the
    torchrun: once the command succeeded, the CLI leaves the group (a barrier, then
    engine.distributed.leave_process_group), runs Python's exit handlers and ends with
    os._exit(0). After a failed command it does neither."""
    import atexit
    import os
    import sys

    import torch.distributed as dist

    from mlmkit import cli

    class Ended(Exception):
        pass

    calls = []

    def fake_exit(code):
        calls.append(("exit", code, dist.is_initialized()))
        raise Ended

    monkeypatch.setattr(atexit, "_run_exitfuncs", lambda: calls.append(("atexit handlers", dist.is_initialized())))
    monkeypatch.setattr(os, "_exit", fake_exit)
    try:
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
        monkeypatch.setattr(sys, "argv", ["mlmkit", "train", "--preset", "no-such-preset"])
        with pytest.raises(SystemExit) as failed:
            cli.main()
        assert failed.value.code != 0 and dist.is_initialized() and calls == []
        monkeypatch.setattr(sys, "argv", ["mlmkit", "presets"])
        with pytest.raises(Ended):
            cli.main()
        assert calls == [("atexit handlers", False), ("exit", 0, False)]
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
