"""Behaviour of `mlmkit.data.hub.ShardedStream`: a data set read through `datasets` shard by shard,
shared out by rank, and restarted at a saved cursor without reading the rows before it again."""

from __future__ import annotations

import dataclasses
import json

import pytest

from mlmkit.data.base import ReadContext, ReadStats
from mlmkit.data.hub import HubOptions, ShardedStream, StreamCursor
from mlmkit.errors import DataError

ROWS = 25  # per file; the first row of each file is a null (a bad record)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    paths = []
    for f in range(3):
        p = root / f"part{f}.jsonl"
        rows = [{"text": None}] + [{"text": f"f{f}r{r}.com"} for r in range(1, ROWS)]
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths.append(str(p))
    return paths


def _stream(paths, **kw) -> ShardedStream:
    return ShardedStream("json", HubOptions(data_files=list(paths)), "text", seed=1, **kw)


def _ctx() -> ReadContext:
    return ReadContext("text", "skip", ReadStats())


def _read(stream: ShardedStream, start: StreamCursor, n: int | None = None):
    """(texts, cursor after each, bad rows counted) of the next `n` records from `start`."""
    ctx = _ctx()
    cur, it = stream.open(ctx, start)
    texts, cursors = [], []
    for rec in it:
        texts.append(rec.text)
        cursors.append(dataclasses.replace(cur))
        if n is not None and len(texts) == n:
            break
    return texts, cursors, ctx.stats.bad_counts().get("not_text", 0)


def test_one_pass_reads_every_shard_once_in_a_seeded_order(parts):
    stream = _stream(parts)
    texts, _, bad = _read(stream, StreamCursor())
    assert not stream.split and stream.n_shards == 3 and bad == 3
    assert sorted(texts) == sorted(f"f{f}r{r}.com" for f in range(3) for r in range(1, ROWS))
    order = stream.shards(0)
    assert texts[0] == f"f{order[0]}r1.com" and texts[-1] == f"f{order[-1]}r{ROWS - 1}.com"
    assert _read(_stream(parts), StreamCursor())[0] == texts  # the same seed, the same order
    assert stream.shards(0) != stream.shards(1) or stream.shards(1) != stream.shards(2)  # reshuffled per pass


def test_a_restart_at_any_cursor_reads_exactly_the_rest_from_the_saved_state(parts, monkeypatch):
    import datasets

    stream = _stream(parts)
    # batches of 4 rows, so that cursors fall inside batches, on their edges and in later shards
    texts, cursors, _ = _read(stream, StreamCursor(batch_rows=4))
    loaded = []
    real_load = datasets.IterableDataset.load_state_dict
    monkeypatch.setattr(datasets.IterableDataset, "load_state_dict",
                        lambda self, state: (loaded.append(state), real_load(self, state))[1])
    for i in (0, 2, 3, 4, 7, ROWS - 2, ROWS, 40, len(texts) - 2, len(texts) - 1):
        cur = cursors[i]
        loaded.clear()
        rest, _, bad = _read(stream, cur)
        assert rest == texts[i + 1:], i
        # it re-opened the cursor's shard at the saved state (not the stream's start), and read
        # no row of an earlier shard (each shard's first row is a counted bad record)
        assert loaded == ([cur.state] if cur.state is not None else [])
        assert bad == 2 - cur.k
    assert any(c.state is not None and c.row > c.state_row for c in cursors)  # mid-batch cursors were tried


def test_a_cursor_survives_json_and_one_of_another_batch_size_drops_its_state(parts):
    stream = _stream(parts)
    texts, cursors, _ = _read(stream, StreamCursor(), n=ROWS + 5)
    cur = cursors[-1]
    assert StreamCursor.from_json(json.loads(json.dumps(cur.to_json()))) == cur
    other = StreamCursor.from_json({**cur.to_json(), "batch_rows": 7, "state": {"bogus": 1}, "state_row": 3})
    assert other.state is None and other.state_row == 0 and other.row == cur.row
    assert _read(stream, other, n=3)[0] == _read(stream, cur, n=3)[0]


def test_ranks_read_disjoint_shards_whose_union_is_the_data_and_never_run_out(parts):
    ranks = [_stream(parts, rank=r, world=2) for r in range(2)]
    assert all(s.split for s in ranks)
    seen = []
    for s in ranks:
        n = len(s.shards(0)) * (ROWS - 1)  # this rank's share of pass 0
        texts, cursors, _ = _read(s, StreamCursor(), n=n + 1)
        assert cursors[n - 1].epoch == 0 and cursors[n].epoch == 1  # then it goes on into pass 1
        seen.append(set(texts[:n]))
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(_read(_stream(parts), StreamCursor())[0])
    # fewer shards than ranks: every rank reads everything
    assert not _stream(parts, rank=1, world=4).split


def test_a_rank_whose_shards_are_empty_fails_with_the_data_set_named(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"text": None}) + "\n")
    stream = ShardedStream("json", HubOptions(data_files=[str(empty), str(empty)]), "text", seed=1, rank=0, world=2)
    with pytest.raises(DataError, match="hf:json: the shards of rank 0 hold no readable rows"):
        _read(stream, StreamCursor(), n=1)
