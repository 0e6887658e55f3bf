"""The character task's training names (`char_mlm/stream.py`, `NameStream`): windows and O(1)
resume, the hold-out split, `max_samples`, invalid rows, every source kind, each rank's share of
the global batches, and hub streams split by rank with their saved positions."""

from __future__ import annotations

import itertools

import pytest
import torch

from mlmkit.char_mlm.config import CharDataConfig, CharMaskingConfig, CharModelConfig
from mlmkit.char_mlm.data import Alphabet, holdout_key, is_validation
from mlmkit.char_mlm.task import CharMLMTask
from mlmkit.errors import DataError, MlmkitError

from .test_task import SMALL, TLDS, WORDS, _char_rows, _task, domains_file  # noqa: F401 (a fixture)


def test_batches_resume_and_holdout(domains_file):
    task = _task(domains_file)
    n = task.num_batches(0)
    assert n and n > 20 and len(task.stream.windows(0)) > 2
    full = list(task.train_batches(0))
    assert len(full) == n
    # resume in O(1): only the chunks of the window holding `start` are read
    calls = []
    orig = task.stream.source.read_chunk
    task.stream.source.read_chunk = lambda ch, ctx: (calls.append(ch), orig(ch, ctx))[1]
    k = n - 3
    resumed = next(task.train_batches(0, k))
    assert all(torch.equal(resumed[key], full[k][key]) for key in resumed)
    assert len(calls) == len(task.stream.windows(0)[-1].chunks)
    task.stream.source.read_chunk = orig
    # another epoch has another order; the same epoch is reproducible
    assert not torch.equal(next(task.train_batches(1))["input_idx"], full[0]["input_idx"])
    # validation names never appear in training
    alpha = task.alphabet
    seen = set()
    for b in full:
        ids = b["input_idx"].clone()
        # restore masked characters from the targets to recover the names
        for s, (row, start, length) in enumerate(b["spans"].tolist()):
            ids[row, start:start + length] = b["targets"][s, :length]
        for row in ids.tolist():
            seen.add(alpha.decode(i for i in row if i >= Alphabet.N_SPECIALS))
    assert not any(is_validation(d, task.data_cfg.validation_fraction, task.data_cfg.holdout_key) for d in seen)
    assert task.eval_domains and all(is_validation(d, task.data_cfg.validation_fraction, task.data_cfg.holdout_key) for d in task.eval_domains)
    assert task.describe()["invalid_rows"] == {"empty_label": 1, "hyphen_edge": 1}
    e1 = [b["input_idx"] for b in task.eval_batches()]
    e2 = [b["input_idx"] for b in task.eval_batches()]
    assert all(torch.equal(a, b) for a, b in zip(e1, e2))


def test_max_samples_limits_rows(domains_file):
    task = _task(domains_file, max_samples=500)
    assert task.stream.scan_summary["valid"] == 500
    assert task.num_batches(0) <= 500 // 32 + 2


def test_bad_input_is_a_clear_error(tmp_path, domains_file):
    with pytest.raises(DataError, match=r"domains\.txt:11: invalid domain 'bad..name'"):
        _task(domains_file, on_bad_record="error")
    bad = tmp_path / "bin.txt"
    bad.write_bytes(b"ok.com\n\xff\xfe.com\nfine.org\n" * 50)
    t = _task(bad, validation_fraction=0.0)
    assert t.describe()["invalid_rows"] == {"invalid_utf8": 50}
    with pytest.raises(DataError, match=r"bin\.txt:2: invalid UTF-8 at byte 1 \(0xff\)"):
        _task(bad, on_bad_record="error")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        _task(empty)
    junk = tmp_path / "junk.txt"
    junk.write_text(("x" * 300 + "\n") + "a..b\n" * 10)
    with pytest.raises(DataError, match="no valid domain names found .*empty_label: 10.*too_long: 1"):
        _task(junk)



def test_csv_parquet_and_hub_sources(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [f"{w}{i}.com" for i in range(60) for w in ("shop", "mail")]
    pq.write_table(pa.table({"host": names}), tmp_path / "d.parquet", row_group_size=40)
    (tmp_path / "d.csv").write_text("host,x\n" + "".join(f"{n},1\n" for n in names))
    (tmp_path / "d.txt").write_text("\n".join(names) + "\n")
    for src, kw in ((tmp_path / "d.parquet", {"text_column": "host"}), (tmp_path / "d.csv", {"text_column": "host"}),
                    ("text", {"format": "hf", "text_column": "text", "hf_data_files": [str(tmp_path / "d.txt")]})):
        t = _task(src, batch_size=8, validation_fraction=0.1, **kw)
        b = next(t.train_batches(0))
        assert b["input_idx"].shape[0] == 8 and b["spans"].shape[0] >= 8
        first_two = list(itertools.islice(t.train_batches(0), 2))
        again = next(t.train_batches(0, 1))
        assert torch.equal(first_two[1]["input_idx"], again["input_idx"])



@pytest.mark.parametrize("hub", [False, True])
def test_ranks_split_every_global_batch_and_mask_names_alike(tmp_path, domains_file, hub):
    """2 ranks x 16 names = 1 process x 32: the same names and the same spans, whether the data
    is read in chunks (local files) or streamed (the hub code path, on a local file)."""
    kw = {"format": "hf", "text_column": "text", "hf_data_files": [str(domains_file)]} if hub else {}
    src = "text" if hub else domains_file

    def task(batch_size, rank=0, world=1):
        data = CharDataConfig(train=[str(src)], chunk_bytes=4096, shuffle_buffer=600, max_eval_samples=16, **kw)
        return CharMLMTask(data, CharModelConfig(**SMALL), CharMaskingConfig(), batch_size=batch_size, seed=3,
                           rank=rank, world_size=world)

    one, ranks = task(32), [task(16, r, 2) for r in range(2)]
    whole = list(itertools.islice(one.train_batches(0), 12))
    parts = [list(itertools.islice(t.train_batches(0), 12)) for t in ranks]
    assert len(whole) == 12
    for i, w in enumerate(whole):  # each rank every other row of the length-sorted batch
        assert _char_rows(parts[0][i]) == _char_rows(w)[0::2] and _char_rows(parts[1][i]) == _char_rows(w)[1::2]
    # resuming mid-epoch and workers striding it give the same batches
    resumed = next(ranks[1].train_batches(0, 7))
    assert _char_rows(resumed) == _char_rows(parts[1][7])
    strided = list(itertools.islice(one.train_batches(0, 1, stride=3), 3))
    assert [_char_rows(b) for b in strided] == [_char_rows(whole[i]) for i in (1, 4, 7)]



# ---------------------------------------------------------------------------- hub streams by rank

@pytest.fixture(scope="module")
def hub_parts(tmp_path_factory):
    """Two text files of 300 distinct names (two shards of the `text` builder) and a validation
    file, so that every training row is used: a window of 300 rows is one shard."""
    root = tmp_path_factory.mktemp("hubparts")
    parts = []
    for f in range(2):
        p = root / f"part{f}.txt"
        p.write_text("".join(f"{WORDS[i % 12]}{f}x{i}.{TLDS[i % 5]}\n" for i in range(300)))
        parts.append(str(p))
    (root / "val.txt").write_text("alpha.com\nbeta.net\n")
    return parts, str(root / "val.txt")


def _hub_task(hub_parts, batch_size, rank=0, world=1):
    parts, val = hub_parts
    data = CharDataConfig(train=["text"], format="hf", text_column="text", hf_data_files=parts, validation=[val],
                          shuffle_buffer=300, max_eval_samples=16)
    return CharMLMTask(data, CharModelConfig(**SMALL), CharMaskingConfig(), batch_size=batch_size, seed=3,
                       rank=rank, world_size=world)


def _names(batch, alphabet):
    return [alphabet.decode(row[m.bool()].tolist()) for row, m in zip(batch["clean_idx"], batch["attention_mask"])]


def _same_batch(a, b):
    keys = [k for k in a if not k.startswith("_")]
    return keys == [k for k in b if not k.startswith("_")] and all(torch.equal(a[k], b[k]) for k in keys)


def test_hub_ranks_train_on_their_own_shards_and_resume_at_the_saved_window(hub_parts, monkeypatch):
    """2 ranks of 10 read disjoint shards (each pass a shard goes to one rank) whose union is
    what 1 process of 20 reads; a rank resumes from its saved stream position (not the stream's
    start) and makes the same batch; a run split over 2 ranks refuses to resume on 1."""
    from mlmkit.data.hub import ShardedStream, StreamCursor
    from mlmkit.engine.task import DATA_STATE

    one, ranks = _hub_task(hub_parts, 20), [_hub_task(hub_parts, 10, r, 2) for r in range(2)]
    assert not one.stream.split and all(t.stream.split for t in ranks) and ranks[0].num_batches(0) is None
    whole = [n for b in itertools.islice(one.train_batches(0), 30) for n in _names(b, one.alphabet)]
    batches = [list(itertools.islice(t.train_batches(0), 46)) for t in ranks]
    mine = [[n for b in bs[:30] for n in _names(b, one.alphabet)] for bs in batches]
    assert len(whole) == 600 == len(set(whole)) and all(len(m) == 300 == len(set(m)) for m in mine)
    assert not set(mine[0]) & set(mine[1]) and set(mine[0]) | set(mine[1]) == set(whole)

    marks = [bs[44][DATA_STATE] for bs in batches]  # what the engine saves after training batch 44
    assert marks[1]["split"] == [1, 2] and marks[1]["window"] == 1
    fresh = _hub_task(hub_parts, 10, 1, 2)
    opened = []
    real_open = ShardedStream.open
    monkeypatch.setattr(ShardedStream, "open", lambda self, ctx, start: (opened.append(start), real_open(self, ctx, start))[1])
    fresh.load_data_state(marks)
    assert _same_batch(next(fresh.train_batches(0, 45)), batches[1][45])
    # it started reading where window 1 starts: after the 300 rows of its shard of pass 0
    assert opened == [StreamCursor.from_json(marks[1]["cursor"])] and opened[0].row == 300
    with pytest.raises(MlmkitError, match="split over 2 ranks.*resume it on 2 ranks"):
        _hub_task(hub_parts, 20).load_data_state(marks)


def test_a_hub_stream_read_whole_resumes_on_more_ranks_in_the_same_order(hub_parts):
    """A 1-process checkpoint of a hub stream (read whole) resumed on 2 ranks: they keep reading
    it whole, each its half of every global batch, instead of switching to their own shards."""
    from mlmkit.engine.task import DATA_STATE

    one = _hub_task(hub_parts, 20)
    whole = list(itertools.islice(one.train_batches(0), 22))
    ranks = [_hub_task(hub_parts, 10, r, 2) for r in range(2)]
    for t in ranks:
        t.load_data_state([whole[20][DATA_STATE]])
    parts = [next(t.train_batches(0, 21)) for t in ranks]
    assert not ranks[0].stream.split and _char_rows(parts[0]) == _char_rows(whole[21])[0::2]
    assert _char_rows(parts[1]) == _char_rows(whole[21])[1::2]


# ---------------------------------------------------------------------------- one name per family

def test_one_name_per_family_trains_each_family_once_a_pass_and_its_names_in_turn(tmp_path):
    """`data.one_name_per_family`: every pass trains on each family (the names sharing a name
    without TLD) once, with as many batches as there are families; over as many passes as a
    family has names, on each of them; and a resumed pass gives the same batches."""
    names = sorted([f"{w}{i}.{t}" for i, w in enumerate(WORDS * 5) for t in TLDS[:3]] + [f"solo{i}.com" for i in range(4)])
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    (tmp_path / "val.txt").write_text("alpha.com\nbeta.net\n")
    data = CharDataConfig(train=[str(tmp_path / "names.txt")], validation=[str(tmp_path / "val.txt")],
                          one_name_per_family=True, max_eval_samples=2)
    task = CharMLMTask(data, CharModelConfig(**SMALL), CharMaskingConfig(), batch_size=8, seed=3)
    families = {holdout_key(d) for d in names}
    assert len(families) == 64 and task.num_batches(0) == 64 // 8
    assert task.describe()["scan"]["family_share"] == round(64 / len(names), 4)
    passes = [[_names(b, task.alphabet) for b in task.train_batches(e)] for e in range(3)]
    for batches in passes:
        seen = [d for b in batches for d in b]
        assert sorted(holdout_key(d) for d in seen) == sorted(families)  # each family once
    assert {d for batches in passes for b in batches for d in b} == set(names)  # every name in 3 passes
    assert _names(next(task.train_batches(1, 5)), task.alphabet) == passes[1][5]
