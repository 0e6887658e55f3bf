"""An exported character model loads and fills patterns without mlmkit: transformers'
`AutoModel.from_pretrained(folder, trust_remote_code=True)` builds it from the code in the folder,
in a subprocess whose sys.path holds no mlmkit, and gives mlmkit's own candidates and scores."""

import json
import os
import re
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
from mlmkit.errors import MlmkitError
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


def test_auto_rescore_reranks_a_cloze_models_fills_and_no_other(tmp_path, monkeypatch):
    """`rescore="auto"`, the default of predict and of an export's `fill`: R = 4 for a cloze
    encoder (one more pass a candidate), off for a bidirectional one (a pass a character); None
    (`--rescore off`) never re-ranks."""
    import mlmkit.char_mlm.portable as portable
    from mlmkit.char_mlm.predict import predict_patterns

    radii, real = [], portable._rescored
    monkeypatch.setattr(portable, "_rescored", lambda m, c, res, holes, radius, *a: radii.append(radius) or
                        real(m, c, res, holes, radius, *a))
    small = {"ngram_buckets": 64, "head_ngram_buckets": 64}
    (tmp_path / "c").mkdir(), (tmp_path / "s").mkdir()
    cloze, scratch = _model(tmp_path / "c", arch="cloze", **small), _model(tmp_path / "s", **small)
    for run, rescore, want in [(cloze, "auto", [4]), (scratch, "auto", []), (cloze, None, []), (cloze, 2, [2])]:
        radii.clear()
        assert predict_patterns(str(run), ["goo[3].com"], rescore=rescore)[0]["fills"]
        assert radii == want, (run, rescore)
    radii.clear()
    predict_patterns(str(cloze), ["goo[3].com"])
    assert radii == [4]


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
    base = dict(predict_pattern(bundle, "mail[2].com", k=16, beam=16, rescore=None))
    for name, score in rescored:  # the hole is characters 4-5: the window is 3..6
        assert score == pytest.approx(base[name] + 0.5 * sum(one(name, q) for q in range(3, 7)), abs=1e-4)
    assert len(rescored) == 8 and [s for _, s in rescored] == sorted((s for _, s in rescored), reverse=True)


BAD_PATTERNS = {  # pattern -> what its error line says
    "goo gle[?].com": "' ' cannot be in a domain name",  # every filling has the space: nothing was printed
    "a\U0001F600[2].com": "'\U0001F600' cannot be in a domain name",  # an emoji, the same
    "goo[3]com": "has no TLD",  # the hole hides the name's last dot
    "goo..[2].com": "empty label",
    "-goo[2].com": "a label starts or ends with '-'",
    "goo[2]-.com": "a label starts or ends with '-'",
    "goo[2].c": "its TLD 'c' is never a TLD",
    "goo[2].12": "its TLD '12' is never a TLD",
    "x" * 64 + "[1].com": "the model takes at most 32",
    "google.com": "has no hole",
}


def test_a_bad_pattern_gets_its_own_error_and_the_others_are_still_filled(tmp_path):
    from mlmkit.char_mlm.model import load_char_model
    from mlmkit.char_mlm.predict import predict_pattern, predict_patterns

    bundle = load_char_model(_model(tmp_path, ngram_buckets=64, head_ngram_buckets=64) / "model")
    good = ["goo[3].com", "mail[?].net", "[2]-shop.[2]", "é[2].com"]  # é: a letter, though not in the alphabet
    patterns = [p for pair in zip(good * 3, list(BAD_PATTERNS) + ["GOO[3].COM"] * 2) for p in pair]
    results = predict_patterns(bundle, patterns, top_k=4)
    assert [r["input"] for r in results] == patterns
    for r in results:
        if r["input"] in BAD_PATTERNS:
            assert set(r) == {"input", "error"} and BAD_PATTERNS[r["input"]] in r["error"], r
            assert "\n" not in r["error"] and r["error"].startswith("pattern ")
            with pytest.raises(MlmkitError, match=re.escape(r["error"])):  # one pattern alone: the same error
                predict_pattern(bundle, r["input"], k=4)
        else:  # filled together as each is alone
            alone = predict_pattern(bundle, r["input"], k=4)
            assert [f["text"] for f in r["fills"]] == [n for n, _ in alone] and alone, r
            assert [f["score"] for f in r["fills"]] == pytest.approx([s for _, s in alone], abs=1e-5)
    assert sum("error" in r for r in results) == len(BAD_PATTERNS)


def test_predict_prints_every_input_and_exits_2_when_one_failed(tmp_path, capsys, monkeypatch):
    from cli_runner import run_cli

    model = str(_model(tmp_path) / "model")
    (tmp_path / "p.txt").write_text("goo[3].com\ngoo gle[?].com\nmail[2].net\ngoo[3]com\n")
    code, out, err = run_cli(["predict", model, "--file", str(tmp_path / "p.txt"), "--json", "-k", "2"],
                             capsys, monkeypatch)
    lines = [json.loads(l) for l in out.splitlines()]
    assert [l["input"] for l in lines] == ["goo[3].com", "goo gle[?].com", "mail[2].net", "goo[3]com"]
    assert [sorted(l) for l in lines] == [["fills", "input"], ["error", "input"]] * 2
    assert "' ' cannot be in a domain name" in lines[1]["error"] and "has no TLD" in lines[3]["error"]
    assert code == 2 and err.strip() == "error: 2 of 4 inputs could not be filled (see their error lines)"
    code, out, err = run_cli(["predict", model, "goo gle[?].com", "goo[3].com"], capsys, monkeypatch)
    assert code == 2 and "1 of 2 inputs could not be filled" in err
    assert out.splitlines()[:2] == ["goo gle[?].com", "  error: pattern 'goo gle[?].com': ' ' cannot be in a domain "
                                    "name (letters, digits, '-' and '.')"]
    assert out.splitlines()[2] == "goo[3].com" and len(out.splitlines()) > 3  # its fills follow


def test_a_literal_label_over_63_characters_is_refused_but_a_hole_may_split_one():
    from types import SimpleNamespace

    from mlmkit.char_mlm.predict import check_pattern

    bundle = SimpleNamespace(masking=SimpleNamespace(max_span=8), data=SimpleNamespace(max_length=200))
    with pytest.raises(MlmkitError, match="a label is longer than 63 characters"):
        check_pattern(bundle, "x" * 64 + ".[2].com")
    check_pattern(bundle, "x" * 40 + "[3]" + "y" * 40 + ".com")  # the hole may be filled with a '.'
