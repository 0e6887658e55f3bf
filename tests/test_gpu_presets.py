"""The one-GPU presets `bert-base-gpu` and `modernbert-base-gpu`: they resolve to what they promise,
build a base-size model of the right shape (on the meta device: nothing allocated), and train
for two steps on this CPU once shrunk (tiny model, fp32, no compile)."""

from __future__ import annotations

import json

import pytest
import torch

from mlmkit.config import load_preset, preset_names
from mlmkit.families import resolve_config
from mlmkit.token_mlm.model import build_model

GPU_PRESETS = {  # preset -> (layers, hidden, FFN, millions of parameters)
    "bert-base-gpu": (12, 768, 3072, 111.2),
    "modernbert-base-gpu": (22, 768, 1152, 149.7),
}


class _Vocabulary:
    """What build_model reads of a tokenizer: its size and special ids (no tokenizer trained)."""

    pad_token_id, cls_token_id, sep_token_id, mask_token_id = 0, 2, 3, 4
    bos_token_id = eos_token_id = None

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


@pytest.mark.parametrize("preset", list(GPU_PRESETS))
def test_gpu_preset_resolves_to_its_recipe(preset):
    assert preset in preset_names()
    assert "GPU" in load_preset(preset)["description"]
    cfg = resolve_config(preset, None, [])
    assert (cfg.task, cfg.model.size, cfg.model.attn_implementation) == ("token", "base", "sdpa")
    assert (cfg.train.precision, cfg.train.compile) == ("bf16", True)
    assert (cfg.data.max_length, cfg.data.mode) == (512, "group_texts")
    assert (cfg.optim.schedule, cfg.optim.decay_shape) == ("wsd", "1-sqrt")
    assert cfg.data.train is None  # the user's corpus: --data


@pytest.mark.parametrize("preset", list(GPU_PRESETS))
def test_gpu_preset_builds_a_base_size_model_on_the_meta_device(preset):
    layers, hidden, ffn, millions = GPU_PRESETS[preset]
    cfg = resolve_config(preset, None, [])
    m = cfg.model
    with torch.device("meta"):
        model = build_model(m.arch, m.size, _Vocabulary(cfg.tokenizer.vocab_size), cfg.data.max_length, m.overrides,
                            m.attn_implementation)
    c = model.config
    assert (c.model_type, c.num_hidden_layers, c.hidden_size, c.intermediate_size) == (m.arch, layers, hidden, ffn)
    assert (c.vocab_size, c._attn_implementation) == (cfg.tokenizer.vocab_size, "sdpa")
    assert c.vocab_size % 64 == 0
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, abs=0.1)
    assert all(p.device.type == "meta" for p in model.parameters())


@pytest.mark.parametrize("preset", list(GPU_PRESETS))
def test_gpu_preset_trains_two_steps_on_this_cpu_when_shrunk(preset, tmp_path, tiny_tokenizer, english_texts):
    from mlmkit.api import train_run

    data = tmp_path / "text.txt"
    data.write_text("\n".join(english_texts[:400]))
    tok = tmp_path / "tok"
    tiny_tokenizer.save_pretrained(tok)
    summary = train_run(preset, data=[str(data)], output_dir=str(tmp_path / "run"), max_steps=2, log=lambda s: None,
                        overrides=["model.size=tiny", "model.overrides={}", "data.max_length=64", "train.batch_size=4",
                                   "train.precision=fp32", "train.compile=false", "train.data_workers=0",
                                   "train.progress=false", f"tokenizer.name_or_path={tok}",
                                   "data.max_eval_samples=16"])
    assert summary["step"] == 2
    lrs = [r["lr"] for r in map(json.loads, open(tmp_path / "run" / "metrics.jsonl")) if "lr" in r]
    assert lrs[0] == pytest.approx(resolve_config(preset, None, []).optim.lr * 1e-3)  # the warmup's first step
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved["model_type"] == resolve_config(preset, None, []).model.arch
