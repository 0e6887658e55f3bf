"""The Kneser-Ney baseline of bench/char_external.py: a proper distribution, consistent scores."""

import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from kneser_ney import BOS, CharKN, discounts  # noqa: E402

CHARS = "-.0123456789abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(scope="module")
def names():
    text = (resources.files("mlmkit") / "samples" / "domains.txt").read_text(encoding="utf-8")
    return [l.strip() for l in text.splitlines() if l.strip()][:3000]


@pytest.mark.parametrize("order", [2, 3, 5])
def test_probabilities_sum_to_one(names, order):
    kn = CharKN(CHARS, order).fit(names)
    m = order - 1
    contexts = ["", "g", "mai", "xqzj", "temp", "zz.", "mail.co"]
    vocab = kn.predicted_symbols()
    for text in contexts:
        for at_start in (True, False):  # right after BOS, or in the middle of a name
            syms = ([BOS] if at_start else []) + kn.encode(text)
            if not at_start and not syms:
                continue
            ctx = ([0] * m + syms)[-m:]
            lp = kn.logprob(np.tile(np.array(ctx, np.int64), (len(vocab), 1)), vocab)
            assert np.exp(lp).sum() == pytest.approx(1.0, abs=1e-9), (text, at_start)
            assert np.isfinite(lp).all()  # every symbol keeps some mass, even after an unseen context


def test_span_scores_match_string_logprobs(names):
    kn = CharKN(CHARS, 5).fit(names)
    cands = kn.candidates(2)
    scores = kn.span_scores("goo", "le.com", cands)
    pick = [0, 17, 400, len(cands) - 1]
    full = kn.string_logprob(["goo" + kn.decode(cands[i]) + "le.com" for i in pick])
    assert np.allclose(full - full[0], scores[pick] - scores[pick[0]])


def test_seen_names_beat_shuffled_ones(names):
    kn = CharKN(CHARS, 4).fit(names[:2000])
    real = kn.string_logprob(names[2000:2200])
    rng = np.random.default_rng(0)
    fake = kn.string_logprob(["".join(rng.permutation(list(n))) for n in names[2000:2200]])
    assert real.mean() > fake.mean() + 5


def test_discounts_in_range():
    a = np.array([1] * 50 + [2] * 20 + [3] * 10 + [4] * 5 + [9] * 5)
    D = discounts(a)
    assert 0 < D[1] < 1 and 0 < D[2] < 2 and 0 < D[3] < 3


def test_finder_without_pandas_agrees(monkeypatch):
    import kneser_ney

    keys = np.array([3, 8, 20, 1000], dtype=np.int64)
    q = np.array([8, 9, 1000, 0, 3, 2000], dtype=np.int64)
    fast = kneser_ney.finder(keys)(q)
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now fails
    slow = kneser_ney.finder(keys)(q)
    assert fast.tolist() == slow.tolist() == [1, -1, 3, -1, 0, -1]
