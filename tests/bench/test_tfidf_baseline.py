"""The TF-IDF + logistic-regression baseline of the downstream tasks (bench/tfidf_baseline.py), on
a tiny synthetic labelled set whose rule is obvious. Needs scikit-learn (the `bench` extra, not
the `test` one that CI installs): skipped without it. Nothing here downloads."""

import random
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="scikit-learn is not installed (it is in the bench extra: "
                                      "pip install -e '.[bench]'); the TF-IDF baseline needs it")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import char_tasks  # noqa: E402
import tfidf_baseline  # noqa: E402


def _rows(n: int = 500, seed: int = 0):
    """Label "mark" iff the name holds "xq" (the other letters never make an x), TLDs shared."""
    rng = random.Random(seed)
    names = []
    for i in range(n):
        base = "".join(rng.choices("abcdefghijklmnop", k=rng.randint(4, 9)))
        if i % 2:
            at = rng.randint(0, len(base))
            base = base[:at] + "xq" + base[at:]
        names.append((f"{base}.{rng.choice(['com', 'net', 'org'])}", "mark" if i % 2 else "plain"))
    return char_tasks.build_rows([("mark", [d for d, l in names if l == "mark"]),
                                  ("plain", [d for d, l in names if l == "plain"])], set())


def test_learns_an_obvious_rule():
    rows = _rows()
    train, val, test = char_tasks.split(rows, seed=0, train_size=120)
    for analyzer in tfidf_baseline.ANALYZERS:
        fit = tfidf_baseline.fit(train, val, analyzer)
        assert fit.C in tfidf_baseline.GRID
        assert fit.val["n"] == len(val)
        m = fit.score(test)
        assert m["accuracy"] >= 0.95 and m["macro_f1"] >= 0.95, (analyzer, m)
    assert fit.predict(["zzzxqzz.com", "abcdef.com"]) == ["mark", "plain"]


def test_runs_on_the_shared_split_and_fits_identical_sets_once():
    rows = _rows(300, seed=1)
    fits = tfidf_baseline.run(rows, seeds=[0, 1], sizes=[60, None], analyzers=("char_wb",), grid=(1.0, 10.0))
    assert set(fits) == {("char_wb", s, seed) for s in (60, None) for seed in (0, 1)}
    assert fits[("char_wb", None, 0)] is fits[("char_wb", None, 1)]  # all labels: the same training set
    _, val, _ = char_tasks.split(rows, 0)
    assert all(f.val["n"] == len(val) for f in fits.values())
    chosen, means = tfidf_baseline.choose_analyzer(fits, ("char_wb",))
    assert chosen == "char_wb" and 0.5 < means["char_wb"] <= 1.0


def test_main_prints_the_tables(monkeypatch, capsys):
    rows = _rows(300, seed=2)
    monkeypatch.setattr(char_tasks, "labelled_names", lambda task: rows)
    tfidf_baseline.main(["--seeds", "0,1", "--train-sizes", "50,all", "--grid", "1,10"])
    out = capsys.readouterr().out
    assert "is used below" in out
    table = [l for l in out.splitlines() if l.startswith("|") and ("| 50 |" in l or "(all) |" in l)]
    assert len(table) == 2 * 2 + 2  # validation: 2 analyzers x 2 sizes; test: 2 sizes
    assert float(out.split("Mean over all runs: ")[1].split("`")[2].split(",")[0]) > 0.9


def test_tld_rule():
    from mlmkit.finetune.sequence_data import Example

    train = [Example("a.edu", "x"), Example("b.edu", "x"), Example("c.com", "y"), Example("d.com", "x"),
             Example("e.com", "y")]
    test = [Example("f.edu", "x"), Example("g.com", "y"), Example("h.io", "x")]
    assert tfidf_baseline.tld_rule(train, test) == 1.0  # .io unseen: the overall majority, x
