"""`mlmkit export`: the encoder round-trips through AutoModel, the masked LM through
pipeline("fill-mask"), and the model card carries the run's facts."""

import json

import pytest
import torch
import yaml

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
        assert "## Reproduce" in text and "max_length: 128" in text  # config, and the command
        assert (card.parent / "training_config.yaml").read_text() == (run_dir / "config.yaml").read_text()
        meta = yaml.safe_load(text.split("---")[1])
        assert meta["library_name"] == "transformers" and "mlmkit" in meta["tags"]
        metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
        assert metrics["loss"] == pytest.approx(summary["eval_loss"], abs=1e-6)
        assert metrics["perplexity"] == pytest.approx(summary["eval_perplexity"], rel=1e-6)
    assert "pipeline_tag: feature-extraction" in (out / "README.md").read_text()
    assert "pipeline_tag: fill-mask" in (out / "masked-lm" / "README.md").read_text()


def test_card_metadata_names_the_base_model_hub_datasets_and_licence():
    from mlmkit.report.cards import card_metadata

    facts = {"config": {"model": {"init_from": "distilbert-base-uncased"},
                        "data": {"train": ["imdb", "user/reviews", "data/local.txt", "mlmkit:english"]}},
             "summary": {}, "final": {}}
    meta = card_metadata(facts, kind="masked-lm", model_info={"hf": True}, license="apache-2.0")
    assert meta.base_model == "distilbert-base-uncased" and meta.datasets == ["imdb", "user/reviews"]
    assert meta.license == "apache-2.0" and meta.pipeline_tag == "fill-mask"
    facts["config"]["model"]["init_from"] = "./runs/mine/model"  # a local folder is no Hub base model
    assert card_metadata(facts, kind="encoder", model_info={}, license=None).base_model is None


def test_every_checkpoint_is_a_loadable_model_folder(run_dir, tmp_path, capsys, monkeypatch, english_texts):
    from transformers import AutoModelForMaskedLM

    ckpt = run_dir / "checkpoints" / "step-00000003"
    model, info = AutoModelForMaskedLM.from_pretrained(ckpt, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    final = AutoModelForMaskedLM.from_pretrained(run_dir / "model")
    for (name, a), (_, b) in zip(model.state_dict().items(), final.state_dict().items()):
        assert torch.equal(a, b), name  # step 3 is the last step: the final weights
    data = tmp_path / "held.txt"
    data.write_text("\n".join(english_texts[100:140]) + "\n")
    scores = []
    for model_arg in (str(ckpt), str(run_dir / "model")):
        code, out, err = _cli(["eval", model_arg, "--data", str(data), "--max-length", "32"], capsys, monkeypatch)
        assert code == 0, err
        scores.append(json.loads(out)["eval_loss"])
    assert scores[0] == scores[1]
    exported = export(run_dir, tmp_path / "at3", step=3, license="mit", log=lambda s: None)
    card = (exported / "README.md").read_text()
    assert "license: mit" in card and "- step: 3" in card and "intermediate step" in card
    with pytest.raises(MlmkitError, match=r"no checkpoint of step 7 \(it has: 3\)"):
        export(run_dir, tmp_path / "at7", step=7, log=lambda s: None)


def test_push_to_hub_uploads_the_folder_and_failures_are_one_line(run_dir, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw)))
    code, _, err = _cli(["export", str(run_dir), str(tmp_path / "p"), "--push-to-hub", "me/tiny", "--private"],
                        capsys, monkeypatch)
    assert code == 0, err
    assert calls[0] == ("create", "me/tiny", {"repo_type": "model", "private": True, "exist_ok": True})
    assert calls[1][1]["folder_path"] == str(tmp_path / "p") and calls[1][1]["repo_id"] == "me/tiny"
    assert "https://huggingface.co/me/tiny" in err

    def refuse(self, **kw):
        raise OSError("401 Client Error: Unauthorized\nInvalid token")
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", refuse)
    code, _, err = _cli(["export", str(run_dir), str(tmp_path / "q"), "--push-to-hub", "me/tiny"], capsys, monkeypatch)
    errors = [l for l in err.splitlines() if l.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Unauthorized" in errors[0] and "folder is complete" in errors[0]
    assert (tmp_path / "q" / "config.json").is_file()


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
    for overwrite in (False, True):  # files mlmkit did not write are never cleared
        with pytest.raises(MlmkitError, match="files mlmkit did not write"):
            export(run_dir, busy, overwrite=overwrite, log=lambda s: None)
    assert (busy / "keep.txt").read_text() == "x"
    done = tmp_path / "done"
    export(run_dir, done, log=lambda s: None)
    with pytest.raises(MlmkitError, match="holds an exported model .* --overwrite"):
        export(run_dir, done, log=lambda s: None)
    (done / "stale.txt").write_text("from the earlier export")
    export(run_dir, done, overwrite=True, log=lambda s: None)  # an earlier export is replaced
    assert not (done / "stale.txt").exists() and (done / "config.json").is_file()


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
                         (["finetune", str(tmp_path / "e"), "--data", str(data), "--set", "task=ner"], "classification"),
                         (["plot", str(tmp_path)], "metrics.jsonl")):
        code, _, err = _cli(args, capsys, monkeypatch)
        errors = [l for l in err.splitlines() if l.startswith("error:")]
        assert code == 2 and len(errors) == 1 and needle in errors[0] and "Traceback" not in err, (args, err)
