"""The `mlmkit` command line: train, eval, predict, presets.

Errors the user can fix are printed as one line (`error: ...`) with exit code 2; `--debug`
shows the traceback instead.
"""

from __future__ import annotations

import json
import os
import sys
from typing import List, Optional

import typer

from .errors import MlmkitError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Masked-language-model pre-training: token-level and character-level.")
_state = {"debug": False}


def _echo(msg: str) -> None:
    typer.echo(msg, err=True)


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")):
    _state["debug"] = debug
    if not debug:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _config(preset, config, sets, extra: dict):
    from .config import deep_merge, load_preset, load_yaml, parse_override, build_config

    raw: dict = {}
    if preset:
        raw = deep_merge(raw, load_preset(preset))
    if config:
        raw = deep_merge(raw, load_yaml(config))
    for item in sets or []:
        raw = deep_merge(raw, parse_override(item))
    raw = deep_merge(raw, extra)
    return build_config(raw)


@app.command()
def train(
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Named preset (see `mlmkit presets`)."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML config file."),
    sets: Optional[List[str]] = typer.Option(None, "--set", "-s", help="Override, e.g. optim.lr=3e-4 (repeatable)."),
    data: Optional[List[str]] = typer.Option(None, "--data", "-d", help="Training data: file, folder, glob or hub dataset."),
    validation: Optional[List[str]] = typer.Option(None, "--validation", help="Separate validation data."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Run folder (train.output_dir)."),
    init_from: Optional[str] = typer.Option(None, "--init-from", help="Checkpoint to continue pre-training (hub name or folder)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps"),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in the run folder."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
):
    """Pre-train (from scratch or continued) and save a Hugging Face model folder."""
    from .config import save_config
    from .training import train as run_training

    extra: dict = {}
    if data:
        extra.setdefault("data", {})["train"] = list(data)
    if validation:
        extra.setdefault("data", {})["validation"] = list(validation)
    if output:
        extra.setdefault("train", {})["output_dir"] = output
    if init_from:
        extra.setdefault("model", {})["init_from"] = init_from
    if trust_remote_code:
        extra.setdefault("model", {})["trust_remote_code"] = True
    if max_steps is not None:
        extra.setdefault("train", {})["max_steps"] = max_steps
    if max_minutes is not None:
        extra.setdefault("train", {})["max_minutes"] = max_minutes
    cfg = _config(preset, config, sets, extra)
    from pathlib import Path

    out = Path(cfg.train.output_dir)
    rank0 = int(os.environ.get("RANK", 0)) == 0
    log = _echo if rank0 else (lambda s: None)
    if rank0:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    if cfg.task == "char":
        from .char_task import build_char_task

        task = build_char_task(cfg, log=log)
    else:
        from .token_task import build_token_task

        task = build_token_task(cfg, log=log, progress=cfg.train.progress and rank0)
    summary = run_training(task, cfg.train, cfg.optim, resume=resume, log=log)
    if rank0:
        typer.echo(json.dumps(summary, indent=2))
        if "model" not in summary.get("stopped", "") and (out / "model").is_dir():
            _echo(f"model saved to {out / 'model'}")


@app.command("eval")
def eval_cmd(
    model: str = typer.Argument(..., help="Model folder, run folder or hub name."),
    data: List[str] = typer.Option(..., "--data", "-d", help="Evaluation data."),
    text_column: str = typer.Option("text", "--text-column"),
    mode: str = typer.Option("group_texts", "--mode", help="line_by_line or group_texts."),
    max_length: int = typer.Option(128, "--max-length"),
    whole_word: bool = typer.Option(False, "--whole-word"),
    batch_size: int = typer.Option(32, "--batch-size"),
    max_samples: Optional[int] = typer.Option(None, "--max-samples"),
    on_bad_record: str = typer.Option("error", "--on-bad-record", help="error or skip."),
):
    """Token-weighted perplexity and masked accuracy on a fixed, seeded mask."""
    from .evaluation import is_char_model, resolve_model_dir

    if is_char_model(resolve_model_dir(model)):
        from .char_task import char_evaluate

        result = char_evaluate(resolve_model_dir(model), list(data), max_samples=max_samples)
    else:
        from .config import build_config
        from .evaluation import evaluate_token_model

        cfg = build_config({"data": {"text_column": text_column, "mode": mode, "max_length": max_length,
                                     "max_samples": max_samples, "max_eval_samples": None,
                                     "on_bad_record": on_bad_record},
                            "masking": {"whole_word": whole_word}})
        result = evaluate_token_model(model, list(data), data_cfg=cfg.data, masking=cfg.masking,
                                      batch_size=batch_size, log=_echo)
    typer.echo(json.dumps(result, indent=2))


@app.command()
def predict(
    model: str = typer.Argument(..., help="Model folder, run folder or hub name."),
    texts: List[str] = typer.Argument(..., help='Text with [MASK] (or the model\'s own mask token).'),
    top_k: int = typer.Option(5, "--top-k", "-k"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
):
    """Fill the masks: top-k candidates with probabilities."""
    from .evaluation import is_char_model, resolve_model_dir

    path = resolve_model_dir(model)
    if is_char_model(path):
        from .char_task import char_predict

        for text in texts:
            cands = char_predict(path, text, k=top_k)
            if as_json:
                typer.echo(json.dumps({"input": text, "fills": [{"text": s, "score": sc} for s, sc in cands]}))
            else:
                typer.echo(text)
                for s, sc in cands:
                    typer.echo(f"  {sc:8.4f}  {s}")
        return
    from .data.tokenizers import load_tokenizer
    from .inference import fill_mask
    from .models import load_model

    tokenizer = load_tokenizer(path)
    mdl = load_model(path)
    for text in texts:
        fills = fill_mask(mdl, tokenizer, text, top_k=top_k)
        if as_json:
            typer.echo(json.dumps({"input": text, "masks": [[f.__dict__ for f in row] for row in fills]}))
            continue
        typer.echo(text)
        for i, row in enumerate(fills):
            if len(fills) > 1:
                typer.echo(f"  mask {i + 1}:")
            for f in row:
                typer.echo(f"  {f.score:7.4f}  {f.token:<15} {f.sequence}")


@app.command()
def presets():
    """List the built-in presets."""
    from .config import load_preset, preset_names

    for name in preset_names():
        desc = load_preset(name).get("description", "")
        typer.echo(f"{name:<20} {desc}")


def main() -> None:
    try:
        app(standalone_mode=False)
    except MlmkitError as e:
        if _state["debug"]:
            raise
        _echo(f"error: {e}")
        sys.exit(2)
    except (FileNotFoundError, PermissionError, IsADirectoryError, UnicodeDecodeError) as e:
        if _state["debug"]:
            raise
        _echo(f"error: {e}")
        sys.exit(2)
    except KeyboardInterrupt:
        _echo("interrupted")
        sys.exit(130)
    except Exception as e:  # click usage errors and the like
        import click

        if isinstance(e, click.exceptions.Exit):
            sys.exit(e.exit_code)
        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(1)
        if _state["debug"] or "--debug" in sys.argv:
            raise
        _echo(f"error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} (run with --debug for the traceback)")
        sys.exit(1)


if __name__ == "__main__":
    main()
