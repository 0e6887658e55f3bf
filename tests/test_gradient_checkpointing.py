"""`train.gradient_checkpointing`: the same loss and gradients, with every encoder layer run again
in the backward pass. Counted with a pre-hook on an early sub-module of each layer: the layer's
own hooks stay outside transformers' checkpoint, and the recomputation stops once it has made the
last saved tensor, before the layer's last sub-module has run."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForMaskedLM

from mlmkit.char_mlm.config import CharDataConfig, CharMaskingConfig, CharModelConfig
from mlmkit.char_mlm.data import derive_alphabet
from mlmkit.char_mlm.masking import make_batch
from mlmkit.char_mlm.model import CharMLMModel
from mlmkit.char_mlm.task import SpanTask
from mlmkit.engine.config import OptimConfig, TrainConfig
from mlmkit.engine.draws import example_keys
from mlmkit.engine.loop import train
from mlmkit.errors import ConfigError
from mlmkit.token_mlm.data import group_texts
from mlmkit.token_mlm.heads import EncoderForMaskedLM
from batches import masked_token_batch
from mlmkit.token_mlm.masking import TokenMasker
from mlmkit.token_mlm.model import SparseMLM
from mlmkit.token_mlm.task import TokenMLMTask

TINY = {  # arch -> config kwargs, and the sub-module of a layer whose calls are counted
    "bert": (dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=2, intermediate_size=128), "intermediate"),
    "modernbert": (dict(num_hidden_layers=3, hidden_size=64, num_attention_heads=2, intermediate_size=96,
                        pad_token_id=0, bos_token_id=2, eos_token_id=3, cls_token_id=2, sep_token_id=3,
                        embedding_dropout=0.1, mlp_dropout=0.1), "attn"),
}


def _count_calls(modules) -> list[int]:
    """A call counter per module (forward pre-hooks); the list fills as they run."""
    counts = [0] * len(modules)
    for i, m in enumerate(modules):
        m.register_forward_pre_hook(lambda mod, args, i=i: counts.__setitem__(i, counts[i] + 1))
    return counts


def _token_batch(vocab=500):
    return masked_token_batch(vocab, length=40, pad_from=25)


def _loss_grads_calls(model: SparseMLM, sub: str, checkpointing: bool):
    model = copy.deepcopy(model).train()
    if checkpointing:
        model.gradient_checkpointing_enable()
    calls = _count_calls([getattr(layer, sub) for layer in model.model.base_model.encoder.layer]
                         if hasattr(model.model.base_model, "encoder")
                         else [getattr(layer, sub) for layer in model.model.base_model.layers])
    mb, att = _token_batch()
    torch.manual_seed(1)  # dropout: the recomputation must draw the same masks
    loss = torch.nn.functional.cross_entropy(model(mb.input_ids, att, mb.positions), mb.targets)
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}, calls


@pytest.mark.parametrize("arch", list(TINY))
def test_token_model_recomputes_every_layer_with_the_same_loss_and_gradients(arch):
    """BERT takes mlmkit's sparse path (layers called one by one, the last on the masked positions
    only); ModernBERT the encoder's own forward. Both recompute every layer once per step."""
    kw, sub = TINY[arch]
    torch.manual_seed(0)
    model = SparseMLM(AutoModelForMaskedLM.from_config(AutoConfig.for_model(arch, vocab_size=500, **kw)))
    loss0, grads0, calls0 = _loss_grads_calls(model, sub, checkpointing=False)
    loss1, grads1, calls1 = _loss_grads_calls(model, sub, checkpointing=True)
    n_layers = kw["num_hidden_layers"]
    assert calls0 == [1] * n_layers
    assert calls1 == [2] * n_layers  # forward, then again in the backward pass
    torch.testing.assert_close(loss1, loss0)
    assert grads0.keys() == grads1.keys()
    for name in grads0:
        torch.testing.assert_close(grads1[name], grads0[name], msg=name)


def test_the_engine_turns_it_on_and_trains_the_same(tmp_path, tiny_tokenizer, english_texts):
    """`train.gradient_checkpointing: true` through the training loop: the same losses step for
    step, twice the layer calls."""
    seqs = group_texts(english_texts[:200], tiny_tokenizer, 32, progress=False)
    kw, _ = TINY["bert"]
    torch.manual_seed(0)
    base = AutoModelForMaskedLM.from_config(AutoConfig.for_model("bert", vocab_size=len(tiny_tokenizer), **kw))
    losses, calls = {}, {}
    for on in (False, True):
        model = copy.deepcopy(base)
        counts = _count_calls([layer.intermediate for layer in model.bert.encoder.layer])
        task = TokenMLMTask(model, tiny_tokenizer, seqs, None, TokenMasker.from_tokenizer(tiny_tokenizer),
                            batch_size=4, seed=1)
        cfg = TrainConfig(output_dir=str(tmp_path / str(on)), max_steps=3, log_every=1, save_every=0,
                          eval_at_start=False, progress=False, gradient_checkpointing=on)
        train(task, cfg, OptimConfig(lr=1e-3), save_final=False, log=lambda s: None)
        metrics = [json.loads(line) for line in open(tmp_path / str(on) / "metrics.jsonl")]
        losses[on] = [r["loss"] for r in metrics if "loss" in r]
        calls[on] = list(counts)
    assert calls == {False: [3, 3], True: [6, 6]}
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


NAMES = ["mailbox.com", "webshop.de", "fastzip.io", "cloudnet.org", "mytemp.net", "godata.com",
         "boxmail.io", "zipweb.org"]


def _char_model(**kw):
    cfg = CharModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, dropout=0.1, **kw)
    alphabet = derive_alphabet(NAMES)
    torch.manual_seed(0)
    return CharMLMModel(cfg, len(alphabet), 34, 8), cfg, alphabet


@pytest.mark.parametrize("kw", [{}, {"downsampling_rate": 2}, {"arch": "cloze"}, {"arch": "canine"}],
                         ids=["scratch", "scratch-downsampled", "cloze", "canine"])
def test_char_model_recomputes_its_encoder_layers_with_the_same_loss_and_gradients(kw):
    model, cfg, alphabet = _char_model(**kw)
    batch = make_batch(NAMES, alphabet, CharMaskingConfig(), example_keys(7, torch.arange(len(NAMES))))
    results = []
    for on in (False, True):
        m = copy.deepcopy(model).train()
        if on:
            m.gradient_checkpointing_enable()
        ffn = [x.linear1 for x in m.encoder.modules() if isinstance(x, torch.nn.TransformerEncoderLayer)] or \
            [x.intermediate for x in m.encoder.modules() if type(x).__name__ == "CanineLayer"]
        calls = _count_calls(ffn)
        task = SpanTask(m, alphabet, CharDataConfig(), cfg, CharMaskingConfig(), eval_domains=[])
        torch.manual_seed(1)
        out = task.forward(m, batch)
        out.loss.backward()
        results.append((out.loss.detach(), {n: p.grad for n, p in m.named_parameters() if p.grad is not None},
                        calls))
    (loss0, grads0, calls0), (loss1, grads1, calls1) = results
    assert calls0 and calls0 == [1] * len(calls0)
    assert calls1 == [2] * len(calls0)
    torch.testing.assert_close(loss1, loss0)
    assert grads0.keys() == grads1.keys()
    for name in grads0:
        torch.testing.assert_close(grads1[name], grads0[name], msg=name)


class StackEncoder(torch.nn.Module):
    """Not a transformers model: an embedding and a stack of two transformer layers."""

    def __init__(self, vocab, hidden=32):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, hidden)
        self.layers = torch.nn.ModuleList(torch.nn.TransformerEncoderLayer(hidden, 2, 64, batch_first=True)
                                          for _ in range(2))

    def forward(self, input_ids, attention_mask=None):
        h = self.embed(input_ids)
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=attention_mask == 0)
        return h


def test_any_encoder_with_a_layer_stack_is_checkpointed_and_saves_the_same_names(tmp_path):
    torch.manual_seed(0)
    enc = StackEncoder(500)
    model = SparseMLM(EncoderForMaskedLM(enc, 32, 500, tie_to=enc.embed))
    names = set(model.model.state_dict())
    results = []
    for on in (False, True):
        m = copy.deepcopy(model).train()
        if on:
            m.gradient_checkpointing_enable()
        calls = _count_calls([layer.linear1 for layer in m.modules() if isinstance(layer, torch.nn.TransformerEncoderLayer)])
        mb, att = _token_batch()
        torch.manual_seed(1)
        loss = torch.nn.functional.cross_entropy(m(mb.input_ids, att, mb.positions), mb.targets)
        loss.backward()
        results.append((loss.detach(), calls, m))
    assert results[0][1] == [1, 1] and results[1][1] == [2, 2]
    torch.testing.assert_close(results[1][0], results[0][0])
    wrapped = results[1][2].model
    assert set(wrapped.state_dict()) == names  # checkpoints and the saved model keep the names
    wrapped.save_pretrained(tmp_path)
    enc2 = StackEncoder(500)
    again = EncoderForMaskedLM(enc2, 32, 500, tie_to=enc2.embed)
    again.load_weights(tmp_path)
    for name, value in again.state_dict().items():
        assert torch.equal(value, wrapped.state_dict()[name]), name


def test_models_that_cannot_recompute_are_one_line_errors_naming_the_key():
    class Flat(torch.nn.Module):  # one layer, no stack: nothing to checkpoint
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(50, 16)

        def forward(self, input_ids, attention_mask=None):
            return self.embed(input_ids)

    with pytest.raises(ConfigError, match=r"^config key 'train.gradient_checkpointing': the encoder Flat has no "):
        SparseMLM(EncoderForMaskedLM(Flat(), 16, 50)).gradient_checkpointing_enable()
    albert = AutoModelForMaskedLM.from_config(AutoConfig.for_model(
        "albert", vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        embedding_size=8))
    with pytest.raises(ConfigError, match=r"^config key 'train.gradient_checkpointing': AlbertForMaskedLM does not "
                                          r"support") as e:
        SparseMLM(albert).gradient_checkpointing_enable()
    assert "\n" not in str(e.value)
    from mlmkit.engine.loop import enable_gradient_checkpointing

    with pytest.raises(ConfigError, match=r"^config key 'train.gradient_checkpointing': Linear cannot recompute"):
        enable_gradient_checkpointing(torch.nn.Linear(2, 2))


def test_an_architecture_without_it_stops_the_run_before_its_data_is_prepared(tmp_path, tiny_tokenizer, monkeypatch):
    from mlmkit.families import build_task, resolve_config
    from mlmkit.token_mlm import build as token_build

    data = tmp_path / "text.txt"
    data.write_text("one line of text\n" * 50)
    tok = tmp_path / "tok"
    tiny_tokenizer.save_pretrained(tok)
    monkeypatch.setattr(token_build, "_prepared", lambda *a, **k: pytest.fail("the data was prepared"))
    cfg = resolve_config(None, None, [f"data.train=[{data}]", f"tokenizer.name_or_path={tok}", "model.arch=albert",
                                      "train.gradient_checkpointing=true", f"train.output_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match=r"^config key 'train.gradient_checkpointing': AlbertForMaskedLM cannot "
                                          r"recompute its activations"):
        build_task(cfg, log=lambda s: None, progress=False)
