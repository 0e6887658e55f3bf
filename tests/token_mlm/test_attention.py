"""`model.attn_implementation`: the kernel reaches new and loaded models, eager and sdpa agree, and
a kernel the model or the machine lacks is one line naming the key, before any work."""

from __future__ import annotations

import pytest
import torch

from mlmkit.char_mlm.config import CharModelConfig
from mlmkit.errors import ConfigError
from mlmkit.families import build_task, resolve_config
from mlmkit.token_mlm.model import SparseMLM, build_model, check_attention

TINY = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


def _batch(vocab: int):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (3, 24), generator=g)
    att = torch.ones_like(ids)
    att[2, 15:] = 0  # padding: the kernels must mask it alike
    positions = torch.tensor([1, 4, 30, 33, 50, 60])
    return ids, att, positions, torch.randint(5, vocab, (6,), generator=g)


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_eager_and_sdpa_give_the_same_loss(tiny_tokenizer, sparse):
    ids, att, positions, targets = _batch(len(tiny_tokenizer))
    losses = {}
    for impl in ("eager", "sdpa"):
        torch.manual_seed(0)
        model = build_model("bert", "tiny", tiny_tokenizer, 128, TINY, attn_implementation=impl)
        assert model.config._attn_implementation == impl
        logits = SparseMLM(model, sparse=sparse).train()(ids, att, positions)
        losses[impl] = torch.nn.functional.cross_entropy(logits, targets)
    torch.testing.assert_close(losses["eager"], losses["sdpa"], atol=1e-5, rtol=1e-5)


def test_auto_is_sdpa_where_the_architecture_has_it_else_eager(tiny_tokenizer):
    assert build_model("bert", "tiny", tiny_tokenizer, 128).config._attn_implementation == "sdpa"
    small = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 32}
    deberta = build_model("deberta-v2", "tiny", tiny_tokenizer, 128, small)
    assert deberta.config._attn_implementation == "eager"
    with pytest.raises(ConfigError, match=r"^config key 'model.attn_implementation': deberta-v2 cannot use sdpa "
                                          r"\(DebertaV2ForMaskedLM does not support") as e:
        build_model("deberta-v2", "tiny", tiny_tokenizer, 128, small, attn_implementation="sdpa")
    assert "\n" not in str(e.value)


def test_flash_attention_on_this_machine_is_a_clear_error(tiny_tokenizer):
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine: flash_attention_2 may be usable here")
    with pytest.raises(ConfigError, match=r"^config key 'model.attn_implementation': flash_attention_2 runs on "
                                          r"CUDA GPUs only, and this run's device is cpu \(use sdpa\)$"):
        check_attention("flash_attention_2", "auto")
    # past the device check (e.g. a GPU machine), the missing package is named
    with pytest.raises(ConfigError, match=r"^config key 'model.attn_implementation': flash_attention_2 needs the "
                                          r"flash-attn package, which is not installed"):
        build_model("bert", "tiny", tiny_tokenizer, 128, attn_implementation="flash_attention_2")
    for other in ("sdpa", "eager", "auto"):
        check_attention(other, "cpu")


def test_the_config_key_reaches_new_and_loaded_models(tmp_path, tiny_tokenizer, tiny_model_dir, english_texts):
    data = tmp_path / "text.txt"
    data.write_text("\n".join(english_texts[:300]))
    tok = tmp_path / "tok"
    tiny_tokenizer.save_pretrained(tok)
    common = [f"data.train=[{data}]", f"tokenizer.name_or_path={tok}", "data.max_length=64",
              f"train.output_dir={tmp_path / 'run'}", "train.device=cpu"]
    new = build_task(resolve_config(None, None, [*common, "model.attn_implementation=eager"]),
                     log=lambda s: None, progress=False)
    assert new.model.model.config._attn_implementation == "eager"
    assert AutoConfigSaved(tiny_model_dir) == "sdpa"  # the folder's model loads with sdpa by default
    loaded = build_task(resolve_config(None, None, [*common, f"model.init_from={tiny_model_dir}",
                                                    "model.attn_implementation=eager"]),
                        log=lambda s: None, progress=False)
    assert loaded.model.model.config._attn_implementation == "eager"
    # flash_attention_2 stops the run before its tokenizer or data are touched
    with pytest.raises(ConfigError, match="flash_attention_2"):
        build_task(resolve_config(None, None, [f"data.train=[{tmp_path / 'missing.txt'}]",
                                               "train.device=cpu", "model.attn_implementation=flash_attention_2"]),
                   log=lambda s: None, progress=False)


def AutoConfigSaved(folder) -> str:
    from transformers import AutoModelForMaskedLM

    return AutoModelForMaskedLM.from_pretrained(folder).config._attn_implementation


@pytest.mark.parametrize("arch, value, ok", [
    ("scratch", "auto", True), ("scratch", "sdpa", True), ("scratch", "eager", False),
    ("scratch", "flash_attention_2", False), ("cloze", "sdpa", True), ("cloze", "eager", False),
    ("canine", "auto", True), ("canine", "eager", True), ("canine", "sdpa", False),
])
def test_character_encoders_accept_only_the_attention_they_have(arch, value, ok):
    if ok:
        CharModelConfig(arch=arch, attn_implementation=value)
        return
    with pytest.raises(ConfigError, match=rf"^config key 'model.attn_implementation': the {arch} encoder's "
                                          r"attention is (sdpa|eager) only"):
        resolve_config(None, None, ["task=char", f"model.arch={arch}", f"model.attn_implementation={value}"])
