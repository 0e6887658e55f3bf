"""`mlmkit predict` with a token model: a text that cannot be filled gets its own error line and
does not stop the others; the command exits 2 after printing everything."""

import json

from cli_runner import run_cli

from mlmkit.token_mlm.predict import fill_mask, predict_texts


def test_a_text_without_a_mask_is_one_error_among_the_fills(tiny_model_dir):
    texts = ["and god said, let there be [MASK].", "no mask in this one", "the [MASK] of the [MASK]",
             "word " * 600 + "[MASK]"]
    results = predict_texts(str(tiny_model_dir), texts, top_k=3)
    assert [r["input"] for r in results] == texts
    assert [sorted(r) for r in results] == [["input", "masks"], ["error", "input"], ["input", "masks"],
                                            ["error", "input"]]
    assert "no mask token in the text" in results[1]["error"]
    assert "every mask is past the model's limit of 512 tokens" in results[3]["error"]
    assert len(results[0]["masks"]) == 1 and len(results[2]["masks"]) == 2
    assert all(len(row) == 3 for r in (results[0], results[2]) for row in r["masks"])


def test_predict_prints_each_error_in_place_and_exits_2(tiny_model_dir, capsys, monkeypatch, tmp_path):
    f = tmp_path / "texts.txt"
    f.write_text("the [MASK] said.\nno mask here\nand [MASK] was light.\n")
    code, out, err = run_cli(["predict", str(tiny_model_dir), "--file", str(f), "--json", "-k", "2"],
                             capsys, monkeypatch)
    lines = [json.loads(l) for l in out.splitlines()]
    assert [l["input"] for l in lines] == ["the [MASK] said.", "no mask here", "and [MASK] was light."]
    assert "masks" in lines[0] and "masks" in lines[2] and lines[1]["error"].startswith("no mask token in the text")
    assert code == 2 and err.strip() == "error: 1 of 3 inputs could not be filled (see their error lines)"
    code, out, err = run_cli(["predict", str(tiny_model_dir), "no mask here", "the [MASK] said."], capsys, monkeypatch)
    assert code == 2 and "1 of 2 inputs could not be filled" in err
    assert out.splitlines()[0] == "no mask here" and out.splitlines()[1].startswith("  error: no mask token in the text")
    assert out.splitlines()[2] == "the [MASK] said." and len(out.splitlines()) == 3 + 5
    code, out, err = run_cli(["predict", str(tiny_model_dir), "the [MASK] said.", "-k", "1"], capsys, monkeypatch)
    assert code == 0 and err == "" and len(out.splitlines()) == 2


def test_a_top_k_over_the_vocabulary_gives_all_of_it(tiny_bert, tiny_tokenizer):
    fills = fill_mask(tiny_bert, tiny_tokenizer, "the [MASK] said.", top_k=5000)
    assert len(fills[0]) == len(tiny_tokenizer) < 5000


def test_a_tokenizer_without_a_mask_token_is_one_error_for_the_batch(tiny_model_dir):
    import pytest

    from mlmkit.errors import MlmkitError

    cfg_file = tiny_model_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg.pop("mask_token", None)
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(MlmkitError, match="has no mask token"):  # the model's fault: one error, not one per text
        predict_texts(str(tiny_model_dir), ["a [MASK] b", "c [MASK] d"])
