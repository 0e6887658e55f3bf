"""Prepared data: the same sequences as tokenising in memory, whatever the number of worker
processes and pieces; cached by a fingerprint of the inputs; memory-mapped; the read rules."""

import dataclasses

import numpy as np
import pytest

from mlmkit.errors import DataError
from mlmkit.token_mlm import prepare as prep
from mlmkit.token_mlm.config import TokenDataConfig
from mlmkit.token_mlm.data import split_validation, tokenize


def _equal(a, b):
    assert len(a) == len(b)
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.offsets, b.offsets)
    assert (a.word_ids is None) == (b.word_ids is None)
    if a.word_ids is not None:
        assert np.array_equal(a.word_ids, b.word_ids)


@pytest.fixture()
def corpus(tmp_path, english_texts):
    p = tmp_path / "corpus.txt"
    p.write_text("\n".join(english_texts[:2500]) + "\n\n")
    return p


@pytest.mark.parametrize("mode,whole,workers", [("group_texts", False, 1), ("group_texts", True, 2),
                                                ("line_by_line", True, 1), ("line_by_line", False, 2)])
def test_prepared_sequences_equal_tokenising_in_memory(tmp_path, corpus, tiny_tokenizer, english_texts,
                                                       monkeypatch, mode, whole, workers):
    monkeypatch.setattr(prep, "PIECE_BYTES", 16 << 10)  # many pieces, read in any order by the workers
    d = TokenDataConfig(train=[str(corpus)], mode=mode, max_length=64, cache_dir=str(tmp_path / "c"),
                        prepare_workers=workers)
    got = prep.prepare(d, tiny_tokenizer, word_ids=whole, log=lambda s: None, progress=False)
    assert len(prep.work_items(d)) > 5 and isinstance(got.train.tokens, np.memmap)
    train, val = split_validation(english_texts[:2500], d.validation_fraction, seed=0)
    _equal(got.train, tokenize(train, tiny_tokenizer, mode, 64, word_ids=whole, progress=False))
    _equal(got.validation, tokenize(val, tiny_tokenizer, mode, 64, word_ids=whole, progress=False))


def test_the_cache_is_reused_and_a_changed_input_makes_a_new_one(tmp_path, corpus, tiny_tokenizer):
    d = TokenDataConfig(train=[str(corpus)], cache_dir=str(tmp_path / "c"))
    logs = []
    first = prep.prepare(d, tiny_tokenizer, word_ids=False, log=logs.append, progress=False)
    again = prep.prepare(d, tiny_tokenizer, word_ids=False, log=logs.append, progress=False)
    assert again.folder == first.folder and "(cached)" in logs[-1]
    for changed in (dataclasses.replace(d, max_length=64), dataclasses.replace(d, validation_fraction=0.1)):
        assert prep.prepare(changed, tiny_tokenizer, word_ids=False, log=logs.append, progress=False).folder != first.folder
    assert prep.prepare(d, tiny_tokenizer, word_ids=True, log=logs.append, progress=False).folder != first.folder
    with open(corpus, "a") as f:
        f.write("and a new line at the end.\n")
    assert prep.prepare(d, tiny_tokenizer, word_ids=False, log=logs.append, progress=False).folder != first.folder
    assert not list((tmp_path / "c" / "prepared").glob(".*"))  # no temporary folder left behind


def test_max_samples_and_a_separate_validation_source(tmp_path, corpus, tiny_tokenizer, english_texts):
    val_file = tmp_path / "val.txt"
    val_file.write_text("\n".join(english_texts[3000:3100]) + "\n")
    d = TokenDataConfig(train=[str(corpus)], validation=[str(val_file)], max_samples=300, mode="line_by_line",
                        cache_dir=str(tmp_path / "c"), prepare_workers=2)
    got = prep.prepare(d, tiny_tokenizer, word_ids=False, log=lambda s: None, progress=False)
    _equal(got.train, tokenize(english_texts[:300], tiny_tokenizer, "line_by_line", 128, progress=False))
    _equal(got.validation, tokenize(english_texts[3000:3100], tiny_tokenizer, "line_by_line", 128, progress=False))


def test_bad_records_name_their_line_or_are_counted(tmp_path, tiny_tokenizer, monkeypatch):
    monkeypatch.setattr(prep, "PIECE_BYTES", 1024)
    p = tmp_path / "d.txt"
    p.write_bytes(b"".join(b"line number %d of the text\n" % i for i in range(500)) + b"caf\xe9\nlast line\n")
    d = TokenDataConfig(train=[str(p)], cache_dir=str(tmp_path / "c"))
    with pytest.raises(DataError, match=r"d\.txt:501: invalid UTF-8 at byte 4"):
        prep.prepare(d, tiny_tokenizer, word_ids=False, log=lambda s: None, progress=False)
    logs = []
    prep.prepare(dataclasses.replace(d, on_bad_record="skip"), tiny_tokenizer, word_ids=False, log=logs.append,
                 progress=False)
    assert any("skipped 1 bad (invalid_utf8: 1)" in line for line in logs)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.txt: contains no text records"):
        prep.prepare(TokenDataConfig(train=[str(empty)], cache_dir=str(tmp_path / "c")), tiny_tokenizer,
                     word_ids=False, log=lambda s: None, progress=False)
