"""The downstream tasks' names and split (bench/char_tasks.py), shared by char_downstream.py and
tfidf_baseline.py: deterministic, disjoint, mlmkit finetune's own split, no name seen in
pre-training. Synthetic lists only: nothing here downloads."""

import base64
import hashlib
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import char_sources  # noqa: E402
import char_tasks  # noqa: E402
from mlmkit.finetune.sequence_data import load_examples  # noqa: E402
from mlmkit.finetune.splits import split_examples, subsample  # noqa: E402


def _names(n: int, seed: int, tlds=("com", "net", "org", "de")) -> list[str]:
    rng = random.Random(seed)
    return [f"{''.join(rng.choices('abcdefghijklmnop', k=rng.randint(5, 10)))}.{rng.choice(tlds)}" for _ in range(n)]


@pytest.fixture(scope="module")
def rows():
    return char_tasks.build_rows([("free", _names(700, 1)), ("disposable", _names(700, 2))], seen=set())


def test_split_is_deterministic_and_disjoint(rows):
    train, val, test = char_tasks.split(rows, seed=0)
    again = char_tasks.split(rows, seed=0)
    assert (train, val, test) == again
    texts = [{e.text for e in part} for part in (train, val, test)]
    assert all(len(t) == len(p) for t, p in zip(texts, (train, val, test)))  # no name twice in a set
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    assert texts[0] | texts[1] | texts[2] == {d for d, _ in rows}
    n = len(rows)
    assert abs(len(test) - char_tasks.TEST_FRACTION * n) < 0.06 * n
    assert abs(len(val) - char_tasks.VALIDATION_FRACTION * n) < 0.06 * n


def test_few_labels_sample_only_the_training_split(rows):
    full, val, test = char_tasks.split(rows, seed=0)
    samples = {}
    for seed in (0, 1, 2):
        train, v, t = char_tasks.split(rows, seed=seed, train_size=100)
        assert (v, t) == (val, test)  # validation and test never move
        assert len(train) == 100 and {e.text for e in train} <= {e.text for e in full}
        assert train == char_tasks.split(rows, seed=seed, train_size=100)[0]
        samples[seed] = [e.text for e in train]
    assert samples[0] != samples[1] != samples[2]
    assert char_tasks.split(rows, seed=5, train_size=None)[0] == full == char_tasks.split(rows, 7, 10**6)[0]


def test_split_is_what_mlmkit_finetune_makes_of_the_csv(rows, tmp_path):
    """char_downstream.py fine-tunes on the CSV; finetune reads it and splits it with these calls."""
    path = char_tasks.write_csv(rows, tmp_path / "task.csv")
    examples = load_examples([str(path)], "domain", "label", log=lambda s: None)
    assert [(e.text, e.label) for e in examples] == rows
    for seed, size in ((0, None), (1, 150), (2, 40)):
        train, val, test = split_examples(examples, char_tasks.VALIDATION_FRACTION, char_tasks.TEST_FRACTION)
        assert (subsample(train, size, seed), val, test) == char_tasks.split(rows, seed, size)


def test_char_downstream_passes_the_same_fractions():
    src = (Path(__file__).resolve().parents[2] / "bench" / "char_downstream.py").read_text(encoding="utf-8")
    assert "validation_fraction=char_tasks.VALIDATION_FRACTION" in src
    assert "test_fraction=char_tasks.TEST_FRACTION" in src
    assert "max_train_samples=args.train_size" in src


def test_names_seen_in_pretraining_are_dropped():
    seen = {"gmail", "tempmail.co"}  # holdout keys: the name without its TLD
    rows = char_tasks.build_rows([("free", ["gmail.com", "GMail.de.", "mail.ru", "tempmail.co.uk"]),
                                  ("disposable", ["gmail.net", "10minutemail.com"])], seen)
    assert rows == [("10minutemail.com", "disposable"), ("mail.ru", "free")]


def test_one_name_per_key_and_conflicts_dropped():
    rows = char_tasks.build_rows([("free", ["yahoo.com", "yahoo.fr", "both.com", "bad_name!.com", "ok.org"]),
                                  ("disposable", ["both.net", "trash.com", "trash.org"])], set())
    assert rows == [("ok.org", "free"), ("trash.com", "disposable"), ("yahoo.com", "free")]


def test_balance_cuts_every_class_to_the_smallest_independently_of_order():
    a, b = _names(300, 3, tlds=("edu",)), _names(80, 4, tlds=("com",))
    full = char_tasks.build_rows([("academic", a), ("free", b)], set())
    rows = char_tasks.build_rows([("academic", a), ("free", b)], set(), balance=True)
    before = {l: sum(1 for _, x in full if x == l) for l in ("academic", "free")}
    after = {l: sum(1 for _, x in rows if x == l) for l in ("academic", "free")}
    assert before["academic"] > before["free"] > 50
    assert after["academic"] == after["free"] == before["free"]
    assert set(rows) <= set(full) and [r for r in full if r[1] == "free"] == [r for r in rows if r[1] == "free"]
    shuffled = char_tasks.build_rows([("academic", a[::-1]), ("free", b[::-1])], set(), balance=True)
    assert shuffled == rows


def test_tasks_are_pinned_sources():
    for task in char_tasks.TASKS.values():
        assert len(task.classes) == 2
        for _, name in task.classes:
            src = char_sources.source(name)
            assert src.version and src.licence
            assert src.registry in ("pypi", "npm")
            if src.registry == "npm":
                assert src.integrity and src.integrity.startswith("sha512-")
            assert "UNKNOWN" not in src.licence  # downstream data must have a known, permissive licence
    train = {s.name for s in char_sources.TRAIN_SOURCES}
    assert not any(name in train for t in char_tasks.TASKS.values() for _, name in t.classes)


def test_swot_reader(tmp_path):
    root = tmp_path / "domains"
    for rel, text in {"edu/stanford.txt": "Stanford University", "uk/ac/strath.txt": "Strathclyde",
                      "ac/id/fake.txt": "x", "edu/abused.txt": "x", "cn/edu/cqut/2011.txt": "x",
                      "de/zi-mannheim": "no .txt: not an institution file"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    (root / "stoplist.txt").write_text("id.ac\n2011.cqut.edu.cn\n", encoding="utf-8")
    (root / "abused.txt").write_text("abused.edu\n", encoding="utf-8")
    (root / "tlds.txt").write_text("ac.uk\nedu\n", encoding="utf-8")
    assert sorted(char_sources._swot_domains(root)) == ["stanford.edu", "strath.ac.uk"]


def test_npm_integrity_check(tmp_path):
    f = tmp_path / "pkg.tgz"
    f.write_bytes(b"some tarball")
    good = "sha512-" + base64.b64encode(hashlib.sha512(b"some tarball").digest()).decode()
    char_sources._check_integrity(f, good)
    with pytest.raises(SystemExit, match="refusing"):
        char_sources._check_integrity(f, "sha512-" + base64.b64encode(hashlib.sha512(b"other").digest()).decode())
