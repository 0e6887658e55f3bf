import pytest
import torch
from transformers import AutoConfig, AutoModelForMaskedLM

from batches import masked_token_batch
from mlmkit.token_mlm.heads import EncoderForMaskedLM
from mlmkit.token_mlm.model import build_model, masked_logits

SMALL = {
    "bert": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=2, intermediate_size=128),
    "roberta": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=2, intermediate_size=128,
                    max_position_embeddings=130, pad_token_id=1),
    "distilbert": dict(n_layers=2, dim=64, n_heads=2, hidden_dim=128),
    "modernbert": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=2, intermediate_size=128,
                       pad_token_id=0, bos_token_id=2, eos_token_id=3, cls_token_id=2, sep_token_id=3),
}


def _fixed_batch(vocab=500):
    return masked_token_batch(vocab, length=48, pad_from=30)


@pytest.mark.parametrize("arch", list(SMALL))
def test_sparse_loss_equals_transformers_loss(arch):
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(AutoConfig.for_model(arch, vocab_size=500, **SMALL[arch])).eval()
    mb, att = _fixed_batch()
    logits = masked_logits(model, mb.input_ids, att, mb.positions)
    ours = torch.nn.functional.cross_entropy(logits, mb.targets)
    with torch.no_grad():
        ref = model(input_ids=mb.input_ids, attention_mask=att, labels=mb.labels()).loss
    assert abs(ours.item() - ref.item()) < 1e-5


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert", "modernbert"])
def test_build_model_by_name_and_size(arch, tiny_tokenizer):
    model = build_model(arch, "tiny", tiny_tokenizer, max_length=128)
    assert model.config.model_type == arch
    assert model.get_input_embeddings().num_embeddings == len(tiny_tokenizer)


class TinyEncoder(torch.nn.Module):
    """Not a transformers model: an embedding and one transformer layer."""

    def __init__(self, vocab, hidden=32):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, hidden)
        self.layer = torch.nn.TransformerEncoderLayer(hidden, 2, 64, batch_first=True, dropout=0.0)

    def forward(self, input_ids, attention_mask=None):
        pad = None if attention_mask is None else attention_mask == 0
        return self.layer(self.embed(input_ids), src_key_padding_mask=pad)


def test_any_encoder_trains_with_the_mlm_head(tmp_path):
    torch.manual_seed(0)
    enc = TinyEncoder(500)
    model = EncoderForMaskedLM(enc, 32, 500, tie_to=enc.embed)
    mb, att = _fixed_batch()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        logits = masked_logits(model, mb.input_ids, att, mb.positions)
        loss = torch.nn.functional.cross_entropy(logits, mb.targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.5
    # the dense path gives the same loss as the sparse one
    dense = model(mb.input_ids, att, labels=mb.labels())["loss"]
    sparse = torch.nn.functional.cross_entropy(masked_logits(model, mb.input_ids, att, mb.positions), mb.targets)
    assert abs(dense.item() - sparse.item()) < 1e-5
    model.save_pretrained(tmp_path)
    enc2 = TinyEncoder(500)
    again = EncoderForMaskedLM(enc2, 32, 500, tie_to=enc2.embed)
    again.load_weights(tmp_path)
    assert torch.allclose(again(mb.input_ids, att)["logits"], model(mb.input_ids, att)["logits"])


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_last_layer_on_masked_positions_only_matches_the_full_layer(arch):
    """BERT family: the last layer runs on the masked positions only; logits and every gradient
    equal the full forward's (also for positions given out of row order)."""
    from mlmkit.token_mlm.model import _bert_like_layers

    torch.manual_seed(0)
    cfg = AutoConfig.for_model(arch, vocab_size=500, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                               **SMALL[arch])
    model = AutoModelForMaskedLM.from_config(cfg).train()
    assert _bert_like_layers(model) is not None  # the fast path is really taken
    mb, att = _fixed_batch()
    pos = mb.positions.flip(0)
    grads = []
    for last_layer in (True, False):
        model.zero_grad()
        logits = masked_logits(model, mb.input_ids, att, pos, last_layer=last_layer)
        torch.nn.functional.cross_entropy(logits, mb.targets.flip(0)).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        if last_layer:
            fast = logits.detach()
        else:
            torch.testing.assert_close(fast, logits.detach(), atol=1e-5, rtol=1e-5)
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-5, rtol=1e-4, msg=n)


def test_last_layer_fast_path_under_bf16_autocast():
    """Mixed precision (the GPU default) mixes dtypes inside the layer; the fast path must run
    and stay close to the fp32 logits."""
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(AutoConfig.for_model("bert", vocab_size=500, **SMALL["bert"])).eval()
    mb, att = _fixed_batch()
    ref = masked_logits(model, mb.input_ids, att, mb.positions)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = masked_logits(model, mb.input_ids, att, mb.positions)
    assert low.shape == ref.shape
    assert (low.float().argmax(-1) == ref.argmax(-1)).float().mean() > 0.9


def test_trainer_saves_any_encoder_as_its_final_model(tmp_path, tiny_tokenizer, english_texts):
    """`train(task)` with an `EncoderForMaskedLM` and the default save_final=True writes the
    model folder (it used to crash: the task passed transformers' `safe_serialization=`)."""
    from mlmkit.engine.config import OptimConfig, TrainConfig
    from mlmkit.engine.loop import train
    from mlmkit.token_mlm.data import group_texts
    from mlmkit.token_mlm.masking import TokenMasker
    from mlmkit.token_mlm.task import TokenMLMTask

    torch.manual_seed(0)
    enc = TinyEncoder(len(tiny_tokenizer))
    model = EncoderForMaskedLM(enc, 32, len(tiny_tokenizer), tie_to=enc.embed)
    seqs = group_texts(english_texts[:200], tiny_tokenizer, 32, progress=False)
    task = TokenMLMTask(model, tiny_tokenizer, seqs, seqs, TokenMasker.from_tokenizer(tiny_tokenizer), batch_size=8)
    summary = train(task, TrainConfig(output_dir=str(tmp_path), max_steps=2, save_every=0, progress=False),
                    OptimConfig(lr=1e-3), log=lambda s: None)
    folder = tmp_path / "model"
    assert summary["model_dir"] == str(folder) and (folder / "model.safetensors").is_file()
    enc2 = TinyEncoder(len(tiny_tokenizer))
    again = EncoderForMaskedLM(enc2, 32, len(tiny_tokenizer), tie_to=enc2.embed)
    again.load_weights(folder)
    for a, b in zip(again.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickled_weights_are_refused_and_never_unpickled(tmp_path, tiny_bert, writer):
    """A model folder whose weights are a pickle that runs code when loaded: the weights-only
    loader refuses it, names what it refused and the key that would allow it, and the code never
    runs."""
    import pickle

    from mlmkit.errors import MlmkitError
    from mlmkit.token_mlm.model import load_model

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    folder = tmp_path / "evil"
    tiny_bert.config.save_pretrained(folder)
    if writer == "pickle":
        with open(folder / "pytorch_model.bin", "wb") as f:
            pickle.dump({"x": Evil()}, f)
    else:
        torch.save({"x": Evil()}, folder / "pytorch_model.bin")
    with pytest.raises(MlmkitError, match=r"pickled weights \(\*\.bin\) hold more than tensors \(.+\).*"
                                          r"model\.allow_pickle=true"):
        load_model(str(folder))
    assert not marker.exists()
    with pytest.raises(MlmkitError, match="no such model folder: ./does/not/exist"):
        load_model("./does/not/exist")


def test_a_model_folder_of_pickled_weights_loads_as_transformers_loads_it(tmp_path, tiny_bert, tiny_tokenizer,
                                                                         capsys, monkeypatch):
    """A folder holding only `pytorch_model.bin` (what `save_pretrained(safe_serialization=False)`
    wrote before transformers 5, which writes safetensors whatever it is told: so the file is
    written here as transformers 4 wrote it, `torch.save(model.state_dict())`): `predict`, `eval`
    and `--init-from` load it, and its top-5 fills are `pipeline("fill-mask")`'s."""
    import json

    from transformers import pipeline

    from cli_runner import run_cli
    from mlmkit.token_mlm.model import load_model

    torch.manual_seed(1)  # logits far apart: the two paths' last-bit differences cannot swap two fills
    tiny_bert.cls.predictions.bias.data = torch.randn_like(tiny_bert.cls.predictions.bias) * 4
    folder = tmp_path / "bin-only"
    tiny_bert.config.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    torch.save(tiny_bert.state_dict(), folder / "pytorch_model.bin")
    assert sorted(p.name for p in folder.glob("*.bin")) == ["pytorch_model.bin"]
    assert not list(folder.glob("*.safetensors"))
    text = "and god said, let there be [MASK]."
    code, out, err = run_cli(["predict", str(folder), text, "--json", "-k", "5"], capsys, monkeypatch)
    assert code == 0, err
    ours = json.loads(out)["masks"][0]
    ref = pipeline("fill-mask", model=str(folder), top_k=5)(text)
    assert [f["token_id"] for f in ours] == [r["token"] for r in ref]
    assert all(abs(a["score"] - b["score"]) < 1e-5 for a, b in zip(ours, ref))
    data = tmp_path / "d.txt"
    data.write_text("and god said, let there be light.\nand there was light.\n")
    code, out, err = run_cli(["eval", str(folder), "--data", str(data)], capsys, monkeypatch)
    assert code == 0 and json.loads(out)["eval_targets"] > 0, err
    logs = []
    loaded = load_model(str(folder), init=True, log=logs.append)  # --init-from
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), tiny_bert.state_dict().values()))
    assert "tensors loaded" in logs[0]
