"""The command line end to end: errors are one line with a non-zero exit; a tiny run trains,
predicts, and its folder works in transformers' pipeline("fill-mask")."""

import json
from pathlib import Path
import subprocess
import sys

import pytest

from cli_runner import run_cli


def _one_line_error(code, err, *needles):
    assert code != 0
    lines = [l for l in err.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture()
def tiny_args(tmp_path):
    return ["--set", "model.size=tiny", "--set", "tokenizer.vocab_size=500", "--set", "train.progress=false",
            "--set", "train.eval_every=5", "--output", str(tmp_path / "run")]


def test_missing_file(capsys, monkeypatch, tmp_path, tiny_args):
    code, _, err = run_cli(["train", "--preset", "scratch-tiny", "--data", str(tmp_path / "nope.txt"), *tiny_args],
                           capsys, monkeypatch)
    _one_line_error(code, err, "nope.txt")


def test_empty_file(capsys, monkeypatch, tmp_path, tiny_args):
    f = tmp_path / "empty.txt"
    f.write_text("")
    code, _, err = run_cli(["train", "--preset", "scratch-tiny", "--data", str(f), *tiny_args], capsys, monkeypatch)
    _one_line_error(code, err, "empty.txt")


def test_non_utf8_names_file_and_line(capsys, monkeypatch, tmp_path, tiny_args):
    f = tmp_path / "latin1.txt"
    f.write_bytes(b"good line\nanother good line\ncaf\xe9 au lait\n")
    code, _, err = run_cli(["train", "--preset", "scratch-tiny", "--data", str(f), *tiny_args], capsys, monkeypatch)
    _one_line_error(code, err, "latin1.txt:3")


def test_unknown_preset(capsys, monkeypatch):
    code, _, err = run_cli(["train", "--preset", "nope"], capsys, monkeypatch)
    _one_line_error(code, err, "unknown preset 'nope'")


def test_unknown_config_key(capsys, monkeypatch, tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  learning_rate: 0.1\n")
    code, _, err = run_cli(["train", "--config", str(f)], capsys, monkeypatch)
    _one_line_error(code, err, "optim.learning_rate")


def test_tokenizer_without_mask_token(capsys, monkeypatch, tmp_path, tiny_tokenizer, english_texts):
    from transformers import AutoTokenizer

    tok_dir = tmp_path / "tok"
    tiny_tokenizer.save_pretrained(tok_dir)
    cfg = json.loads((tok_dir / "tokenizer_config.json").read_text())
    cfg.pop("mask_token", None)
    (tok_dir / "tokenizer_config.json").write_text(json.dumps(cfg))
    assert AutoTokenizer.from_pretrained(tok_dir).mask_token is None
    data = tmp_path / "d.txt"
    data.write_text("\n".join(english_texts[:50]))
    code, _, err = run_cli(["train", "--preset", "scratch-tiny", "--data", str(data), "--set",
                            f"tokenizer.name_or_path={tok_dir}", "-o", str(tmp_path / "r")], capsys, monkeypatch)
    _one_line_error(code, err, "mask token")


def test_debug_shows_the_traceback():
    r = subprocess.run([sys.executable, "-m", "mlmkit", "--debug", "train", "--preset", "nope"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_train_predict_and_pipeline_agree(capsys, monkeypatch, tmp_path, tiny_args, english_texts):
    from transformers import pipeline

    data = tmp_path / "corpus.txt"
    data.write_text("\n".join(english_texts[:1500]))
    code, out, err = run_cli(["train", "--preset", "scratch-tiny", "--data", str(data), "--max-steps", "10",
                              *tiny_args], capsys, monkeypatch)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["step"] == 10 and summary["eval_perplexity"] > 1
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file() and (run / "metrics.jsonl").is_file()
    text = "and god said, let there be [MASK]."
    code, out, err = run_cli(["predict", str(run), text, "--json", "-k", "5"], capsys, monkeypatch)
    assert code == 0, err
    ours = json.loads(out)["masks"][0]
    fill = pipeline("fill-mask", model=str(run / "model"), top_k=5)
    ref = fill(text)
    assert [f["token_id"] for f in ours] == [r["token"] for r in ref]
    for a, b in zip(ours, ref):
        assert abs(a["score"] - b["score"]) < 1e-5
    code, out, err = run_cli(["predict", str(run), text, "--rescore", "2"], capsys, monkeypatch)
    assert code == 2 and "--rescore re-ranks the fills of character models" in err
    code, out, err = run_cli(["eval", str(run), "--data", str(data), "--max-samples", "200"], capsys, monkeypatch)
    assert code == 0, err
    result = json.loads(out)
    assert 0 <= result["eval_accuracy"] <= 1 and result["eval_perplexity"] > 1


def test_the_same_command_twice_gives_the_same_run(capsys, monkeypatch, tmp_path, english_texts):
    """`prepare`, then the same `train` command into two run folders: one tokenizer (trained
    once, found again by the fingerprint of its data and settings), one prepared data set, and
    the same losses bit for bit."""
    data = tmp_path / "corpus.txt"
    data.write_text("\n".join(english_texts[:1200]))
    cache = tmp_path / "cache"
    common = ["--preset", "scratch-tiny", "--data", str(data), "--set", "tokenizer.vocab_size=500",
              "--set", "train.progress=false", "--set", f"data.cache_dir={cache}"]
    code, out, err = run_cli(["prepare", *common, "-o", str(tmp_path / "a")], capsys, monkeypatch)
    assert code == 0 and "training a wordpiece tokenizer" in err, err
    losses = []
    for run in ("a", "b"):
        code, out, err = run_cli(["train", *common, "--max-steps", "3", "--set", "train.max_minutes=null",
                                  "--set", "train.log_every=1", "-o", str(tmp_path / run)], capsys, monkeypatch)
        assert code == 0, err
        assert "training a wordpiece tokenizer" not in err and "(cached)" in err
        losses.append([json.loads(l).get("loss") for l in open(tmp_path / run / "metrics.jsonl")])
    assert losses[0] == losses[1] and len(losses[0]) == 5
    assert len(list((cache / "tokenizers").iterdir())) == 1 and len(list((cache / "prepared").iterdir())) == 1


def test_run_folders_are_never_trained_over_and_resume_keeps_the_run(capsys, monkeypatch, tmp_path, tiny_args,
                                                                      english_texts):
    data = tmp_path / "corpus.txt"
    data.write_text("\n".join(english_texts[:800]))
    base = ["train", "--preset", "scratch-tiny", "--data", str(data), *tiny_args, "--set", "train.max_minutes=null",
            "--set", "train.save_every=2"]
    code, _, err = run_cli(base + ["--max-steps", "2"], capsys, monkeypatch)
    assert code == 0, err
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    code, _, err = run_cli(base + ["--max-steps", "2"], capsys, monkeypatch)  # the same folder again
    _one_line_error(code, err, "already holds a run", "--resume", "--overwrite")
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == metrics  # untouched
    # a resume may run longer, but not change what it learns
    code, _, err = run_cli(base + ["--max-steps", "4", "--resume", "--set", "optim.lr=0.5"], capsys, monkeypatch)
    _one_line_error(code, err, "--resume: the config differs from the run's in optim.lr (0.001 -> 0.5)")
    code, _, err = run_cli(["train", "-o", str(tmp_path / "run"), "--resume", "--max-steps", "4"], capsys, monkeypatch)
    assert code == 0 and "resumed from step-00000002" in err, err  # the run's own config, longer
    code, _, err = run_cli(base + ["--max-steps", "2", "--overwrite"], capsys, monkeypatch)
    assert code == 0, err
    assert max(json.loads(l)["step"] for l in open(tmp_path / "run" / "metrics.jsonl")) == 2
    code, _, err = run_cli(base + ["--max-steps", "2", "--resume", "-o", str(tmp_path / "typo")], capsys, monkeypatch)
    _one_line_error(code, err, "cannot resume", "no such run folder")
    assert not (tmp_path / "typo").exists()  # checked before anything is written


def _train_two_steps(preset, text, tmp_path, tiny_args, capsys, monkeypatch):
    """`mlmkit train --preset PRESET` for 2 steps on `text` written to a file; (code, out, err)."""
    data = tmp_path / "corpus.txt"
    data.write_text(text)
    return run_cli(["train", "--preset", preset, "--data", str(data), "--max-steps", "2",
                    "--set", "train.max_minutes=null", *tiny_args], capsys, monkeypatch)


def test_a_corpus_of_one_long_line_still_holds_out_data(capsys, monkeypatch, tmp_path, tiny_args, english_texts):
    code, out, err = _train_two_steps("scratch-tiny", " ".join(english_texts[:1500]) + "\n", tmp_path, tiny_args,
                                      capsys, monkeypatch)
    assert code == 0, err
    assert "the last" in err and "sequences are held out instead" in err
    assert json.loads(out)["eval_targets"] > 0


def test_a_missing_model_folder_is_named(capsys, monkeypatch, tmp_path):
    for cmd in (["predict", "./no/such/run", "a [MASK] b"], ["eval", "./no/such/run", "--data", "x.txt"]):
        code, _, err = run_cli(cmd, capsys, monkeypatch)
        _one_line_error(code, err, "no such model or tokenizer folder: ./no/such/run")


def test_version(capsys, monkeypatch):
    from mlmkit import __version__

    code, out, _ = run_cli(["--version"], capsys, monkeypatch)
    assert code == 0 and out.strip() == f"mlmkit {__version__}"


def test_a_character_checkpoint_is_a_model_folder_eval_and_predict_take(capsys, monkeypatch, tmp_path):
    run = tmp_path / "dom"
    code, _, err = run_cli(["train", "--preset", "domains-tiny", "-o", str(run), "--max-steps", "2",
                            "--set", "train.max_minutes=null", "--set", "train.save_every=1", "--set", "train.batch_size=16",
                            "--set", "model.ngram_buckets=64", "--set", "model.head_ngram_buckets=64",
                            "--set", "data.max_eval_samples=32", "--set", "train.eval_at_start=false",
                            "--set", "train.progress=false"], capsys, monkeypatch)
    assert code == 0, err
    ckpt = run / "checkpoints" / "step-00000001"
    code, out, err = run_cli(["eval", str(ckpt)], capsys, monkeypatch)
    assert code == 0 and json.loads(out)["eval_targets"] > 0, err
    code, out, err = run_cli(["predict", str(ckpt), "mai[2].com", "--json"], capsys, monkeypatch)
    assert code == 0 and len(json.loads(out)["fills"]) == 5, err


def test_shell_completion_completes_commands_and_options():
    import os
    import subprocess
    import sys

    def complete(words, cword):
        env = dict(os.environ, COMP_WORDS=words, COMP_CWORD=str(cword), _MLMKIT_COMPLETE="complete_bash")
        script = Path(sys.executable).parent / "mlmkit"  # the installed entry point: completion keys on its name
        return subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=120).stdout.split()
    assert complete("mlmkit ex", 1) == ["export"]
    assert complete("mlmkit export run out --pu", 4) == ["--push-to-hub"]


def test_the_modern_recipe_preset_trains_and_fills(capsys, monkeypatch, tmp_path, tiny_args, english_texts):
    code, out, err = _train_two_steps("scratch-modern", "\n".join(english_texts[:400]) + "\n", tmp_path, tiny_args,
                                      capsys, monkeypatch)
    assert code == 0, err
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(tmp_path / "run" / "model").model_type == "modernbert"
    code, out, err = run_cli(["predict", str(tmp_path / "run"), "the [MASK] said.", "--json"], capsys, monkeypatch)
    assert code == 0 and len(json.loads(out)["masks"][0]) == 5, err


def test_a_bad_config_number_is_one_line_before_any_work(capsys, monkeypatch, tmp_path):
    """`train.log_every=0` used to divide by zero after the data was prepared: now it is refused
    at load, before a tokenizer is trained, data prepared or a run folder made."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MLMKIT_CACHE", str(cache))
    run = tmp_path / "run"
    code, out, err = run_cli(["train", "--preset", "scratch-tiny", "--data", "mlmkit:samples/english.txt",
                              "-o", str(run), "--set", "train.log_every=0"], capsys, monkeypatch)
    _one_line_error(code, err, "train.log_every", "must be >= 1")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert not (run / "checkpoints").exists() and not cache.exists()


NO_MODEL = "./no/such/run"  # were a bound checked late, the error would be about this folder instead
BAD_OPTIONS = [
    (["predict", NO_MODEL, "a [MASK] b", "--top-k", "-3"], "--top-k must be in [1, 1000], got -3"),
    (["predict", NO_MODEL, "a [MASK] b", "-k", "0"], "--top-k must be in [1, 1000], got 0"),
    (["predict", NO_MODEL, "a [MASK] b", "-k", "5000"], "--top-k must be in [1, 1000], got 5000"),
    (["predict", NO_MODEL, "goo[3].com", "--rescore", "-1"], "--rescore must be >= 0, got -1"),
    (["eval", NO_MODEL, "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["eval", NO_MODEL, "--max-samples", "0"], "--max-samples must be >= 1, got 0"),
    (["eval", NO_MODEL, "--max-length", "-5"], "--max-length must be >= 1, got -5"),
    (["show", NO_MODEL, "-n", "0"], "--num must be >= 1, got 0"),
    (["show", NO_MODEL, "--seed", "-1"], "--seed must be in [0, 9223372036854775807], got -1"),
    (["show", NO_MODEL, "--rate", "1.5"], "--rate must be in (0, 1), got 1.5"),
    (["show", NO_MODEL, "--rate", "0"], "--rate must be in (0, 1), got 0.0"),
    (["show", NO_MODEL, "--max-tokens", "0"], "--max-tokens must be >= 1, got 0"),
    (["stats", "no-such.txt", "--sample", "0"], "--sample must be >= 1, got 0"),
    (["stats", "no-such.txt", "--vocab-sizes", "8000,abc"], "--vocab-sizes: 'abc' is not a vocabulary size"),
    (["stats", "no-such.txt", "--vocab-sizes", "8000,-5"], "--vocab-sizes: '-5' is not a vocabulary size"),
    (["stats", "no-such.txt", "--vocab-sizes", "50"], "--vocab-sizes: '50' is not a vocabulary size"),
    (["plot", NO_MODEL, "--dpi", "0"], "--dpi must be in [10, 600], got 0"),
    (["plot", NO_MODEL, "--dpi", "100000"], "--dpi must be in [10, 600], got 100000"),
    (["finetune", NO_MODEL, "-d", "x.csv", "--epochs", "0"], "--epochs must be > 0, got 0.0"),
    (["finetune", NO_MODEL, "-d", "x.csv", "--max-minutes", "-1"], "--max-minutes must be > 0, got -1.0"),
    (["finetune", NO_MODEL, "-d", "x.csv", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["finetune", NO_MODEL, "-d", "x.csv", "--lr", "-0.1"], "--lr must be > 0, got -0.1"),
    (["finetune", NO_MODEL, "-d", "x.csv", "--max-length", "0"], "--max-length must be >= 1, got 0"),
    (["finetune", NO_MODEL, "-d", "x.csv", "--validation-fraction", "1"],
     "--validation-fraction must be in (0, 1), got 1.0"),
    (["finetune", NO_MODEL, "-d", "x.csv", "--test-fraction", "-0.1"], "--test-fraction must be in [0, 1), got -0.1"),
    (["finetune", NO_MODEL, "-d", "x.csv", "--patience", "0"], "--patience must be >= 1, got 0"),
    (["finetune", NO_MODEL, "-d", "x.csv", "--eval-every", "0"], "--eval-every must be >= 1, got 0"),
    (["finetune", NO_MODEL, "-d", "x.csv", "--seed", "-1"], "--seed must be in [0, 9223372036854775807], got -1"),
    (["finetune", NO_MODEL, "-d", "x.csv", "--max-samples", "0"], "--max-samples must be >= 1, got 0"),
    (["finetune", NO_MODEL, "-d", "x.csv", "--max-train-samples", "0"], "--max-train-samples must be >= 1, got 0"),
    (["finetune", NO_MODEL, "-d", "x.csv", "--threads", "0"], "--threads must be >= 1, got 0"),
]


@pytest.mark.parametrize("args, message", BAD_OPTIONS, ids=[" ".join(a[3:] if a[0] == "finetune" else a[2:])
                                                             for a, _ in BAD_OPTIONS])
def test_a_bad_number_option_is_one_line_before_the_model_is_read(capsys, monkeypatch, args, message):
    code, out, err = run_cli(args, capsys, monkeypatch)
    _one_line_error(code, err, message)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("args, reason", [
    (["train", "--max-step", "3"], "No such option: --max-step"),
    (["trian"], "No such command 'trian'"),
    (["predict"], "Missing argument"),
    (["predict", "m", "x", "--top-k", "abc"], "Invalid value for '--top-k'"),
    (["train", "--seed", "one"], "Invalid value for '--seed'"),
])
def test_a_usage_error_prints_the_usage_line_and_exits_2(capsys, monkeypatch, args, reason):
    code, out, err = run_cli(args, capsys, monkeypatch)
    assert code == 2, err
    assert "Usage: mlmkit" in err and reason in err and "Traceback" not in err, err


def test_ctrl_c_outside_training_exits_130(capsys, monkeypatch):
    import mlmkit.config

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(mlmkit.config, "preset_names", interrupted)
    code, out, err = run_cli(["presets"], capsys, monkeypatch)
    assert code == 130 and "interrupted" in err
