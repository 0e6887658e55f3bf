"""Property-based tests: bad input never gives a traceback or a silently wrong record.

For every data reader (text, JSONL, JSON array, CSV, TSV, Parquet, each gzipped where that
exists) and the config loader, on random bytes, invalid UTF-8, NUL bytes, empty lines, empty
files, wrong columns and wrong types, one of two things happens:

* records come out as `str`, each with the right 1-based line (checked against the file for the
  line formats), and with ``on_bad="skip"`` every bad record is counted; or
* an `MlmkitError` (DataError / ConfigError) is raised whose message is one line naming the file
  (and the line, where there is one).

Any other exception type fails the test. Budgets are bounded (`max_examples`, no deadline), so the
module runs in well under 40 s on a 2-core CI machine.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mlmkit.config import load_yaml, parse_override, save_config, to_dict
from mlmkit.families import build_config
from mlmkit.data.records import ReadStats, iter_records
from mlmkit.errors import ConfigError, DataError, MlmkitError

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Lines built to hit the edge cases (plus fully random bytes below).
_line = st.one_of(
    st.text(max_size=40),  # any unicode, incl. NUL, control characters, \r, lone BOM...
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    st.sampled_from(["", " ", "\x00", "\t", "\ufeff", "a\x00b", "\u2028", "é", "\r"]),
)
_bad_bytes = st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xef\xbb\xbf", b"\r", b""])


@st.composite
def _line_file(draw) -> bytes:
    """Newline-separated lines, some with invalid UTF-8 spliced in."""
    lines = draw(st.lists(_line, max_size=12))
    out = []
    for text in lines:
        raw = text.replace("\n", " ").encode("utf-8", "surrogatepass")
        if draw(st.booleans()) and draw(st.booleans()):
            cut = draw(st.integers(0, len(raw)))
            raw = raw[:cut] + draw(_bad_bytes) + raw[cut:]
        out.append(raw)
    return b"\n".join(out) + draw(st.sampled_from([b"", b"\n", b"\r\n"]))


_any_bytes = st.one_of(st.binary(max_size=300), _line_file())


def _read(path: Path, on_bad: str, **kw):
    """(records, stats) or the MlmkitError; anything else propagates and fails the test."""
    stats = ReadStats()
    try:
        return list(iter_records(str(path), on_bad=on_bad, stats=stats, **kw)), stats
    except MlmkitError as e:
        return e, stats


def _check_error(err: MlmkitError, path: Path) -> None:
    msg = str(err)
    assert "\n" not in msg and "\r" not in msg, msg
    assert str(path) in msg, msg
    if isinstance(err, DataError) and err.line is not None:
        assert f"{path}:{err.line}:" in msg and err.line >= 1


def _check_records(records, path: Path, n_lines: int | None) -> None:
    for r in records:
        assert isinstance(r.text, str) and r.text.strip() and "\x00" not in r.text
        r.text.encode("utf-8")  # no lone surrogates: the tokenizer would choke on them later
        assert r.source == str(path)
        assert r.line >= 1 and (n_lines is None or r.line <= n_lines)
    lines = [r.line for r in records]
    assert lines == sorted(lines)


def _physical_lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [l[:-1] if l.endswith(b"\r") else l for l in lines]


def _write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    if name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------- text
@FUZZ
@given(data=_any_bytes, gz=st.booleans(), on_bad=st.sampled_from(["error", "skip"]))
@example(data=b"", gz=False, on_bad="error")
@example(data=b"\n\n \n", gz=False, on_bad="skip")
@example(data=b"ok\n\xff\xfe\nfine\x00\n", gz=True, on_bad="skip")
@example(data=b"\xc2\x80\xc2\x80\r", gz=False, on_bad="error")  # CR at end of file, no newline
def test_text_reader(data, gz, on_bad):
    with tempfile.TemporaryDirectory() as d:
        path = _write(Path(d), "corpus.txt.gz" if gz else "corpus.txt", data)
        got, stats = _read(path, on_bad)
        lines = _physical_lines(data)
        if lines and lines[0].startswith(b"\xef\xbb\xbf"):
            lines[0] = lines[0][3:]
        if isinstance(got, MlmkitError):
            _check_error(got, path)
            if on_bad == "error" and isinstance(got, DataError) and got.line is not None:
                first_bad = next(i for i, l in enumerate(lines, 1) if _bad_text_line(l))
                assert got.line == first_bad
            return
        _check_records(got, path, len(lines))
        for r in got:  # the record is exactly its line
            assert r.text == lines[r.line - 1].decode("utf-8")
        if on_bad == "skip":  # every line is a record or a counted skip
            assert len(got) + stats.total_skipped == len(lines)


def _bad_text_line(raw: bytes) -> bool:
    try:
        return "\x00" in raw.decode("utf-8")
    except UnicodeDecodeError:
        return True


# ------------------------------------------------------------------------------------- JSONL
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def _jsonl_file(draw) -> bytes:
    rows = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.integers(0, 4))
        if kind == 0:  # a good row
            rows.append(json.dumps({"text": draw(st.text(max_size=20)), "x": 1}).encode())
        elif kind == 1:  # wrong column name / wrong type
            key = draw(st.sampled_from(["text", "Text", "body", ""]))
            rows.append(json.dumps({key: draw(_json_value)}).encode())
        elif kind == 2:  # not an object
            rows.append(json.dumps(draw(_json_value)).encode())
        elif kind == 3:  # lone surrogates and NULs through JSON escapes
            rows.append(draw(st.sampled_from([b'{"text": "\\ud800x"}', b'{"text": "a\\u0000b"}',
                                              b'{"text": "\\udfff"}', b'{"text": "\\ud83d\\ude00"}'])))
        else:
            rows.append(draw(_line_file()))
    return b"\n".join(rows)


@FUZZ
@given(data=st.one_of(_jsonl_file(), _any_bytes), name=st.sampled_from(["d.jsonl", "d.jsonl.gz", "d.json"]),
       on_bad=st.sampled_from(["error", "skip"]))
@example(data=b"[" * 5_000, name="d.json", on_bad="error")  # deep nesting: RecursionError in json
@example(data=b'{"text": ' + b"[" * 5_000, name="d.jsonl", on_bad="skip")
@example(data=b'["a", 3, {"text": "b"}, {"t": 1}, null]', name="d.json", on_bad="skip")
def test_jsonl_and_json_array_readers(data, name, on_bad):
    with tempfile.TemporaryDirectory() as d:
        path = _write(Path(d), name, data)
        got, stats = _read(path, on_bad)
        if isinstance(got, MlmkitError):
            _check_error(got, path)
            return
        is_array = data.lstrip().startswith(b"[")  # element index, not a line, for arrays
        _check_records(got, path, None if is_array else len(_physical_lines(data)))
        if not is_array and not name.endswith(".json"):
            lines = _physical_lines(data)
            for r in got:  # the record is the "text" of the object on its line
                assert json.loads(lines[r.line - 1].decode("utf-8"))["text"] == r.text
            if on_bad == "skip":  # every line is a record or a counted skip
                assert len(got) + stats.total_skipped == len(lines)


# ------------------------------------------------------------------------------------- CSV / TSV
@st.composite
def _csv_file(draw, delimiter: str) -> bytes:
    header = draw(st.lists(st.sampled_from(["text", "label", "Text", " text ", "", "a\x00"]), min_size=1,
                           max_size=3))
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter)
    w.writerow(header)
    for _ in range(draw(st.integers(0, 6))):
        w.writerow(draw(st.lists(_line, max_size=4)))
    raw = buf.getvalue().encode("utf-8", "surrogatepass")
    if draw(st.booleans()):  # splice damage anywhere
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.sampled_from([b"\xff", b'"', b"\n", b"\x00", b"\r"])) + raw[cut:]
    return raw


@FUZZ
@given(st.data())
def test_csv_and_tsv_readers(data):
    name = data.draw(st.sampled_from(["d.csv", "d.tsv", "d.csv.gz", "d.tsv.gz"]))
    raw = data.draw(st.one_of(_csv_file("\t" if ".tsv" in name else ","), _any_bytes))
    on_bad = data.draw(st.sampled_from(["error", "skip"]))
    with tempfile.TemporaryDirectory() as d:
        path = _write(Path(d), name, raw)
        got, stats = _read(path, on_bad)
        if isinstance(got, MlmkitError):
            _check_error(got, path)
            return
        _check_records(got, path, len(_physical_lines(raw)) + 1)
        assert all(r.line >= 2 for r in got)  # line 1 is the header
        plain = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else raw
        for r in got:  # a record is text that stands in the file (a field, unquoted)
            assert r.text.replace('"', "").encode("utf-8") in plain.replace(b'""', b'"').replace(b'"', b"")


# ------------------------------------------------------------------------------------- Parquet
@FUZZ
@given(data=st.data())
def test_parquet_reader(data):
    import pyarrow as pa
    import pyarrow.parquet as pq

    on_bad = data.draw(st.sampled_from(["error", "skip"]))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "d.parquet"
        kind = data.draw(st.integers(0, 2))
        if kind == 0:  # random bytes, or a real file cut short
            path.write_bytes(data.draw(st.binary(max_size=200)))
        else:
            values = data.draw(st.lists(st.none() | st.text(max_size=10), max_size=8))
            col = data.draw(st.sampled_from(["text", "body"]))
            arrays = {col: pa.array(values, type=pa.string())}
            if kind == 2:  # wrong type
                arrays = {"text": pa.array([len(v or "") for v in values], type=pa.int64())}
            pq.write_table(pa.table(arrays), path)
            if data.draw(st.booleans()):
                raw = path.read_bytes()
                path.write_bytes(raw[: data.draw(st.integers(0, len(raw)))])
        got, stats = _read(path, on_bad)
        if isinstance(got, MlmkitError):
            _check_error(got, path)
            return
        _check_records(got, path, None)
        assert [r.line for r in got] == sorted(set(r.line for r in got))


# ------------------------------------------------------------------------------------- 10 MB lines
@pytest.mark.parametrize("name", ["big.txt", "big.jsonl", "big.csv"])
def test_a_10_mb_line_is_one_record(tmp_path, name):
    text = "word " * 2_000_000  # 10 MB
    fmt = {"big.txt": str, "big.jsonl": lambda t: json.dumps({"text": t}), "big.csv": lambda t: f'"{t}"'}[name]
    head = "text\n" if name.endswith(".csv") else ""
    path = tmp_path / name
    path.write_text(f"{head}{fmt('short one')}\n{fmt(text)}\n{fmt('last')}\n", encoding="utf-8")
    got = list(iter_records(str(path)))
    assert [r.line for r in got] == ([2, 3, 4] if head else [1, 2, 3])
    assert got[1].text == text


# ------------------------------------------------------------------------------------- config
@FUZZ
@given(data=_any_bytes)
@example(data=b"train:\n  lr: \x00\n")  # PyYAML's ReaderError message is two lines
@example(data=b"[" * 3_000)  # deep nesting
@example(data=b"train: [1, 2")
@example(data=b"- a\n- b\n")
def test_load_yaml(data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "cfg.yaml"
        path.write_bytes(data)
        try:
            raw = load_yaml(path)
        except ConfigError as e:
            _check_error(e, path)
            return
        assert isinstance(raw, dict)
        try:
            build_config(raw)
        except ConfigError as e:
            assert "\n" not in str(e)


_keys = st.sampled_from(["task", "data", "train", "model", "masking", "optim", "tokenizer", "nope",
                         "batch_size", "max_length", "lr", "betas", "rate", "loggers", "format", "train.x"])


@FUZZ
@given(raw=st.dictionaries(_keys, st.one_of(_json_value, st.dictionaries(_keys, _json_value, max_size=4)),
                           max_size=5))
@example(raw={"task": "char", "data": {"max_length": "x"}})
@example(raw={"train": {"batch_size": float("nan")}, "optim": {"betas": [0.9]}})
def test_build_config(raw):
    try:
        cfg = build_config(raw)
    except ConfigError as e:
        assert "\n" not in str(e) and "config" in str(e).lower()
        return
    assert cfg.task in ("token", "char")
    with tempfile.TemporaryDirectory() as d:  # what is accepted is saved and read back the same
        save_config(cfg, Path(d) / "config.yaml")
        assert to_dict(build_config(load_yaml(Path(d) / "config.yaml"))) == to_dict(cfg)


@FUZZ
@given(item=st.text(max_size=60))
@example(item="train.batch_size=" + "[" * 3_000)
@example(item="=3")
@example(item="a..b=\x00")
@example(item="0\n0=0")  # a newline in an unknown key stayed in the one-line error
def test_parse_override(item):
    try:
        override = parse_override(item)
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(override, dict)
    try:
        build_config(override)
    except ConfigError as e:
        assert "\n" not in str(e)


# ------------------------------------------------------------------------------------- chunks
@FUZZ
@given(data=_any_bytes, chunk=st.integers(1, 64), on_bad=st.sampled_from(["error", "skip"]),
       bom=st.booleans(), crlf=st.booleans())
@example(data=b"a\r\nb\r\n", chunk=2, on_bad="skip", bom=True, crlf=True)
@example(data=b"", chunk=1, on_bad="skip", bom=False, crlf=False)
def test_chunked_reading_equals_the_sequential_reader(data, chunk, on_bad, bom, crlf):
    """The streaming (character) path reads byte ranges; whatever the boundaries, CR/LF, BOM,
    invalid UTF-8 or empty file, it gives the records (and the first error's line) of the
    plain sequential reader."""
    from mlmkit.data.base import ReadContext
    from mlmkit.data.chunks import chunk_files, read_chunk

    if crlf:
        data = data.replace(b"\n", b"\r\n")
    if bom:
        data = b"\xef\xbb\xbf" + data
    with tempfile.TemporaryDirectory() as d:
        path = _write(Path(d), "names.txt", data)
        want, _ = _read(path, on_bad)
        ctx = ReadContext(on_bad=on_bad)
        try:
            got = [r.text for ch in chunk_files([path], "auto", chunk, "text") for r in read_chunk(ch, ctx)]
        except MlmkitError as e:
            assert isinstance(want, MlmkitError), e
            if isinstance(want, DataError) and want.line is not None:
                assert f"{path}:{want.line}:" in str(e)
            return
        if isinstance(want, MlmkitError):  # only the "no records at all" check is the reader's own
            assert got == [] and "contains no text records" in str(want)
            return
        assert got == [r.text for r in want]
