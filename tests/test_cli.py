"""The command line end to end: errors are one line with a non-zero exit; a tiny run trains,
predicts, and its folder works in transformers' pipeline("fill-mask")."""

import json
import os
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
                            "--set", "model.head_ngram_count_buckets=1024", "--set", "data.max_eval_samples=32", "--set", "train.eval_at_start=false",
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
    # ModernBERT's own weight names start with "model.", the name of the submodule checkpoints
    # are saved under: a resume must still read them as that submodule's
    code, out, err = run_cli(["train", "-o", str(tmp_path / "run"), "--resume", "--max-steps", "3"], capsys, monkeypatch)
    assert code == 0 and "resumed from step-00000002" in err, err


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
    (["predict", NO_MODEL, "goo[3].com", "--rescore", "on"], "--rescore must be a number R >= 0, auto or off, got on"),
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
    # options that take one of a fixed set of values are choices: refused while parsing, named
    (["finetune", "m", "-d", "x.csv", "--task", "regression"],
     "Invalid value for '--task': Value error, 'regression' is not one of 'classification', 'token-classification'"),
    (["train", "--strategy", "dpp"], "Invalid value for '--strategy': Value error, 'dpp' is not one of 'auto', 'ddp'"),
    (["eval", "m", "--mode", "lines"], "Invalid value for '--mode'"),
    (["eval", "m", "--on-bad-record", "ignore"], "Invalid value for '--on-bad-record'"),
    (["config", "--family", "word"], "Invalid value for '--family'"),
])
def test_a_usage_error_prints_the_usage_line_and_exits_2(capsys, monkeypatch, args, reason):
    code, out, err = run_cli(args, capsys, monkeypatch)
    assert code == 2, err
    assert "Usage: mlmkit" in err and reason in err and "Traceback" not in err, err


def _commands():
    import typer.main

    from mlmkit.cli import app

    return typer.main.get_command(app)


def _misuse(rng, commands) -> list[str]:
    """A random command line that is wrong at parse time -- an unknown or misspelled option, a
    value of the wrong type, a bad choice, an option without its value, an extra or missing
    argument, an unknown command -- among valid options and random junk (never --help, --version
    or --: those would make a bad line a good one)."""
    import string
    import typing

    name = rng.choice(sorted(commands))
    if rng.random() < 0.08:  # an unknown or misspelled command
        return [name[:-1] + rng.choice("xyz"), *rng.sample(["a", "-d", "x.txt", "--seed", "1"], 2)]
    cmd = commands[name]
    options = [p for p in cmd.params if p.param_type_name == "option"]
    positionals = [p for p in cmd.params if p.param_type_name == "argument"]
    all_opts = {o for p in options for o in (*p.opts, *p.secondary_opts)}

    def value(p, good=True):
        ann = p.type_descriptor.annotation
        choices = typing.get_args(ann) if typing.get_origin(ann) is typing.Literal else ()
        if choices:
            return str(rng.choice(choices)) if good else rng.choice(["bogus", "", choices[0].upper() + "x"])
        if ann in (int, float):
            return rng.choice(["3", "0.5" if ann is float else "4"]) if good else rng.choice(
                ["abc", "1.2.3", "", "one", "--", "0x", "1,5"] + (["2.5"] if ann is int else []))
        return rng.choice(["x.txt", "runs/r", "a b", "é"])

    def unit(p, good=True):
        if getattr(p, "is_flag", False):
            return [rng.choice([*p.opts, *p.secondary_opts])]
        return [rng.choice(p.opts), value(p, good)]

    units = [unit(rng.choice(options)) for _ in range(rng.randint(0, 3)) if options]
    units += [[rng.choice(["model", "run", "out", "a [MASK] b", "x.txt"])] for _ in positionals if rng.random() < 0.7]
    junk = "".join(rng.choice(string.ascii_letters + string.digits + "._/[]é ") for _ in range(rng.randint(1, 8)))
    units += [[junk.strip() or "j"] for _ in range(rng.randint(0, 2))]
    typed = [p for p in options if not getattr(p, "is_flag", False)
             and (p.type_descriptor.annotation in (int, float) or typing.get_origin(p.type_descriptor.annotation)
                  is typing.Literal)]
    long_opts = [o for o in sorted(all_opts) if o.startswith("--")]
    valued = [p for p in options if not getattr(p, "is_flag", False)]
    kinds = ["unknown"] + (["misspelled"] if long_opts else []) + (["no value"] if valued else []) \
        + (["wrong type"] if typed else [])
    if not positionals:
        kinds.append("extra argument")
    if any(p.required for p in cmd.params):
        kinds.append("missing argument")
    kind = rng.choice(kinds)
    if kind == "missing argument":  # only options, none of them the required ones
        return [name, *[t for u in units if u[0].startswith("-") for t in u
                        if not any(p.required and u[0] in p.opts for p in cmd.params)]]
    if kind == "unknown":
        fault = ["--" + "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9)))]
    elif kind == "misspelled":
        real = rng.choice(long_opts)
        i = rng.randrange(3, len(real))
        fault = [rng.choice([real[:i] + real[i + 1:], real[:i] + real[i] * 2 + real[i + 1:],
                             real[:i] + "_" + real[i + 1:]])]
        if fault[0] in all_opts:
            fault = [real + "x"]
    elif kind == "wrong type":
        fault = unit(rng.choice(typed), good=False)
    elif kind == "extra argument":
        fault = [rng.choice(["extra", "1", "x.txt"])]
    else:  # an option that takes a value, last, without it
        return [name, *[t for u in units for t in u], rng.choice(rng.choice(valued).opts)]
    units.insert(rng.randint(0, len(units)), fault)
    return [name, *[t for u in units for t in u]]


def test_random_misuse_is_never_a_traceback_and_never_starts_work(capsys, monkeypatch, tmp_path):
    """200 seeded random misuses of every command: each is refused while the command line is
    parsed (exit code != 0), prints no traceback and no Python exception name, and leaves the
    working directory empty (nothing started: no run folder, no cache)."""
    import random
    import re

    rng = random.Random(20240611)
    commands = _commands().commands
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("MLMKIT_CACHE", str(cwd / "cache"))  # a started run would make it here
    # a traceback, a Python exception (ValueError, KeyError, ...) or one of click's own, by name
    click_names = "ClickException|UsageError|BadParameter|MissingParameter|NoSuchOption|BadOptionUsage|" \
                  "BadArgumentUsage|NoArgsIsHelpError|FileError|Abort"
    python_names = re.compile(rf"Traceback|\b[A-Z]\w*(Error|Exception|Interrupt)\b|\b({click_names})\b")
    for i in range(200):
        args = _misuse(rng, commands)
        code, out, err = run_cli(args, capsys, monkeypatch)
        assert code != 0, (args, out, err)
        assert not python_names.search(out + err), (args, out + err)
        assert "error" in err.lower(), (args, err)
        assert not any(cwd.iterdir()), (args, sorted(map(str, cwd.rglob("*"))))


def test_ctrl_c_outside_training_exits_130(capsys, monkeypatch):
    import mlmkit.config

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(mlmkit.config, "preset_names", interrupted)
    code, out, err = run_cli(["presets"], capsys, monkeypatch)
    assert code == 130 and "interrupted" in err


def test_every_option_of_every_command_has_help_and_shows_its_default(capsys, monkeypatch):
    group = _commands()
    no_help, hidden_default = [], []
    for name, cmd in [("mlmkit", group), *group.commands.items()]:
        for p in cmd.params:
            where = f"{name} {'/'.join(p.opts) or p.name}"
            if not (p.help or "").strip():
                no_help.append(where)
            valued = p.param_type_name == "option" and not getattr(p, "is_flag", False)
            if valued and p.default not in (None, [], ()) and not p.show_default:
                hidden_default.append(where)
    assert not no_help, f"options without help: {no_help}"
    assert not hidden_default, f"defaults not shown in --help: {hidden_default}"
    monkeypatch.setenv("COLUMNS", "250")  # one line per option
    code, out, _ = run_cli(["finetune", "--help"], capsys, monkeypatch)
    assert code == 0 and "[default: 3.0]" in out and "[default: classification]" in out
    flags = [l for l in out.splitlines() if "--from-scratch" in l or "--overwrite" in l]
    assert len(flags) == 2 and not any("<bool>" in l for l in flags), flags  # a switch takes no value


def test_finetune_flag_defaults_are_the_config_defaults():
    """--help shows the flags' defaults: they must be FinetuneConfig's, which applies when a
    flag is not given."""
    from mlmkit.cli import FINETUNE_FLAGS
    from mlmkit.finetune import FinetuneConfig

    defaults = FinetuneConfig()
    params = {p.name: p for p in _commands().commands["finetune"].params}
    assert set(FINETUNE_FLAGS) <= set(params)
    for name in FINETUNE_FLAGS:
        if params[name].default is not None:
            assert params[name].default == getattr(defaults, name), name


def test_output_dir_is_another_name_for_o(capsys, monkeypatch, tmp_path):
    import mlmkit.api

    for name, cmd in _commands().commands.items():
        for p in cmd.params:
            if "-o" in p.opts and name != "plot":  # plot's -o names a PNG file, not a folder
                assert {"--output", "--output-dir"} <= set(p.opts), name
    seen = {}
    monkeypatch.setattr(mlmkit.api, "train_run", lambda *a, **kw: seen.update(kw))
    code, _, err = run_cli(["train", "--output-dir", str(tmp_path / "r")], capsys, monkeypatch)
    assert code == 0 and seen["output_dir"] == str(tmp_path / "r"), err


def test_finetune_takes_a_config_file_and_set_and_the_flags_given_win(capsys, monkeypatch, tmp_path):
    import mlmkit.finetune as ft

    seen = {}

    def fake(model, data, out, cfg, log, overwrite):
        seen.update(model=model, out=out, cfg=cfg)
        return ft.FinetuneResult(labels=["a", "b"])

    monkeypatch.setattr(ft, "finetune", fake)
    f = tmp_path / "ft.yaml"
    f.write_text("lr: 1.0e-4\nepochs: 5\nbatch_size: 8\nweight_decay: 0.0\ntask: token-classification\n")
    code, out, err = run_cli(["finetune", "m", "-d", "x.csv", "--config", str(f), "--set", "epochs=2",
                              "--set", "batch_size=4", "--batch-size", "32", "--output-dir", str(tmp_path / "o")],
                             capsys, monkeypatch)
    assert code == 0, err
    cfg = seen["cfg"]
    assert cfg.lr == 1e-4 and cfg.weight_decay == 0.0 and cfg.task == "token-classification"  # the file
    assert cfg.epochs == 2.0  # --set over the file
    assert cfg.batch_size == 32  # the flag given over --set
    assert cfg.patience == 2 and cfg.seed == 0  # nothing given: the defaults
    assert cfg.label_column == "tags"  # the task's default column, from the file's task
    assert seen["out"] == str(tmp_path / "o") and json.loads(out)["output"] == str(tmp_path / "o")
    code, _, err = run_cli(["finetune", "m", "-d", "x.csv", "--set", "epoch=2"], capsys, monkeypatch)
    _one_line_error(code, err, "unknown config key 'epoch' (did you mean 'epochs'?)")
    f.write_text("learning_rate: 0.1\n")
    code, _, err = run_cli(["finetune", "m", "-d", "x.csv", "-c", str(f)], capsys, monkeypatch)
    _one_line_error(code, err, "unknown config key 'learning_rate' (known keys here: batch_size, device")
    assert code == 2


def test_the_instant_commands_never_import_torch():
    """`import mlmkit.cli` and the commands that do no work (--help, --version, presets, config,
    shell completion) import neither torch nor transformers (~2 s); bench/cli_startup.py times
    them."""
    code = """
import sys
from mlmkit.cli import main
import mlmkit
heavy = lambda: sorted(m for m in ("torch", "transformers", "datasets", "tokenizers") if m in sys.modules)
print("import", heavy())
for args in (["--help"], ["--version"], ["presets"], ["config", "--preset", "domains-tiny"], ["train", "--help"]):
    sys.argv = ["mlmkit", *args]
    try:
        main()
    except SystemExit:
        pass
print("commands", heavy())
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    found = [l for l in r.stdout.splitlines() if l.startswith(("import ", "commands "))]
    assert found == ["import []", "commands []"], (found, r.stderr[-2000:])
    env = dict(os.environ, COMP_WORDS="mlmkit con", COMP_CWORD="1", _MLMKIT_COMPLETE="complete_bash")
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "mlmkit"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.stdout.split() == ["config"], r.stdout
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" not in imported and "transformers" not in imported


def test_the_public_api_is_still_there():
    import mlmkit

    for name in mlmkit.__all__:
        assert getattr(mlmkit, name) is not None, name
    from mlmkit import TokenConfig, train  # noqa: F401  (from-imports go through __getattr__ too)

    with pytest.raises(AttributeError):
        mlmkit.no_such_name
