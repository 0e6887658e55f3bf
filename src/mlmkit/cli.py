"""The `mlmkit` command line: train, eval, predict, presets, config, ...

Errors the user can fix are printed as one line (`error: ...`) with exit code 2; `--debug`
shows the traceback instead. Usage errors (an unknown option, a bad value, a missing argument)
print click's usage line and exit 2.

Start-up is kept instant (`--help`, `--version`, `presets`, `config`, tab completion): this module
imports only typer and mlmkit's light modules at the top; torch and transformers are imported
inside the commands that need them (bench/cli_startup.py times it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Literal, Optional

import typer

from .errors import MlmkitError

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Masked-language-model pre-training: token-level and character-level.")
_state = {"debug": False}


def _echo(msg: str) -> None:
    typer.echo(msg, err=True)


def _rescore_radius(ctx, param, value: str):
    """`predict --rescore`: "auto", "off" (None) or a radius R >= 0, checked while parsing."""
    if value in ("auto", "off"):
        return None if value == "off" else value
    try:
        radius = int(value)
    except ValueError:
        raise MlmkitError(f"--rescore must be a number R >= 0, auto or off, got {value}") from None
    return _bounded(0)(ctx, param, radius)


def _bounded(low: float | None = None, high: float | None = None, *, open_low: bool = False,
             open_high: bool = False):
    """An option callback that refuses a number outside [low, high] (or the open ends) with a
    one-line `error: --name ...` and exit 2, while the command line is parsed: before any model
    or data is loaded. (typer's own `min=` errors do not name the option under typer 0.29.)"""

    def check(ctx, param, value):
        if value is None:
            return value
        too_low = low is not None and (value <= low if open_low else value < low)
        too_high = high is not None and (value >= high if open_high else value > high)
        if too_low or too_high:
            name = next((o for o in param.opts if o.startswith("--")), param.name)
            want = (f"{'>' if open_low else '>='} {low}" if high is None else
                    f"in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}")
            raise MlmkitError(f"{name} must be {want}, got {value}")
        return value

    return check


SEED_MAX = 2**63 - 1  # torch.manual_seed's largest


def _vocab_sizes(ctx, param, value):
    """`stats --vocab-sizes`: whole numbers, each 0 (none) or a size a tokenizer can have."""
    for item in (value or "").replace(",", " ").split():
        if not item.isdigit() or 0 < int(item) < 100:
            raise MlmkitError(f"--vocab-sizes: {item!r} is not a vocabulary size (whole numbers >= 100, "
                              "e.g. 8000,16000; 0 for none)")
    return value


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"mlmkit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors (put it "
                                     "before the command)."),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")):
    _state["debug"] = debug
    if not debug:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


# The options `train` and `prepare` share (one declaration each, reused by both commands).
PRESET = typer.Option(None, "--preset", "-p", help="Named preset (see `mlmkit presets`; its keys: `mlmkit config "
                      "--preset NAME`).")
CONFIG = typer.Option(None, "--config", "-c", metavar="<file>",
                      help="YAML config file (keys: `mlmkit config`); wins over the preset.")
SETS = typer.Option(None, "--set", "-s", metavar="<key=value>",
                    help="Set a config key, e.g. optim.lr=3e-4 (repeatable; keys: `mlmkit config`); wins over "
                         "the preset and --config.")
DATA = typer.Option(None, "--data", "-d", metavar="<path>",
                    help="Training data (data.train): file, folder, glob or hub dataset (repeatable).")
VALIDATION = typer.Option(None, "--validation", metavar="<path>",
                          help="Separate validation data (data.validation; default: a held-out share of --data).")
# --output-dir: the name other trainers (transformers' run_mlm.py, the Trainer) give it
OUTPUT = typer.Option(None, "--output", "--output-dir", "-o", metavar="<dir>", help="Run folder (train.output_dir).")
INIT_FROM = typer.Option(None, "--init-from", metavar="<model>",
                         help="Checkpoint to continue pre-training (model.init_from: hub name or folder).")


@app.command()
def train(
    preset: Optional[str] = PRESET, config: Optional[str] = CONFIG, sets: Optional[List[str]] = SETS,
    data: Optional[List[str]] = DATA, validation: Optional[List[str]] = VALIDATION,
    output: Optional[str] = OUTPUT, init_from: Optional[str] = INIT_FROM,
    # (checked with the config, like the same keys from --set: one message per key)
    max_steps: Optional[int] = typer.Option(None, "--max-steps",
                                            help="train.max_steps: optimiser steps (default: the config's)."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes",
                                                help="train.max_minutes: wall-clock budget; the LR schedule "
                                                     "follows it (default: the config's)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="train.seed: model init, data order, masks."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest good checkpoint in the run folder."),
    resume_from: Optional[str] = typer.Option(None, "--resume-from", metavar="<dir>",
                                              help="Continue from this checkpoint folder."),
    auto_resume: bool = typer.Option(False, "--auto-resume",
                                     help="Continue if the run folder has a checkpoint, else start (job schedulers)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start the run folder's run again (clears it)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code",
                                           help="model.trust_remote_code: run --init-from's own Python code from "
                                                "the Hub (only for repositories you trust)."),
    strategy: Optional[Literal["auto", "ddp", "fsdp"]] = typer.Option(
        None, "--strategy", help="train.strategy under torchrun: ddp replicates the model, fsdp shards it; "
                                 "auto = ddp (default: the config's)."),
):
    """Pre-train (from scratch or continued) and save a Hugging Face model folder."""
    from .api import train_run

    summary = train_run(preset, config=config, data=data, validation=validation, output_dir=output,
                        init_from=init_from, overrides=sets, max_steps=max_steps, max_minutes=max_minutes, seed=seed,
                        trust_remote_code=trust_remote_code, strategy=strategy,
                        resume=resume_from or ("auto" if auto_resume else resume), overwrite=overwrite, log=_echo)
    if summary is not None:
        typer.echo(json.dumps(summary, indent=2))
        if "model_dir" in summary:  # absent when a signal stopped the run before the end
            _echo(f"model saved to {summary['model_dir']}")


@app.command()
def prepare(
    preset: Optional[str] = PRESET, config: Optional[str] = CONFIG, sets: Optional[List[str]] = SETS,
    data: Optional[List[str]] = DATA, validation: Optional[List[str]] = VALIDATION,
    output: Optional[str] = OUTPUT, init_from: Optional[str] = INIT_FROM,
):
    """Tokenise the training data once (parallel, memory-mapped, cached): `train` with the same
    settings then starts at once, on every rank and every resume."""
    from .families import prepare_data

    from .api import run_config

    from .folders import check_output

    cfg = run_config(preset, config, sets, {"data.train": list(data or []), "data.validation": list(validation or []),
                                             "train.output_dir": output, "model.init_from": init_from})
    check_output(Path(cfg.train.output_dir), "prepare", task=cfg.task)  # the run folder `train` will use
    typer.echo(prepare_data(cfg, log=_echo, progress=cfg.train.progress))


@app.command()
def stats(
    data: Optional[List[str]] = typer.Argument(None, help="Data (data.train): file, folder, glob or hub dataset."),
    preset: Optional[str] = PRESET, config: Optional[str] = CONFIG, sets: Optional[List[str]] = SETS,
    init_from: Optional[str] = INIT_FROM,
    plot: Optional[str] = typer.Option(None, "--plot", metavar="<file.png>",
                                       help="PNG of the length histograms (max_length marked)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    sample: Optional[int] = typer.Option(None, "--sample", callback=_bounded(1),
                                         help="Records the costly parts read (tokenizer training, vocabulary "
                                              "sweep; character data: the duplicate check)."),
    vocab_sizes: Optional[str] = typer.Option(None, "--vocab-sizes", callback=_vocab_sizes,
                                              help="Token data: vocabulary sizes to compare, e.g. 8000,16000 "
                                                   "(default 8192,16384,32768; 0 or '' for none)."),
):
    """Look at a corpus before training on it: sizes, length distributions against max_length,
    padding, UNK rate, vocabulary sizes (token data); validity, lengths, TLDs, alphabet (names)."""
    from .families import family

    from .api import run_config

    cfg = run_config(preset, config, sets, {"data.train": list(data or []), "model.init_from": init_from})
    sizes = None if vocab_sizes is None else [int(v) for v in vocab_sizes.replace(",", " ").split() if int(v) > 0]
    fam = family(cfg.task)
    result = fam.stats(cfg, log=_echo, progress=cfg.train.progress, sample=sample, vocab_sizes=sizes)
    panels = result.pop("histograms", [])
    if plot:
        from .report.stats import plot_histograms

        _echo(f"wrote {plot_histograms(panels, plot, title=', '.join(cfg.data.train))}")
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False) if as_json else "\n".join(fam.format_stats(result)))


@app.command("eval")
def eval_cmd(
    model: str = typer.Argument(..., help="Model folder, run folder or hub name."),
    data: Optional[List[str]] = typer.Option(None, "--data", "-d", metavar="<path>",
                                             help="Evaluation data (repeatable). Default, for a run: its held-out "
                                                  "data, the records its own evaluation scored."),
    sets: Optional[List[str]] = typer.Option(None, "--set", "-s", metavar="<key=value>",
                                             help="Override data.*, masking.*, model.allow_pickle or "
                                                  "model.trust_remote_code, e.g. data.max_length=64 (repeatable)."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="data.text_column (default: the run's)."),
    mode: Optional[Literal["line_by_line", "group_texts"]] = typer.Option(
        None, "--mode", help="data.mode of token models (default: the run's)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", callback=_bounded(1),
                                             help="data.max_length (default: the run's)."),
    whole_word: Optional[bool] = typer.Option(None, "--whole-word/--no-whole-word",
                                              help="masking.whole_word of token models (default: the run's)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", callback=_bounded(1),
                                             help="Evaluation batch size (default: 32 token, 256 character models); "
                                                  "the numbers do not depend on it."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", callback=_bounded(1),
                                              help="Score at most this many records (--data) or held-out sequences "
                                                   "/ names (default: all; a run's held-out data: its "
                                                   "data.max_eval_samples)."),
    on_bad_record: Optional[Literal["error", "skip"]] = typer.Option(
        None, "--on-bad-record", help="data.on_bad_record (default: the run's)."),
):
    """Token-weighted loss, perplexity and accuracy on a fixed, seeded mask. Settings not given
    are the run's own (its config.yaml or the model folder's); with no --data, a run is scored on
    its own held-out data, so the numbers match its final evaluation."""
    from .config import deep_merge, parse_override
    from .families import open_model_dir

    _quiet_transformers()
    overrides: dict = {}
    for section, key, value in (("data", "text_column", text_column), ("data", "mode", mode),
                                ("data", "max_length", max_length), ("data", "on_bad_record", on_bad_record),
                                ("masking", "whole_word", whole_word)):
        if value is not None:
            overrides.setdefault(section, {})[key] = value
    for item in sets or []:
        overrides = deep_merge(overrides, parse_override(item))
    _, fam = open_model_dir(model)
    result = fam.evaluate(model, list(data or []), overrides=overrides, batch_size=batch_size,
                          max_samples=max_samples, log=_echo)
    typer.echo(json.dumps(result, indent=2))


@app.command()
def predict(
    model: str = typer.Argument(..., help="Model folder, run folder or hub name."),
    texts: Optional[List[str]] = typer.Argument(None, help='Text with [MASK] (or the model\'s own mask token); '
                                                       'character models: a pattern such as goo[3].com.'),
    file: Optional[str] = typer.Option(None, "--file", "-f", metavar="<file>",
                                       help="Also read inputs from this file, one per line (- : stdin)."),
    # at most 1,000: a character model's beam is twice top_k wide, and no one reads more
    top_k: int = typer.Option(5, "--top-k", "-k", callback=_bounded(1, 1000), help="Candidates per mask or pattern."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    rescore: str = typer.Option(
        "auto", "--rescore", metavar="R|auto|off", callback=_rescore_radius,
        help="Character models: re-rank each pattern's candidates by adding the model's "
             "pseudo-log-likelihood of the holes and R characters either side (each character "
             "read with only itself hidden). auto: R = 4 for a cloze encoder (one more pass), off for others "
             "(several times slower there)."),
):
    """Fill the masks: top-k candidates with probabilities (character models: log-probabilities).
    Many inputs are filled together, in batches."""
    from .families import open_model_dir

    _quiet_transformers()
    inputs = list(texts or []) + _read_inputs(file)
    if not inputs:
        raise MlmkitError("nothing to fill: give texts/patterns as arguments or with --file (- for stdin)")
    path, fam = open_model_dir(model)
    failed = 0
    for result in fam.predict(path, inputs, top_k=top_k, rescore=rescore):
        failed += "error" in result  # a bad input gets its own line; the others are still filled
        if as_json:
            typer.echo(json.dumps(result))
        elif "error" in result:
            typer.echo(f"{result['input']}\n  error: {result['error']}")
        else:
            for line in fam.format_prediction(result):
                typer.echo(line)
    if failed:  # after everything is printed: scripts see the failure in the exit code
        raise MlmkitError(f"{failed} of {len(inputs)} inputs could not be filled (see their error lines)")


def _read_inputs(file: Optional[str]) -> list[str]:
    if file is None:
        return []
    text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


@app.command()
def presets():
    """List the built-in presets (their keys and values: `mlmkit config --preset NAME`)."""
    from .config import load_preset, preset_names

    for name in preset_names():
        desc = load_preset(name).get("description", "")
        typer.echo(f"{name:<20} {desc}")


@app.command("config")
def config_cmd(
    keys: Optional[List[str]] = typer.Argument(None, help="Only these keys or sections, e.g. train or optim.lr."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Show this preset's values (see `mlmkit presets`)."),
    family: Optional[Literal["token", "char"]] = typer.Option(
        None, "--family", help="The model family's keys (default: the preset's, else token)."),
    markdown: bool = typer.Option(False, "--markdown", help="Markdown tables instead (the docs site's reference page)."),
):
    """Every config key with its type, default (the preset's value with --preset) and meaning:
    what a --config YAML file and --set KEY=VALUE take."""
    from .config_keys import config_reference, config_reference_markdown, format_config_reference, select_keys

    docs = config_reference(family, preset)
    fam = next(d.value for d in docs if d.key == "task")
    if keys:
        docs = select_keys(docs, list(keys))
    if markdown:
        if keys:
            raise MlmkitError("--markdown renders whole sections: leave out the KEYS")
        typer.echo(config_reference_markdown(family, preset))  # neither given: every family, as the docs
        return
    typer.echo("\n".join(format_config_reference(docs, family=fam, preset=preset)))


def _quiet_transformers() -> None:
    """No 'Loading weights' / 'Writing model shards' bars from transformers in these commands:
    mlmkit prints its own progress, and the bars drown the one-line messages."""
    if not _state["debug"]:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


@app.command()
def export(
    run: str = typer.Argument(..., help="Run folder (or its model/ folder, or a checkpoint folder)."),
    out: str = typer.Argument(..., help="Output folder."),
    step: Optional[int] = typer.Option(None, "--step", callback=_bounded(0),
                                       help="Export checkpoint N of the run instead of its final model."),
    encoder_only: bool = typer.Option(False, "--encoder-only",
                                      help="OUT holds the encoder without the MLM head (AutoModel); "
                                           "the full masked-LM goes to OUT/masked-lm."),
    license: Optional[str] = typer.Option(None, "--license", help="Licence for the model card, e.g. apache-2.0."),
    push_to_hub: Optional[str] = typer.Option(None, "--push-to-hub", metavar="<user/name>",
                                              help="Upload OUT to this Hub repo."),
    private: bool = typer.Option(False, "--private", help="With --push-to-hub: create the repo private."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty OUT."),
):
    """Write a shareable model folder with a model card (README.md); optionally push it to the Hub."""
    from .export import export as run_export, push_to_hub as run_push

    _quiet_transformers()
    folder = run_export(run, out, encoder_only=encoder_only, overwrite=overwrite, step=step, license=license,
                        log=_echo)
    if push_to_hub:
        run_push(folder, push_to_hub, private=private, log=_echo)


# finetune's flags that are FinetuneConfig fields of the same name: a flag given on the command
# line wins over --set, which wins over --config (the same order as train's).
FINETUNE_FLAGS = ("task", "text_column", "label_column", "epochs", "max_minutes", "batch_size", "lr", "max_length",
                  "validation_fraction", "test_fraction", "patience", "eval_every", "from_scratch", "seed",
                  "max_samples", "max_train_samples", "threads")


@app.command()
def finetune(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Pre-trained run folder, model folder or exported encoder."),
    data: List[str] = typer.Option(..., "--data", "-d", metavar="<path>",
                                   help="CSV/TSV/JSONL file(s), or a folder of label folders; token-classification: "
                                        "CoNLL, CoNLL-U (.conllu) or JSONL files, hf:NAME (repeatable)."),
    config: Optional[str] = typer.Option(None, "--config", "-c", metavar="<file>",
                                         help="YAML file of fine-tuning settings: the keys --set takes."),
    sets: Optional[List[str]] = typer.Option(None, "--set", "-s", metavar="<key=value>",
                                             help="A fine-tuning setting, e.g. lr=1e-4 or weight_decay=0 (repeatable; "
                                                  "the keys: these options' names with _, and weight_decay, "
                                                  "warmup_ratio, device, progress); wins over --config, and the "
                                                  "options given win over both."),
    task: Literal["classification", "token-classification"] = typer.Option(
        "classification", "--task", help="classification: a label per text; token-classification: a tag per word "
                                         "(NER, POS)."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Default: text (token-classification: tokens)."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Default: label (token-classification: "
                                               "tags; CoNLL-U: upos, or xpos / deprel)."),
    output: str = typer.Option("runs/finetune", "--output", "--output-dir", "-o", metavar="<dir>",
                               help="Where the classifier is saved."),
    epochs: float = typer.Option(3.0, "--epochs", callback=_bounded(0, open_low=True), help="Passes over the training split."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", callback=_bounded(0, open_low=True),
                                                help="Wall-clock budget (default: none)."),
    batch_size: int = typer.Option(16, "--batch-size", callback=_bounded(1), help="Examples per step."),
    lr: float = typer.Option(3e-4, "--lr", callback=_bounded(0, open_low=True), help="Peak learning rate (AdamW)."),
    max_length: int = typer.Option(128, "--max-length", callback=_bounded(1),
                                   help="Tokens per text (longer texts are cut)."),
    validation_fraction: float = typer.Option(0.1, "--validation-fraction",
                                              callback=_bounded(0, 1, open_low=True, open_high=True),
                                              help="Share of the records held out for validation (by a hash of the text)."),
    test_fraction: float = typer.Option(0.0, "--test-fraction", callback=_bounded(0, 1, open_high=True),
                                        help="Held-out test split, never used for stopping."),
    patience: Optional[int] = typer.Option(2, "--patience", callback=_bounded(1),
                                           help="Evaluations without improvement before stopping."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", callback=_bounded(1),
                                             help="Steps between evaluations (default: each epoch)."),
    from_scratch: bool = typer.Option(False, "--from-scratch", help="Re-initialise the weights (baseline); keeps the tokenizer."),
    seed: int = typer.Option(0, "--seed", callback=_bounded(0, SEED_MAX), help="Split, sample, head initialisation, order."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", callback=_bounded(1),
                                              help="Use only the first N records (default: all)."),
    max_train_samples: Optional[int] = typer.Option(None, "--max-train-samples", callback=_bounded(1), help="A seeded sample of the "
                                                    "training split only (few labels); validation and test stay whole."),
    threads: Optional[int] = typer.Option(None, "--threads", callback=_bounded(1), help="CPU threads (1 is often fastest on a busy machine)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier output of mlmkit in --output."),
):
    """Fine-tune a pre-trained encoder for sequence classification or token classification (NER, POS)."""
    flags = {name: value for name, value in locals().items() if name in FINETUNE_FLAGS and _given(ctx, name)}
    raw = _finetune_settings(config, sets, flags)  # checked before the model and data are read
    from .config import from_dict
    from .finetune import FinetuneConfig, finetune as run_finetune

    _quiet_transformers()
    cfg = from_dict(FinetuneConfig, raw)
    result = run_finetune(model, list(data), output, cfg, log=_echo, overwrite=overwrite)
    typer.echo(json.dumps({"validation": result.validation, "test": result.test, "steps": result.steps,
                           "best_step": result.best_step, "stopped": result.stopped,
                           "train_seconds": result.train_seconds, "output": output}, indent=2))


def _given(ctx, name: str) -> bool:
    """Whether option `name` was given (command line or environment), not left at its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")


def _finetune_settings(config: Optional[str], sets: Optional[List[str]], flags: dict) -> dict:
    """--config FILE <- --set key=value <- the flags given, as one mapping of FinetuneConfig keys."""
    from .config import deep_merge, load_yaml, parse_override

    raw = load_yaml(config) if config else {}
    for item in sets or []:
        raw = deep_merge(raw, parse_override(item))
    return {**raw, **flags}


@app.command()
def show(
    model: str = typer.Argument(..., help="Run folder, model folder or hub name."),
    data: Optional[List[str]] = typer.Option(None, "--data", "-d", help="Texts to sample (default: the run's held-out data)."),
    n: int = typer.Option(8, "-n", "--num", callback=_bounded(1), help="Number of examples."),
    seed: int = typer.Option(0, "--seed", callback=_bounded(0, SEED_MAX), help="Which examples and masks."),
    rate: float = typer.Option(0.15, "--rate", callback=_bounded(0, 1, open_low=True, open_high=True),
                               help="Fraction of tokens to mask."),
    max_tokens: int = typer.Option(64, "--max-tokens", callback=_bounded(1), help="Tokens shown per example."),
    text_column: str = typer.Option("text", "--text-column", help="Column of --data files that holds the text."),
    color: Optional[bool] = typer.Option(None, "--color/--no-color", help="Default: colour only in a terminal."),
):
    """Original / Masked / Predicted for sampled texts, aligned token by token."""
    from .show import show as run_show

    _quiet_transformers()

    run_show(model, list(data) if data else None, n=n, seed=seed, rate=rate, max_tokens=max_tokens,
             text_column=text_column, color=color, log=_echo)


@app.command()
def plot(
    runs: List[str] = typer.Argument(..., help="Run folder(s); several are overlaid."),
    # no --output-dir here: this -o names a file
    output: str = typer.Option("curves.png", "--output", "-o", metavar="<file.png>", help="PNG file to write."),
    title: Optional[str] = typer.Option(None, "--title", help="Figure title (default: none)."),
    # 600 dpi is print quality; far more makes an image of gigabytes (the figure is 12 x 15 inches)
    dpi: int = typer.Option(110, "--dpi", callback=_bounded(10, 600), help="Resolution of the PNG."),
):
    """PNG of loss, perplexity, accuracy, LR and throughput vs steps and wall time."""
    from .report.plotting import plot_runs

    path = plot_runs(list(runs), output, title=title, dpi=dpi)
    _echo(f"wrote {path}")


def command():
    """The click command of `app`, with its on/off flags shown as flags: typer 0.29 labels every
    option with its value's type in --help, `<bool>` for a switch that takes no value."""
    import typer.main

    group = typer.main.get_command(app)
    for cmd in (group, *group.commands.values()):
        help_option = cmd.get_help_option(cmd.context_class(cmd, info_name=cmd.name))  # made once, then kept
        for param in (*cmd.params, help_option):
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
    return group


def _end_rank() -> None:
    """End a torchrun rank whose command succeeded, once it left its group: Python's exit handlers
    and a flush, then `os._exit(0)`. A normal exit also runs the C++ teardown of the libraries'
    static objects, where gloo's leftover threads can still abort the process after its work is
    done (SIGABRT, "terminate called without an active exception"), also with the group destroyed
    first; torchrun then reports the whole run as failed."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


def main() -> None:
    try:
        code = command()(prog_name="mlmkit", standalone_mode=False)
    except MlmkitError as e:
        if _state["debug"]:
            raise
        _echo(f"error: {e}")
        sys.exit(2)
    except (OSError, UnicodeDecodeError) as e:  # a missing file, a full disk, a file-size limit...
        if _state["debug"]:
            raise
        _echo(f"error: {' '.join(str(e).split())}")
        sys.exit(2)
    except KeyboardInterrupt:
        _echo("interrupted")
        sys.exit(130)
    except Exception as e:  # usage errors and the like
        usage = _usage_exit(e)
        if usage is not None:
            sys.exit(usage)
        if _state["debug"] or "--debug" in sys.argv:
            raise
        from .util import one_line

        _echo(f"error: {type(e).__name__}: {one_line(e)} (run with --debug for the traceback)")
        sys.exit(1)
    if "torch.distributed" in sys.modules and not code:  # a run that joined a group leaves it
        from .engine.distributed import leave_process_group

        if leave_process_group():
            _end_rank()
    if isinstance(code, int) and code:  # typer returns what it caught (Ctrl-C: 130) in this mode
        if code == 130:
            _echo("interrupted")
        sys.exit(code)


def _usage_exit(e: Exception) -> Optional[int]:
    """The exit code of click's own exceptions -- a usage error (shown with the usage line, as
    click shows it: exit 2), an explicit exit, an abort -- or None for anything else. Typer
    bundles its own copy of click, so they are recognised by what they have, not by class."""
    name = type(e).__name__
    if name == "Exit" and hasattr(e, "exit_code"):
        return int(e.exit_code)
    if name == "Abort":
        _echo("aborted")
        return 1
    if hasattr(e, "show") and hasattr(e, "exit_code"):
        e.show()
        return int(e.exit_code)
    return None


if __name__ == "__main__":
    main()
