"""`mlmkit plot RUN_DIR [RUN_DIR...] -o curves.png`: training curves from metrics.jsonl.

One PNG, five rows -- loss, perplexity, masked-token accuracy, learning rate, throughput -- and
two columns: against optimiser steps (left) and wall-clock training time (right). Training
records are solid lines, evaluation records dashed with markers; several runs are overlaid in
different colours for comparison.

Reading rules: a resumed run re-logs the steps after its last checkpoint, so for each kind of
record the *last* line for a step wins; event lines (e.g. skipped NaN steps) are ignored. The
Agg backend is forced, so this works on servers without a display.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MlmkitError

# (row title, y-axis label, train key, eval key, log-scale y?)
PANELS = [
    ("Loss", "loss (masked tokens)", "loss", "eval_loss", False),
    ("Perplexity", "perplexity", "perplexity", "eval_perplexity", True),
    ("Masked-token accuracy", "accuracy", None, "eval_accuracy", False),
    ("Learning rate", "lr", "lr", None, False),
    ("Throughput", "tokens / s", "tokens_per_s", None, False),
]


@dataclass
class RunMetrics:
    name: str
    train: list[dict] = field(default_factory=list)  # records with "loss", sorted by step
    eval: list[dict] = field(default_factory=list)  # records with "eval_loss", sorted by step


def _metrics_file(run: str | Path) -> Path:
    p = Path(run)
    if p.is_file():
        return p
    if (p / "metrics.jsonl").is_file():
        return p / "metrics.jsonl"
    if p.name == "model" and (p.parent / "metrics.jsonl").is_file():
        return p.parent / "metrics.jsonl"
    raise MlmkitError(f"{p}: no metrics.jsonl (give a run folder written by `mlmkit train`)")


def read_metrics(run: str | Path, name: str | None = None) -> RunMetrics:
    path = _metrics_file(run)
    train: dict[int, dict] = {}
    evals: dict[int, dict] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            # The last line of a run killed mid-write can be truncated; anything else is damage.
            raise MlmkitError(f"{path}:{n}: not valid JSON") from None
        if not isinstance(rec, dict) or "step" not in rec or "event" in rec:
            continue
        if "loss" in rec and math.isfinite(rec["loss"]):
            rec = dict(rec, perplexity=math.exp(min(rec["loss"], 50.0)))
            train[int(rec["step"])] = rec
        elif "eval_loss" in rec:
            evals[int(rec["step"])] = rec  # the final evaluation repeats the last step: keep it
    label = name or (path.parent.name if path.name == "metrics.jsonl" else path.stem)
    return RunMetrics(label, [train[s] for s in sorted(train)], [evals[s] for s in sorted(evals)])


def _unique_names(runs: list[str]) -> list[str]:
    """Folder names, with the parent added where two runs share a name (a/run vs b/run)."""
    names = [Path(r).resolve().name if Path(r).name != "metrics.jsonl" else Path(r).resolve().parent.name
             for r in runs]
    if len(set(names)) == len(names):
        return names
    return [str(Path(r).resolve().relative_to(Path(r).resolve().parents[1])) for r in runs]


def plot_runs(runs: list[str | Path], out: str | Path, *, title: str | None = None, dpi: int = 110) -> Path:
    """Write the PNG and return its path."""
    try:
        import matplotlib
    except ImportError:
        raise MlmkitError("mlmkit plot needs matplotlib (pip install 'mlmkit[plots]' or pip install matplotlib)") from None

    matplotlib.use("Agg")  # no display needed (and never pops up a window)
    import matplotlib.pyplot as plt

    if not runs:
        raise MlmkitError("give at least one run folder")
    data = [read_metrics(r, n) for r, n in zip(runs, _unique_names([str(r) for r in runs]))]
    if not any(d.train or d.eval for d in data):
        raise MlmkitError("the metrics files hold no training or evaluation records yet")

    fig, axes = plt.subplots(len(PANELS), 2, figsize=(12, 3.0 * len(PANELS)), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for col, xkey, xlabel, scale in ((0, "step", "optimiser step", 1.0), (1, "time_s", "wall time (min)", 1 / 60)):
        for row, (name, ylabel, tkey, ekey, logy) in enumerate(PANELS):
            ax = axes[row][col]
            for i, run in enumerate(data):
                color = colors[i % len(colors)]
                _line(ax, run.train, xkey, tkey, scale, color, "-", None, f"{run.name} train")
                _line(ax, run.eval, xkey, ekey, scale, color, "--", "o", f"{run.name} validation")
            ax.set_title(name, fontsize=10)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
            if not ax.has_data():  # e.g. no throughput in a fine-tuning run's metrics
                ax.text(0.5, 0.5, "not in metrics.jsonl", ha="center", va="center", transform=ax.transAxes,
                        color="gray")
            elif logy:
                ax.set_yscale("log")
            if row == 0 and ax.has_data():
                ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.98) if title else (0, 0, 1, 1))  # leave room for the title
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def _line(ax, records, xkey, ykey, scale, color, style, marker, label) -> None:
    if ykey is None:
        return
    pts = [(r[xkey] * scale, r[ykey]) for r in records
           if ykey in r and xkey in r and isinstance(r[ykey], (int, float)) and math.isfinite(r[ykey])]
    if pts:
        xs, ys = zip(*pts)
        ax.plot(xs, ys, linestyle=style, marker=marker, markersize=3, color=color, label=label, linewidth=1.2)
