"""`mlmkit plot`: metrics.jsonl -> PNG, resumed runs de-duplicated, several runs overlaid."""

import json
import sys

import pytest

from mlmkit.errors import MlmkitError
from mlmkit.report.plotting import plot_runs, read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_run(folder, steps, loss0=8.0, extra_lines=()):
    folder.mkdir(parents=True)
    lines = [{"eval_loss": loss0 + 1, "eval_perplexity": 2980.0, "eval_accuracy": 0.0, "step": 0, "time_s": 0.0}]
    for s in steps:
        lines.append({"step": s, "epoch": 0, "loss": loss0 / s ** 0.3, "lr": 1e-3 * min(1, s / 5),
                      "tokens_per_s": 1000.0 + s, "tokens": 100 * s, "time_s": 0.5 * s})
        if s % 10 == 0:
            lines.append({"eval_loss": loss0 / s ** 0.3 + 0.2, "eval_perplexity": 50.0, "eval_accuracy": s / 100,
                          "eval_targets": 99, "step": s, "time_s": 0.5 * s})
    text = "\n".join(json.dumps(l) for l in lines) + "\n" + "".join(l + "\n" for l in extra_lines)
    (folder / "metrics.jsonl").write_text(text)
    return folder


def test_read_metrics_keeps_the_last_record_per_step_and_ignores_events(tmp_path):
    resumed = [json.dumps({"step": 3, "epoch": 0, "loss": 1.0, "lr": 0.1, "tokens_per_s": 5.0, "time_s": 9.0}),
               json.dumps({"step": 4, "event": "nonfinite_loss_skipped"})]
    run = read_metrics(_write_run(tmp_path / "r", [1, 2, 3, 4, 10, 20], extra_lines=resumed))
    assert [r["step"] for r in run.train] == [1, 2, 3, 4, 10, 20]
    assert run.train[2]["loss"] == 1.0  # the re-logged step after a resume wins
    assert run.train[2]["perplexity"] == pytest.approx(2.718281828)
    assert [r["step"] for r in run.eval] == [0, 10, 20]


def test_plot_writes_a_png_for_several_runs(tmp_path):
    pytest.importorskip("matplotlib")
    a = _write_run(tmp_path / "a" / "run", list(range(1, 41)))
    b = _write_run(tmp_path / "b" / "run", list(range(1, 31)), loss0=7.0)  # same folder name as a
    out = plot_runs([a, b], tmp_path / "plots" / "curves.png", title="two runs", dpi=40)
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_plot_errors_are_one_line(tmp_path):
    with pytest.raises(MlmkitError, match="no metrics.jsonl"):
        plot_runs([tmp_path], tmp_path / "x.png")
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "event": "nonfinite_loss_skipped"}\n')
    with pytest.raises(MlmkitError, match="no training or evaluation records"):
        plot_runs([tmp_path], tmp_path / "x.png")


def test_cli_plot(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    from mlmkit.cli import main

    run = _write_run(tmp_path / "run", list(range(1, 21)))
    monkeypatch.setattr(sys, "argv", ["mlmkit", "plot", str(run), "-o", str(tmp_path / "c.png"), "--dpi", "30"])
    try:
        main()
    except SystemExit as e:
        assert not e.code
    assert (tmp_path / "c.png").read_bytes().startswith(PNG_MAGIC)
    assert "wrote" in capsys.readouterr().err
