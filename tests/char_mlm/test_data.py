"""Domain normalisation, validation, alphabet and streaming sources."""

from __future__ import annotations

import random

import pytest

from mlmkit.char_mlm.config import CharDataConfig
from mlmkit.char_mlm.data import (
    Alphabet,
    DomainFilter,
    DomainSource,
    check_domain,
    derive_alphabet,
    is_validation,
    normalize_domain,
    validate_domain,
)
from mlmkit.errors import DataError


def _source(spec, **data_kw) -> DomainSource:
    return DomainSource([str(spec)], CharDataConfig(**data_kw))


def _values(src: DomainSource, ctx=None) -> list[str]:
    return [r.text for r in src.iter_records(ctx or src.ctx())]


def test_normalize_basic():
    assert normalize_domain("  Example.COM.\n") == "example.com"
    assert normalize_domain("bücher.de", "to_ascii") == "xn--bcher-kva.de"
    assert normalize_domain("xn--bcher-kva.de", "to_unicode") == "bücher.de"
    assert normalize_domain("xn--bcher-kva.de", "keep") == "xn--bcher-kva.de"
    assert normalize_domain("plain.com", "to_ascii") == "plain.com"


@pytest.mark.parametrize(
    "name,reason",
    [
        ("", "empty"),
        ("a..b", "empty_label"),
        ("-ab.com", "hyphen_edge"),
        ("ab-.com", "hyphen_edge"),
        ("a_b.com", "bad_char"),
        ("a b.com", "bad_char"),
        ("x" * 64 + ".com", "label_too_long"),
        (".".join(["a" * 60] * 5), "too_long"),
        ("example.com", None),
        ("xn--bcher-kva.de", None),
        ("a-b.co.uk", None),
    ],
)
def test_validate_reasons(name, reason):
    assert validate_domain(name) == reason


def test_unicode_allowed_only_when_kept():
    assert validate_domain("bücher.de", allow_unicode=True) is None
    assert validate_domain("bücher.de", allow_unicode=False) == "bad_char"
    assert check_domain("Bücher.de", "keep") == ("bücher.de", None)
    assert check_domain("Bücher.de", "to_ascii") == ("xn--bcher-kva.de", None)
    assert check_domain("xn--zz-.com", "to_unicode")[1] in ("idna", "hyphen_edge", "bad_char")
    assert check_domain("toolong.com", max_length=5) == (None, "longer_than_max_length")


def test_holdout_is_deterministic_and_calibrated():
    names = [f"name{i}.com" for i in range(20000)]
    flags = [is_validation(n, 0.1) for n in names]
    assert flags == [is_validation(n, 0.1) for n in names]
    assert 0.09 < sum(flags) / len(flags) < 0.11


def test_alphabet_specials_and_roundtrip():
    a = derive_alphabet(["bücher.de", "abc.com"])
    assert a.PAD == 0 and a.code_points[: 4] == [0, 0xE000, 0xE001, 0xE003]
    assert "ü" in a.chars and "z" in a.chars  # base alphabet always included
    ids = a.encode("bücher.de")
    assert min(ids) >= Alphabet.N_SPECIALS and a.decode(ids) == "bücher.de"
    assert a.encode("é")[0] == Alphabet.UNK
    b = Alphabet.from_json(a.to_json())
    assert a == b and len(a) == len(b)


def _write_lines(path, lines):
    path.write_bytes(b"".join(l + b"\n" for l in lines))


def test_csv_and_parquet_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    c = tmp_path / "d.csv"
    c.write_text("rank,domain\n1,a.com\n2,\"b.org\"\n")
    assert _values(_source(c)) == ["a.com", "b.org"]
    with pytest.raises(DataError, match="no column 'host'"):
        _values(_source(c, text_column="host"))
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"domain": ["x.com", "y.net", "z.org"]}), p, row_group_size=2)
    src = _source(p)
    assert len(src.chunks()) == 2
    assert _values(src) == ["x.com", "y.net", "z.org"]


def test_bad_names_and_bytes_counted_or_error_with_line(tmp_path):
    p = tmp_path / "bad.txt"
    _write_lines(p, [b"good.com", b"caf\xe9.com", b"also-good.org", b"bad..name"])
    src = _source(p, on_bad_record="skip")
    ctx = src.ctx()
    assert list(DomainFilter().filter(src.iter_records(ctx), ctx)) == ["good.com", "also-good.org"]
    assert ctx.stats.bad_counts() == {"invalid_utf8": 1, "empty_label": 1}
    src = _source(p, on_bad_record="error")
    with pytest.raises(DataError) as e:
        ctx = src.ctx()
        list(DomainFilter().filter(src.iter_records(ctx), ctx))
    assert f"{p}:2:" in str(e.value) and "UTF-8" in str(e.value)
    p2 = tmp_path / "bad2.txt"
    _write_lines(p2, [b"good.com", b"bad..name"])
    src = _source(p2, on_bad_record="error")
    with pytest.raises(DataError, match=r":2: invalid domain 'bad..name': empty_label"):
        ctx = src.ctx()
        list(DomainFilter().filter(src.iter_records(ctx), ctx))


def test_empty_and_missing_files(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        _source(p)
    with pytest.raises(DataError, match="no such file"):
        _source(tmp_path / "nope.txt")


def test_hub_streaming_with_local_text_builder(tmp_path):
    p = tmp_path / "d.txt"
    _write_lines(p, [b"a.com", b"b.org", b"c.net"])
    src = DomainSource(["text"], CharDataConfig(format="hf", text_column="text", hf_data_files=[str(p)]))
    assert src.is_hub
    assert [r.text for r in src.iter_hub(src.ctx())] == ["a.com", "b.org", "c.net"]
    stream = src.hub_stream(seed=0)
    assert stream.n_shards == 1 and not stream.split


def test_hub_and_local_sources_do_not_mix(tmp_path):
    p = tmp_path / "d.txt"
    _write_lines(p, [b"a.com"])
    with pytest.raises(DataError, match="one Hugging Face data set at a time"):
        DomainSource([str(p), "hf:some/name"], CharDataConfig())


def test_bundled_sample_resolves():
    src = _source("mlmkit:samples/domains.txt")
    assert len(src.files) == 1 and src.files[0].endswith("domains.txt")
    first = next(iter(src.iter_records(src.ctx()))).text.strip()
    assert check_domain(first)[1] is None


def test_holdout_by_name_keeps_tld_twins_together():
    for i in range(200):
        a, b = f"twin{i}.cf", f"twin{i}.ga"
        assert is_validation(a, 0.3) == is_validation(b, 0.3)  # default key: name without TLD
    split = [is_validation(f"twin{i}.cf", 0.5, "domain") != is_validation(f"twin{i}.ga", 0.5, "domain")
             for i in range(200)]
    assert any(split)
