"""`mlmkit eval RUN` with no --data: the run's own held-out data, to the record."""

import json

from cli_runner import run_cli


def _final_eval(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("final")][-1]


def test_eval_of_a_run_without_data_reproduces_its_final_evaluation(capsys, monkeypatch, tmp_path, english_texts):
    """The run's final evaluation and `eval RUN` score the same sequences (the prepared data's
    hash split, cut to data.max_eval_samples) with the same fixed mask (keyed by the evaluation
    seed and each sequence's place), on the same weights: the same loss (bit-equal on a CPU; a
    tolerance of 1e-6 for kernels that sum in another order)."""
    data = tmp_path / "corpus.txt"
    data.write_text("\n".join(english_texts[:1200]) + "\n")
    run = tmp_path / "run"
    code, out, err = run_cli(["train", "--preset", "scratch-tiny", "--data", str(data), "-o", str(run),
                              "--max-steps", "6", "--set", "train.max_minutes=null", "--set", "train.eval_every=3",
                              "--set", "tokenizer.vocab_size=500", "--set", "train.progress=false",
                              "--set", "data.max_eval_samples=12", "--set", "train.eval_at_start=false"],
                             capsys, monkeypatch)
    assert code == 0, err
    final = _final_eval(run)
    assert final["step"] == 6
    code, out, err = run_cli(["eval", str(run)], capsys, monkeypatch)
    assert code == 0, err
    ours = json.loads(out)
    assert "held-out data" in err
    assert ours["eval_sequences"] == 12 and ours["eval_targets"] == final["eval_targets"]
    assert abs(ours["eval_loss"] - final["eval_loss"]) < 1e-6 * final["eval_loss"], (ours, final)  # equal on CPU
    assert ours["eval_accuracy"] == final["eval_accuracy"]
    # --max-samples: the first sequences of that set; the batch size changes nothing
    code, out, err = run_cli(["eval", str(run), "--max-samples", "7", "--batch-size", "3"], capsys, monkeypatch)
    assert code == 0 and json.loads(out)["eval_sequences"] == 7, err
    code, out, err = run_cli(["eval", str(run), "--batch-size", "5"], capsys, monkeypatch)
    assert abs(json.loads(out)["eval_loss"] - ours["eval_loss"]) < 1e-5
    # a model folder that is no run's has no held-out data: say so
    code, out, err = run_cli(["eval", str(run / "model"), "--set", "foo.bar=1"], capsys, monkeypatch)
    assert code == 2 and "mlmkit eval takes no config key 'foo'" in err, err


def test_eval_of_a_bare_model_folder_needs_data(capsys, monkeypatch, tiny_model_dir):
    code, out, err = run_cli(["eval", str(tiny_model_dir)], capsys, monkeypatch)
    assert code == 2 and "no evaluation data: give --data FILE" in err, err
