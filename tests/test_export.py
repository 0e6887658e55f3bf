"""`mlmkit export`: the encoder round-trips through AutoModel, the masked LM through
pipeline("fill-mask"), and the model card carries the run's facts."""

import json

import pytest
import torch

from mlmkit.config import save_config
from mlmkit.engine.config import OptimConfig, TrainConfig
from mlmkit.families import build_config
from mlmkit.token_mlm.data import group_texts
from mlmkit.errors import MlmkitError
from mlmkit.export import export
from mlmkit.token_mlm.masking import TokenMasker
from mlmkit.token_mlm.task import TokenMLMTask
from mlmkit.engine.loop import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_tokenizer, english_texts):
    """A finished (very short) run folder: model/, config.yaml, summary.json, metrics.jsonl."""
    from transformers import BertConfig, BertForMaskedLM

    out = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                                       pad_token_id=tiny_tokenizer.pad_token_id))
    tr = group_texts(english_texts[:80], tiny_tokenizer, 32, progress=False)
    va = group_texts(english_texts[80:100], tiny_tokenizer, 32, progress=False)
    task = TokenMLMTask(model, tiny_tokenizer, tr, va, TokenMasker.from_tokenizer(tiny_tokenizer), batch_size=8)
    save_config(build_config({"data": {"train": ["corpus.txt"]}, "train": {"output_dir": str(out)}}),
                out / "config.yaml")
    train(task, TrainConfig(output_dir=str(out), max_steps=3, eval_every=3, save_every=100, progress=False,
                            show_samples=0, eval_at_start=False), OptimConfig(lr=1e-3), log=lambda s: None)
    return out


def test_encoder_only_export_round_trips_through_automodel(run_dir, tmp_path):
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, pipeline

    out = tmp_path / "exp"
    export(run_dir, out, encoder_only=True, log=lambda s: None)
    mlm = AutoModelForMaskedLM.from_pretrained(run_dir / "model").eval()
    encoder, info = AutoModel.from_pretrained(out, output_loading_info=True)
    encoder.eval()
    assert type(encoder).__name__ == "BertModel"
    assert not info["unexpected_keys"]  # no MLM head in the encoder folder
    assert set(info["missing_keys"]) <= {"pooler.dense.weight", "pooler.dense.bias"}  # never pre-trained
    assert not any(k.startswith("cls.") for k in encoder.state_dict())
    tok = AutoTokenizer.from_pretrained(out)
    enc = tok(["in the beginning god created the heaven"], return_tensors="pt")
    with torch.no_grad():
        want = mlm.base_model(**enc).last_hidden_state
        got = encoder(**enc).last_hidden_state
    torch.testing.assert_close(got, want)
    # the full masked-LM folder sits next to it and gives the same fill-mask scores
    fill = pipeline("fill-mask", model=str(out / "masked-lm"), tokenizer=str(out / "masked-lm"))
    preds = fill("in the beginning [MASK] created the heaven")
    assert len(preds) == 5 and all(0 <= p["score"] <= 1 for p in preds)
    masked = tok("in the beginning [MASK] created the heaven", return_tensors="pt")
    with torch.no_grad():
        probs = mlm(**masked).logits[0, masked["input_ids"][0] == tok.mask_token_id].softmax(-1)[0]
    assert preds[0]["score"] == pytest.approx(float(probs.max()), rel=1e-4)


def test_model_card_has_config_data_steps_and_final_metrics(run_dir, tmp_path):
    out = tmp_path / "exp"
    export(run_dir, out, encoder_only=True, log=lambda s: None)
    summary = json.loads((run_dir / "summary.json").read_text())
    for card in (out / "README.md", out / "masked-lm" / "README.md"):
        text = card.read_text()
        assert text.startswith("---\nlibrary_name: transformers")
        assert "`corpus.txt`" in text  # data
        assert "- step: 3" in text  # steps
        assert f"| eval_loss | {summary['eval_loss']:.4g} |" in text  # final metrics
        assert "## Full configuration" in text and "max_length: 128" in text  # config
    assert "pipeline_tag: feature-extraction" in (out / "README.md").read_text()
    assert "pipeline_tag: fill-mask" in (out / "masked-lm" / "README.md").read_text()


def test_default_export_is_the_masked_lm(run_dir, tmp_path):
    from transformers import AutoModelForMaskedLM

    out = tmp_path / "full"
    export(run_dir / "model", out, log=lambda s: None)  # the model/ folder works as well
    _, info = AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not (out / "masked-lm").exists()
    assert "- step: 3" in (out / "README.md").read_text()


def test_export_errors_are_clear(run_dir, tmp_path):
    with pytest.raises(MlmkitError, match="no such run"):
        export(tmp_path / "missing", tmp_path / "o", log=lambda s: None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MlmkitError, match="not a run folder"):
        export(tmp_path / "empty", tmp_path / "o", log=lambda s: None)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    with pytest.raises(MlmkitError, match="--overwrite"):
        export(run_dir, busy, log=lambda s: None)
    export(run_dir, busy, overwrite=True, log=lambda s: None)
    assert not (busy / "keep.txt").exists() and (busy / "config.json").is_file()


def test_character_model_export_uses_mlmkits_loader(tmp_path):
    from mlmkit.char_mlm.config import CharDataConfig, CharMaskingConfig, CharModelConfig
    from mlmkit.char_mlm.export import load_scratch_encoder
    from mlmkit.char_mlm.masking import encode_domains
    from mlmkit.char_mlm.model import load_char_model
    from mlmkit.char_mlm.task import CharMLMTask

    names = tmp_path / "domains.txt"
    names.write_text("".join(f"{w}{i}.com\n" for i in range(40) for w in ("mail", "shop", "box")))
    task = CharMLMTask(CharDataConfig(train=[str(names)], max_eval_samples=8),
                       CharModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
                       CharMaskingConfig(), batch_size=8)
    run = tmp_path / "run"
    task.save_pretrained(task.model, run / "model")
    out = tmp_path / "exp"
    export(run, out, encoder_only=True, log=lambda s: None)
    encoder = load_scratch_encoder(out)
    full = load_char_model(out / "masked-lm")
    cps, idx, att, *_ = encode_domains(["mail1.com", "shop22.com"], full.alphabet)
    with torch.no_grad():
        torch.testing.assert_close(encoder(idx, att), full.model.encode(cps, idx, att))
    card = (out / "README.md").read_text()
    assert "library_name: mlmkit" in card and "load_scratch_encoder" in card
    export(run, tmp_path / "full", log=lambda s: None)  # without the flag: the full model
    assert load_char_model(tmp_path / "full").alphabet == full.alphabet
    assert "pipeline_tag: fill-mask" in (tmp_path / "full" / "README.md").read_text()


from cli_runner import run_cli as _cli  # noqa: E402


def test_cli_export_show_and_one_line_errors(run_dir, tmp_path, capsys, monkeypatch, english_texts):
    code, _, err = _cli(["export", str(run_dir), str(tmp_path / "e"), "--encoder-only"], capsys, monkeypatch)
    assert code == 0 and (tmp_path / "e" / "masked-lm" / "config.json").is_file() and "AutoModel" in err
    data = tmp_path / "t.txt"
    data.write_text("\n".join(english_texts[:20]) + "\n")
    code, out, _ = _cli(["show", str(tmp_path / "e" / "masked-lm"), "--data", str(data), "-n", "2"], capsys, monkeypatch)
    assert code == 0 and out.count("Original:") >= 2 and "\x1b[" not in out
    for args, needle in ((["export", str(tmp_path / "nope"), str(tmp_path / "o")], "no such run"),
                         (["show", str(tmp_path / "e")], "--data"),
                         (["finetune", str(tmp_path / "e"), "--data", str(data), "--task", "ner"], "classification"),
                         (["plot", str(tmp_path)], "metrics.jsonl")):
        code, _, err = _cli(args, capsys, monkeypatch)
        errors = [l for l in err.splitlines() if l.startswith("error:")]
        assert code == 2 and len(errors) == 1 and needle in errors[0] and "Traceback" not in err, (args, err)
