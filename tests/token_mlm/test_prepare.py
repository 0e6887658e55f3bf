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


def test_stale_temporary_folders_are_removed_at_the_next_prepare(tmp_path, corpus, tiny_tokenizer):
    """A prepare killed outright (kill -9) leaves its temporary folder: the next prepare removes
    it once nothing was written in it for a day, and keeps one still being written."""
    import os
    import time

    root = tmp_path / "c" / "prepared"
    old, fresh = root / ".0123456789abcdef0123.k2x_9a1b", root / ".fedcba98765432100123.abcd1234"
    for folder in (old, fresh):
        (folder / "train").mkdir(parents=True)
        (folder / "train" / "tokens.bin").write_bytes(b"\0" * 64)
    (root / ".not-ours").mkdir()
    day_ago = time.time() - 25 * 3600
    for path in (old / "train" / "tokens.bin", old / "train", old, fresh):  # fresh: only its file is new
        os.utime(path, (day_ago, day_ago))
    logs = []
    d = TokenDataConfig(train=[str(corpus)], cache_dir=str(tmp_path / "c"))
    prep.prepare(d, tiny_tokenizer, word_ids=False, log=logs.append, progress=False)
    assert not old.exists() and fresh.is_dir() and (root / ".not-ours").is_dir()
    assert f"removed 1 stale temporary folder(s) of interrupted preparations in {root}" in logs


def _signal_a_running_prepare(tmp_path, tiny_tokenizer, english_texts, sig, ready):
    """`mlmkit prepare` with 2 workers in a subprocess (its own process group) on a corpus of 60
    pieces; `sig` is sent once its temporary folder exists and `ready(folder)` holds (polled: no
    fixed sleep). -> (exit code, stderr, the cache folder)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = "\n".join(english_texts[:3000]) + "\n"
    for i in range(60):  # a file is one piece: many pieces, so the workers are busy for seconds
        (corpus / f"part{i:02d}.txt").write_text(text)
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "mlmkit", "prepare", "--preset", "scratch-tiny", "--data", str(corpus),
           "--set", f"tokenizer.name_or_path={tmp_path / 'tok'}", "--set", f"data.cache_dir={cache}",
           "--set", "data.prepare_workers=2", "--set", "train.progress=false", "-o", str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            temps = list((cache / "prepared").glob(".*")) if (cache / "prepared").is_dir() else []
            if temps and ready(temps[0]):
                break
            time.sleep(0.01)  # polling, not waiting a fixed time
        assert proc.poll() is None, f"prepare ended before the signal: {proc.stderr.read()[-2000:]}"
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # Ctrl-C in a terminal reaches the workers too
        else:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, err, cache


def _tokenising(folder):  # the first piece is packed: the workers are on the others
    tokens = folder / "train" / "tokens.bin"
    return tokens.is_file() and tokens.stat().st_size > 0


@pytest.mark.parametrize("sig, ready, code, message", [
    ("SIGTERM", lambda folder: True, 2, "error: data preparation stopped by SIGTERM"),  # while the pool starts
    ("SIGTERM", _tokenising, 2, "error: data preparation stopped by SIGTERM"),
    ("SIGINT", _tokenising, 2, "error: data preparation stopped by SIGINT"),
], ids=["sigterm-starting", "sigterm-tokenising", "sigint-tokenising"])
def test_a_signal_during_prepare_is_one_line_and_leaves_no_temporary_folder(
        tmp_path, tiny_tokenizer, english_texts, sig, ready, code, message):
    import signal

    returncode, err, cache = _signal_a_running_prepare(tmp_path, tiny_tokenizer, english_texts,
                                                       getattr(signal, sig), ready)
    assert returncode == code, err
    assert "Traceback" not in err and "UnpicklingError" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1].startswith(message), err
    assert [p.name for p in (cache / "prepared").iterdir()] == []  # no temporary, no half-made folder


def test_a_signal_while_the_pool_starts_waits_until_it_has_started():
    """Raised in the middle of starting the pool, the exception would cut a worker off from its
    start-up data (an UnpicklingError traceback): the signal waits, and SIGINT is ignored so that
    the workers started then inherit SIG_IGN (Ctrl-C reaches them too)."""
    import os
    import signal

    with prep._Interrupts() as stops:
        with stops.deferred():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGTERM)
            waited = sum(range(1000))  # Python runs the handler at the next bytecodes: here
        assert waited == 499500 and signal.getsignal(signal.SIGINT) == stops._handle
        with pytest.raises(prep.PrepareInterrupted, match="^data preparation stopped by SIGTERM: nothing was kept"):
            stops.raise_pending()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the caller's handlers are back
