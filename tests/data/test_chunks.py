"""Chunked reading: every record exactly once, in any chunk order, with the same bad-record rules
(and file:line messages) as the sequential reader."""

from __future__ import annotations

import gzip
import json
import random

import pytest

from mlmkit.data.base import ReadContext, ReadStats
from mlmkit.data.chunks import chunk_files, read_chunk
from mlmkit.data.records import iter_records
from mlmkit.errors import DataError


def _read_all(path, column="text", chunk_bytes=1024, shuffle=False, on_bad="error"):
    chunks = chunk_files([path], "auto", chunk_bytes, column)
    if shuffle:
        random.Random(0).shuffle(chunks)
    ctx = ReadContext(column, on_bad, ReadStats())
    return chunks, [r.text for ch in chunks for r in read_chunk(ch, ctx)], ctx


def test_line_chunks_read_every_line_once_in_any_order(tmp_path):
    rng = random.Random(0)
    lines = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 40))) + ".com" for _ in range(3000)]
    p = tmp_path / "d.txt"
    p.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")  # BOM and CRLF
    chunks, got, _ = _read_all(p)
    assert len(chunks) > 10 and got == lines
    _, shuffled, _ = _read_all(p, shuffle=True)
    assert sorted(shuffled) == sorted(lines)


@pytest.mark.parametrize("kind", ["jsonl", "csv", "tsv"])
def test_structured_line_formats_match_the_sequential_reader(tmp_path, kind):
    names = [f"name{i}.com" for i in range(500)]
    p = tmp_path / f"d.{kind}"
    if kind == "jsonl":
        p.write_text("".join(json.dumps({"id": i, "text": n}) + "\n" for i, n in enumerate(names)))
    else:
        sep = "," if kind == "csv" else "\t"
        p.write_text(f"id{sep}text\n" + "".join(f"{i}{sep}{n}\n" for i, n in enumerate(names)))
    chunks, got, _ = _read_all(p, chunk_bytes=1024)
    assert len(chunks) > 3
    assert got == names == [r.text for r in iter_records(str(p))]


def test_gzip_and_json_arrays_are_one_chunk(tmp_path):
    gz = tmp_path / "d.txt.gz"
    gz.write_bytes(gzip.compress(b"a.com\nb.com\n" * 500))
    arr = tmp_path / "d.json"
    arr.write_text(json.dumps(["x.com", "y.com"] * 600))
    for path, n in ((gz, 1000), (arr, 1200)):
        chunks, got, _ = _read_all(path, chunk_bytes=1024)
        assert [c.kind for c in chunks] == ["whole"] and len(got) == n


def test_bad_lines_name_their_line_or_are_counted(tmp_path):
    p = tmp_path / "d.txt"
    p.write_bytes(b"".join(b"ok%d.com\n" % i for i in range(300)) + b"caf\xe9.com\n" + b"fine.com\n")
    with pytest.raises(DataError, match=r"d\.txt:301: invalid UTF-8 at byte 4 \(0xe9\)"):
        _read_all(p, chunk_bytes=1024)
    _, got, ctx = _read_all(p, chunk_bytes=1024, on_bad="skip")
    assert len(got) == 301 and ctx.stats.bad_counts() == {"invalid_utf8": 1}
    assert ":301:" in ctx.stats.examples["invalid_utf8"]


def test_limits_cut_a_file_and_drop_others(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("".join(f"a{i}.com\n" for i in range(1000)))
    b.write_text("b.com\n")
    cut = a.read_bytes().index(b"a500.com")
    chunks = chunk_files([a, b], "auto", 1024, "text", {str(a): cut + 1, str(b): 0})
    ctx = ReadContext()
    got = [r.text for ch in chunks for r in read_chunk(ch, ctx)]
    assert got == [f"a{i}.com" for i in range(501)]
