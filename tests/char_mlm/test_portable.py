"""An exported character model loads and fills patterns without mlmkit: transformers'
`AutoModel.from_pretrained(folder, trust_remote_code=True)` builds it from the code in the folder,
in a subprocess whose sys.path holds no mlmkit, and gives mlmkit's own candidates and scores."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from mlmkit.char_mlm.config import CharDataConfig, CharMaskingConfig, CharModelConfig
from mlmkit.char_mlm.export import PORTABLE_FILES
from mlmkit.char_mlm.portable import plausible_name
from mlmkit.char_mlm.predict import char_predict
from mlmkit.char_mlm.task import CharMLMTask
from mlmkit.export import export

PATTERNS = ["goo[3].com", "mail[?].net", "[2]-shop.[2]"]

CHILD = textwrap.dedent("""
    import importlib.util, json, os, sys
    sys.path[:] = [p for p in sys.path if p and not os.path.isdir(os.path.join(p, "mlmkit"))]
    assert importlib.util.find_spec("mlmkit") is None, "mlmkit is importable"
    from transformers import AutoModel, AutoModelForMaskedLM
    folder, patterns = sys.argv[1], json.loads(sys.argv[2])
    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    assert type(AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True)) is type(model)
    assert "mlmkit" not in sys.modules and not any(m.startswith("mlmkit.") for m in sys.modules)
    print(json.dumps({"class": type(model).__name__,
                      "fills": [model.fill(p, top_k=4) for p in patterns],
                      "rescored": [model.fill(p, top_k=4, rescore=2) for p in patterns]}))
""")


def _model(tmp_path, **model_kw):
    names = tmp_path / "domains.txt"
    names.write_text("".join(f"{w}{i}.com\n" for i in range(40) for w in ("mail", "shop", "box")))
    torch.manual_seed(0)
    task = CharMLMTask(CharDataConfig(train=[str(names)], max_eval_samples=8, max_length=32),
                       CharModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, **model_kw),
                       CharMaskingConfig(), batch_size=8)
    run = tmp_path / "run"
    task.save_pretrained(task.model, run / "model")
    return run


@pytest.mark.parametrize("model_kw", [
    {"ngram_buckets": 64, "head_ngram_buckets": 64, "head_ngram_dense": 1.0},  # the domains-tiny shape
    {"arch": "canine"},
    {"arch": "cloze", "ngram_buckets": 64, "head_ngram_buckets": 64, "head_ngram_counts": True, "head_ngram_joint": 2,
     "head_ngram_count_buckets": 256},
], ids=["scratch-ngram", "canine", "cloze"])
def test_exported_model_fills_patterns_without_mlmkit(tmp_path, model_kw):
    run = _model(tmp_path, **model_kw)
    out = tmp_path / "export"
    export(run, out, log=lambda s: None)
    assert json.loads((out / "config.json").read_text())["auto_map"]["AutoModel"] == "portable.MlmkitCharForMaskedLM"
    assert all((out / f).is_file() for f in PORTABLE_FILES)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    child = subprocess.run([sys.executable, "-c", CHILD, str(out), json.dumps(PATTERNS)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    got = json.loads(child.stdout.strip().splitlines()[-1])
    assert got["class"] == "MlmkitCharForMaskedLM"
    for pattern, fills, rescored in zip(PATTERNS, got["fills"], got["rescored"]):
        want = char_predict(out, pattern, k=4)  # mlmkit, on the same folder
        assert [n for n, _ in fills] == [n for n, _ in want] and len(want) == 4
        assert [s for _, s in fills] == pytest.approx([s for _, s in want], abs=1e-5)
        want = char_predict(out, pattern, k=4, rescore=2)
        assert [n for n, _ in rescored] == [n for n, _ in want]
        assert [s for _, s in rescored] == pytest.approx([s for _, s in want], abs=1e-4)
    assert "trust_remote_code=True" in (out / "README.md").read_text()


def test_plausible_names():
    assert plausible_name("mail-box.co.uk") and plausible_name("localhost")
    for bad in ("-mail.com", "mail-.com", "mail..com", "mail.c", "mail.123", ".com"):
        assert not plausible_name(bad), bad


def test_many_patterns_filled_together_give_what_each_gets_alone(tmp_path):
    from mlmkit.char_mlm.model import load_char_model
    from mlmkit.char_mlm.predict import predict_pattern, predict_patterns

    bundle = load_char_model(_model(tmp_path, ngram_buckets=64, head_ngram_buckets=64) / "model")
    patterns = ["goo[3].com", "m[1]il.net", "[2]-shop.[2]", "mail[?].com", "ab[MASK]d.org", "x[3]y.co.uk",
                "temp[2].io", "goo[3].com"] * 5
    together = predict_patterns(bundle, patterns, top_k=4)
    assert len(together) == len(patterns)
    for pattern, got in zip(patterns, together):
        alone = predict_pattern(bundle, pattern, k=4)
        assert got["input"] == pattern and [f["text"] for f in got["fills"]] == [n for n, _ in alone]
        assert [f["score"] for f in got["fills"]] == pytest.approx([s for _, s in alone], abs=1e-5)


def test_predict_reads_patterns_from_arguments_a_file_and_stdin(tmp_path, capsys, monkeypatch):
    import io

    from cli_runner import run_cli

    model = str(_model(tmp_path) / "model")
    (tmp_path / "p.txt").write_text("goo[3].com\n\nmail[2].net\n")
    code, out, err = run_cli(["predict", model, "ab[1].org", "--file", str(tmp_path / "p.txt"), "--json"],
                             capsys, monkeypatch)
    assert code == 0, err
    assert [json.loads(l)["input"] for l in out.splitlines()] == ["ab[1].org", "goo[3].com", "mail[2].net"]
    monkeypatch.setattr("sys.stdin", io.StringIO("x[2].com\n"))
    code, out, err = run_cli(["predict", model, "--file", "-", "--json"], capsys, monkeypatch)
    assert code == 0 and json.loads(out)["input"] == "x[2].com", err
    code, out, err = run_cli(["predict", model], capsys, monkeypatch)
    assert code == 2 and "nothing to fill" in err
    # --rescore: the batched fills re-ranked as predict_pattern re-ranks one pattern
    from mlmkit.char_mlm.model import load_char_model
    from mlmkit.char_mlm.predict import predict_pattern

    code, out, err = run_cli(["predict", model, "goo[3].com", "mail[2].net", "--rescore", "2", "--json"],
                             capsys, monkeypatch)
    bundle = load_char_model(model)
    for line, pattern in zip(out.splitlines(), ["goo[3].com", "mail[2].net"]):
        want = predict_pattern(bundle, pattern, k=5, rescore=2)
        assert [f["text"] for f in json.loads(line)["fills"]] == [n for n, _ in want], pattern
    assert code == 0 and want != predict_pattern(bundle, pattern, k=5)


@pytest.mark.parametrize("model_kw", [{"ngram_buckets": 64, "head_ngram_buckets": 64},
                                      {"arch": "cloze", "ngram_buckets": 64, "head_ngram_buckets": 64}],
                         ids=["scratch", "cloze"])
def test_rescoring_adds_each_candidates_pseudo_log_likelihood_around_its_hole(tmp_path, model_kw):
    """`rescore=R`: a candidate's score is its beam score plus the summed log-probabilities of
    each character from R left of the hole to R right of it, each read with only itself hidden
    (computed here one name and one character at a time)."""
    from mlmkit.char_mlm.model import load_char_model
    from mlmkit.char_mlm.portable import _encode, pseudo_log_likelihood
    from mlmkit.char_mlm.predict import predict_pattern

    bundle = load_char_model(_model(tmp_path, **model_kw) / "model")
    chars = "".join(bundle.alphabet.chars)
    model = bundle.model.eval()

    def one(name: str, q: int) -> float:
        cps, idx, att, spans = _encode([name], [[j == q for j in range(len(name))]], chars)
        gold = torch.tensor([[bundle.alphabet.index[name[q]]]])
        with torch.no_grad():
            logits = model.head(model.encode(cps, idx, att), spans, gold, input_idx=idx)
        return float(logits[0, 0].log_softmax(-1)[gold[0, 0]])

    names, where = ["mail7.com", "box12.net", "shop3.com"], [[0, 1], [3, 4, 5, 6], [8]]
    got = pseudo_log_likelihood(model, chars, names, where, batch_size=3)  # rows of several names per batch
    assert got == pytest.approx([sum(one(n, q) for q in qs) for n, qs in zip(names, where)], abs=1e-5)
    rescored = predict_pattern(bundle, "mail[2].com", k=8, beam=16, rescore=1, rescore_weight=0.5)
    base = dict(predict_pattern(bundle, "mail[2].com", k=16, beam=16))
    for name, score in rescored:  # the hole is characters 4-5: the window is 3..6
        assert score == pytest.approx(base[name] + 0.5 * sum(one(name, q) for q in range(3, 7)), abs=1e-4)
    assert len(rescored) == 8 and [s for _, s in rescored] == sorted((s for _, s in rescored), reverse=True)
