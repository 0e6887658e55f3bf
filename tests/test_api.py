"""`mlmkit.train(...)` is `mlmkit train` from Python: same config (config.yaml included), same run
folder rules, same run bit for bit."""

import json

import pytest

import mlmkit
from cli_runner import run_cli
from mlmkit.errors import MlmkitError


def test_one_call_train_is_the_cli_command(capsys, monkeypatch, tmp_path, english_texts):
    data = tmp_path / "corpus.txt"
    data.write_text("\n".join(english_texts[:800]))
    sets = ["tokenizer.vocab_size=400", "train.progress=false", f"data.cache_dir={tmp_path / 'cache'}",
            "train.max_minutes=null", "train.log_every=1", "model.size=tiny"]
    code, out, err = run_cli(["train", "--preset", "scratch-tiny", "--data", str(data), "--max-steps", "2",
                              "-o", str(tmp_path / "cli"), *[a for s in sets for a in ("--set", s)]], capsys, monkeypatch)
    assert code == 0, err
    summary = mlmkit.train(preset="scratch-tiny", data=[str(data)], max_steps=2, output_dir=str(tmp_path / "api"),
                           overrides=sets, log=lambda s: None)
    assert summary["step"] == 2 and summary["eval_loss"] == json.loads(out)["eval_loss"]
    cli_cfg = (tmp_path / "cli" / "config.yaml").read_text()
    assert cli_cfg.replace(str(tmp_path / "cli"), "RUN") == (tmp_path / "api" / "config.yaml").read_text().replace(
        str(tmp_path / "api"), "RUN")

    def losses(run):
        return [json.loads(line).get("loss") for line in open(tmp_path / run / "metrics.jsonl")]
    assert losses("cli") == losses("api")
    with pytest.raises(MlmkitError, match="already holds a run"):  # the CLI's run-folder rule
        mlmkit.train(preset="scratch-tiny", data=[str(data)], output_dir=str(tmp_path / "api"), overrides=sets)
