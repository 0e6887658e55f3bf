"""`mlmkit stats` on domain names: validity by the family's rules, TLDs, lengths, duplicates."""

import pytest

from mlmkit.errors import DataError
from mlmkit.families import resolve_config
from mlmkit.char_mlm.stats import NameScan, char_stats, format_char_stats

NAMES = ["a.com", "B.Example.COM.", "x.org", "bad_name.com", "a.com", "averyveryverylongname.com", ""]


def _cfg(tmp_path, *sets):
    data = tmp_path / "names.txt"
    data.write_text("\n".join(NAMES) + "\n")
    return resolve_config("domains-tiny", overrides=[f"data.train={data}", "data.max_length=16", *sets])


def test_exact_numbers_on_hand_made_names(tmp_path):
    r = char_stats(_cfg(tmp_path), log=lambda s: None, progress=False)
    assert (r["rows"], r["valid"], r["invalid"], r["empty_lines"]) == (6, 5, 1, 1)
    assert r["invalid_reasons"] == {"bad_char": 1} and "names.txt:4" in r["examples"]["bad_char"]
    assert r["over_max_length"] == 1 and r["duplicates"] == 1 and r["duplicates_checked"] == 5
    assert r["tlds"]["top"] == {"com": 4, "org": 1}
    assert r["labels_per_name"] == {2: 4, 3: 1}
    assert r["name_length"] == {"min": 5, "mean": 10.6, "median": 5, "p90": 25, "p99": 25, "max": 25}
    assert r["alphabet"]["counts"]["."] == 6 and r["alphabet"]["counts"]["a"] == 1 + 1 + 1 + 2
    text = "\n".join(format_char_stats(r))
    assert "over max_length 16  1 (20.00% of valid; train skips them)" in text
    assert "  com      4  80.00%" in text and "skip to count" not in text


def test_bad_rows_stop_the_read_when_the_run_says_error(tmp_path):
    with pytest.raises(DataError, match="names.txt:4"):
        char_stats(_cfg(tmp_path, "data.on_bad_record=error"), log=lambda s: None, progress=False)


def test_duplicates_are_checked_on_a_capped_sample():
    scan = NameScan(max_length=64, sample=3)
    for name in ["a.com", "a.com", "b.com", "b.com", "b.com"]:
        scan.add(name)
    assert len(scan.hashes) == 3 and scan.duplicates() == 1 and scan.valid == 5
