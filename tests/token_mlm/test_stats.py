"""`mlmkit stats` on token data: exact numbers on three hand-made records (3, 10 and 20 tokens
under the tiny tokenizer; one [UNK]), at max_length 8 (room for 6 tokens between [CLS] and [SEP])."""

import numpy as np

from mlmkit.families import resolve_config
from mlmkit.token_mlm.prepare import tokenizer_folder
from mlmkit.token_mlm.stats import PaddingWindow, format_token_stats, token_stats

RECORDS = ["the the \u2603", " ".join(["the"] * 10), " ".join(["the"] * 20)]


def _cfg(tmp_path, *sets):
    data = tmp_path / "three.txt"
    data.write_text("\n".join(RECORDS) + "\n\n")
    return resolve_config("scratch-tiny", overrides=[f"data.train={data}", "data.max_length=8",
                                                     "train.batch_size=2", f"data.cache_dir={tmp_path / 'cache'}",
                                                     *sets])


def test_exact_numbers_on_three_records(tmp_path, tiny_tokenizer):
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    cfg = _cfg(tmp_path, f"tokenizer.name_or_path={tmp_path / 'tok'}")
    r = token_stats(cfg, log=lambda s: None, progress=False, vocab_sizes=[])
    assert (r["records"], r["words"], r["tokens"], r["characters"]) == (3, 33, 33, 9 + 39 + 79)
    assert r["unk_tokens"] == 1 and r["unk_rate"] == round(1 / 33, 6)
    assert r["lengths"]["tokens"] == {"min": 3, "mean": 11.0, "median": 10, "p90": 20, "p99": 20, "max": 20}
    lbl = r["line_by_line"]
    assert (lbl["room"], lbl["records_longer"], lbl["truncated_tokens"]) == (6, 2, 4 + 14)
    # sequences of 5, 8 and 8 positions: 3 of 24 padded to max_length; batches of 2 sorted: [5, 8] [8]
    assert lbl["padding_to_max_length"] == 0.125 and lbl["padding_dynamic_bucketed"] == 0.125
    assert lbl["padding_dynamic_random"] in (0.0, 0.125)
    # group_texts: 3+1 + 10+1 + 20+1 = 36 tokens with the separators = 6 full chunks of 6 (+2 specials)
    grp = r["group_texts"]
    assert (grp["sequences"], grp["positions"], grp["tail_tokens"], grp["tail_kept"]) == (6, 48, 0, False)
    assert grp["special_share"] == round(15 / 48, 6)
    assert r["read"] == "read 3 records, ignored 1 empty lines"
    text = "\n".join(format_token_stats(r))
    assert "records over max_length  2 (66.67%) have more than 6 tokens" in text
    assert "UNK rate ([UNK])  3.03% (1 of 33)" in text


def test_a_scratch_run_trains_its_tokenizer_once_and_caches_it_for_train(tmp_path):
    cfg = _cfg(tmp_path, "tokenizer.vocab_size=100", "tokenizer.min_frequency=1", "data.validation_fraction=0")
    logs = []
    r = token_stats(cfg, log=logs.append, progress=False, vocab_sizes=[120])
    assert "the run's; cached" in r["tokenizer"]["source"] and logs
    assert (tokenizer_folder(cfg) / "tokenizer_config.json").is_file()
    assert [w["tokenizer"] for w in r["vocab_sweep"]["rows"]] == ["run's tokenizer", "wordpiece 120"]
    assert r["vocab_sweep"]["sample_records"] == 3 and not r["vocab_sweep"]["sample_capped"]
    again = token_stats(cfg, log=lambda s: None, progress=False, vocab_sizes=[])
    assert again["tokenizer"]["source"].endswith("(the run's, cached)") and again["tokens"] == r["tokens"]


def test_sample_cap_is_said_in_the_output(tmp_path, tiny_tokenizer):
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    cfg = _cfg(tmp_path, f"tokenizer.name_or_path={tmp_path / 'tok'}")
    r = token_stats(cfg, log=lambda s: None, progress=False, sample=2, vocab_sizes=[100])
    assert r["vocab_sweep"]["sample_records"] == 2 and r["vocab_sweep"]["sample_capped"]
    assert "the first 2 records: at most --sample 2 records" in "\n".join(format_token_stats(r))


def test_padding_window_holds_at_most_one_window():
    w = PaddingWindow(batch_size=4, window_batches=2)
    for _ in range(1000):
        w.add(np.array([3, 9, 4, 8, 5]))
        assert len(w.buf) < 8
    w.finish()
    assert w.tokens == 1000 * 29 and w.bucketed >= w.tokens
