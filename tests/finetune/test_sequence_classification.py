"""`mlmkit finetune`: labelled data in every supported layout, a hash split, metrics, and a saved
classifier that transformers' pipeline("text-classification") loads with the label names."""

import csv
import json
import random

import pytest
import torch

from mlmkit.errors import DataError, MlmkitError
from mlmkit.finetune import (Example, FinetuneConfig, classification_metrics, finetune, load_examples,
                             split_examples)
from mlmkit.finetune.splits import subsample

TOPICS = {
    "sport": "goal match team player season coach league score cup win".split(),
    "tech": "computer software chip internet phone data code network digital device".split(),
}
FILLER = "the a of and to in it said on with for was".split()


def _texts(n, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "sport" if i % 2 else "tech"
        words = rng.choices(TOPICS[label], k=3) + rng.choices(FILLER, k=6)
        rng.shuffle(words)
        rows.append((" ".join(words) + f" {i}", label))
    return rows


@pytest.fixture()
def model_dir(tiny_model_dir):
    return tiny_model_dir


def test_finetune_learns_and_saves_a_pipeline_ready_classifier(tmp_path, model_dir):
    from transformers import pipeline

    data = tmp_path / "train.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "body", "topic"])
        for i, (text, label) in enumerate(_texts(240)):
            w.writerow([i, text, label])
    out = tmp_path / "clf"
    cfg = FinetuneConfig(text_column="body", label_column="topic", epochs=4, batch_size=16, lr=2e-3,
                         max_length=24, test_fraction=0.2, progress=False, patience=None, threads=1)
    threads = torch.get_num_threads()
    result = finetune(str(model_dir), [str(data)], out, cfg, log=lambda s: None)
    assert torch.get_num_threads() == threads  # restored
    assert result.labels == ["sport", "tech"]
    assert result.validation["accuracy"] > 0.85 and result.test["accuracy"] > 0.85
    assert 0 < result.test["macro_f1"] <= 1
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test"]["accuracy"] == result.test["accuracy"]
    assert "| test |" in (out / "README.md").read_text()
    clf = pipeline("text-classification", model=str(out))
    pred = clf("the coach said the team will win the cup" * 10, truncation=True)[0]  # long input is cut
    assert pred["label"] in {"sport", "tech"}  # names, not LABEL_0
    assert clf("goal match team player season coach league")[0]["label"] == "sport"


def test_from_scratch_reinitialises_but_keeps_shapes(tmp_path, model_dir):
    from mlmkit.token_mlm.classify import load_classifier as _load_classifier

    pre = _load_classifier(str(model_dir), ["a", "b"], from_scratch=False, seed=0)
    scratch = _load_classifier(str(model_dir), ["a", "b"], from_scratch=True, seed=0)
    w_pre = pre.bert.embeddings.word_embeddings.weight
    w_scr = scratch.bert.embeddings.word_embeddings.weight
    assert w_pre.shape == w_scr.shape and not torch.equal(w_pre, w_scr)
    from transformers import AutoModelForMaskedLM

    original = AutoModelForMaskedLM.from_pretrained(model_dir).bert.embeddings.word_embeddings.weight
    assert torch.equal(w_pre, original)


def test_label_folder_layout_with_a_latin1_file(tmp_path):
    root = tmp_path / "news"
    for label in ("business", "tech"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            (root / label / f"{i:03d}.txt").write_text(f"{label} story {i}\nsecond line")
    (root / "tech" / "003.txt").write_bytes("caf\xe9 prices \x93rise\x94".encode("latin-1"))
    (root / "tech" / "004.txt").write_text("   \n")  # empty: skipped
    logs = []
    examples = load_examples([str(root)], log=logs.append)
    assert len(examples) == 7
    assert Example("café prices \u201crise\u201d", "tech") in examples  # Windows-1252 quotes decoded
    assert Example("business story 0\nsecond line", "business") in examples  # one document per file
    assert "1 not UTF-8" in logs[0] and "1 empty skipped" in logs[0]


def test_jsonl_with_numeric_labels_and_a_missing_label(tmp_path):
    f = tmp_path / "d.jsonl"
    rows = [{"text": "good film", "label": 1}, {"text": "bad film", "label": 0}, {"text": "no label here"},
            {"text": "great", "label": 1}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    logs = []
    examples = load_examples([str(f)], log=logs.append)
    assert [(e.text, e.label) for e in examples] == [("good film", "1"), ("bad film", "0"), ("great", "1")]
    assert "1 without a label skipped" in logs[0]


def test_data_errors_are_one_line(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("text,topic\nhello,a\nworld,b\n")
    with pytest.raises(DataError, match="no column 'label'; available columns: 'text', 'topic'"):
        load_examples([str(f)], log=lambda s: None)
    g = tmp_path / "one.csv"
    g.write_text("text,label\nhello,a\nworld,a\n")
    with pytest.raises(MlmkitError, match="at least two distinct labels"):
        load_examples([str(g)], log=lambda s: None)
    with pytest.raises(MlmkitError, match="classification"):
        FinetuneConfig(task="ner")


def test_hash_split_is_deterministic_disjoint_and_sized():
    examples = [Example(t, l) for t, l in _texts(2000)]
    train, val, test = split_examples(examples, 0.1, 0.2)
    again = split_examples(list(reversed(examples)), 0.1, 0.2)
    assert {e.text for e in val} == {e.text for e in again[1]}  # order does not matter
    assert len(train) + len(val) + len(test) == 2000
    assert not ({e.text for e in train} & {e.text for e in test})
    assert 150 < len(val) < 250 and 330 < len(test) < 470


def test_max_train_samples_shrinks_only_the_training_split(tmp_path, model_dir):
    examples = [Example(t, l) for t, l in _texts(400)]
    picked = subsample(examples, 50, seed=3)
    assert len(picked) == 50 and picked == subsample(examples, 50, seed=3)
    assert picked != subsample(examples, 50, seed=4) and subsample(examples, None, 0) == examples
    assert [examples.index(e) for e in picked] == sorted(examples.index(e) for e in picked)  # order kept
    path = tmp_path / "d.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *_texts(400)])
    cfg = dict(epochs=1, batch_size=16, lr=1e-3, test_fraction=0.2, threads=1, progress=False)
    whole = finetune(model_dir, [str(path)], tmp_path / "whole", FinetuneConfig(**cfg), log=lambda s: None)
    few = finetune(model_dir, [str(path)], tmp_path / "few", FinetuneConfig(max_train_samples=32, **cfg),
                   log=lambda s: None)
    assert few.sizes["train"] == 32 and whole.sizes["train"] > 200
    assert few.sizes["validation"] == whole.sizes["validation"] and few.sizes["test"] == whole.sizes["test"]
    with pytest.raises(MlmkitError, match="max_train_samples"):
        FinetuneConfig(max_train_samples=0)


def test_classification_metrics():
    m = classification_metrics([0, 0, 1, 1, 2, 2], [0, 0, 1, 0, 2, 1], 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # per-class F1: class 0: 2tp,1fp,0fn = 0.8; class 1: 1tp,1fp,1fn = 0.5; class 2: 1tp,0fp,1fn = 2/3
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_character_model_classifier(tmp_path):
    from mlmkit.char_mlm.config import CharDataConfig, CharMaskingConfig, CharModelConfig
    from mlmkit.char_mlm.task import CharMLMTask
    from mlmkit.char_mlm.classify import classify_domains, load_char_classifier

    rng = random.Random(0)
    names = [f"{rng.choice(['mail', 'post', 'inbox'])}{i}.com" for i in range(150)] + \
            [f"{rng.choice(['shop', 'store', 'buy'])}{i}.net" for i in range(150)]
    corpus = tmp_path / "names.txt"
    corpus.write_text("\n".join(names) + "\n")
    torch.manual_seed(0)
    task = CharMLMTask(CharDataConfig(train=[str(corpus)], max_eval_samples=8),
                       CharModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
                       CharMaskingConfig(), batch_size=8)
    task.save_pretrained(task.model, tmp_path / "char")
    data = tmp_path / "labelled.csv"
    data.write_text("domain,label\n" + "".join(f"{n},{'mail' if n.endswith('.com') else 'shop'}\n" for n in names))
    cfg = FinetuneConfig(text_column="domain", epochs=3, batch_size=16, lr=3e-3, progress=False, threads=1,
                         patience=None)
    result = finetune(str(tmp_path / "char"), [str(data)], tmp_path / "clf", cfg, log=lambda s: None)
    assert result.validation["accuracy"] > 0.85
    model, alphabet, labels = load_char_classifier(tmp_path / "clf")
    assert labels == ["mail", "shop"]
    (label, p), = classify_domains(tmp_path / "clf", ["INBOX77.COM."])  # normalised like training data
    assert label == "mail" and 0.5 < p <= 1
    assert "library_name: mlmkit" in (tmp_path / "clf" / "README.md").read_text()


def test_time_budget_stops_and_still_saves_a_model(tmp_path, model_dir):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in _texts(60)))
    cfg = FinetuneConfig(max_minutes=1e-9, progress=False, threads=1)
    result = finetune(str(model_dir), [str(data)], tmp_path / "clf", cfg, log=lambda s: None)
    assert result.stopped == "time budget reached" and result.steps == 0
    assert (tmp_path / "clf" / "model.safetensors").is_file() and 0 <= result.validation["accuracy"] <= 1
