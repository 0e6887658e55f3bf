import atexit
import os
import shutil
import tempfile
from importlib import resources

import pytest
import torch

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download
# Prepared token data goes to a folder of this test session, never to ~/.cache, and the folder
# goes when the session ends (only in the process that made it: a forked child exits too).
if "MLMKIT_CACHE" not in os.environ:
    _cache, _owner = tempfile.mkdtemp(prefix="mlmkit-test-cache-"), os.getpid()
    os.environ["MLMKIT_CACHE"] = _cache
    atexit.register(lambda: os.getpid() == _owner and shutil.rmtree(_cache, ignore_errors=True))
# Tiny models on a small (possibly shared) CPU: one intra-op thread is as fast or faster, and
# immune to spinning threads fighting over a busy second core.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def english_texts() -> list[str]:
    path = resources.files("mlmkit") / "samples" / "english.txt"
    return [l for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]


@pytest.fixture(scope="session")
def tiny_tokenizer(english_texts):
    from mlmkit.token_mlm.tokenizers import train_tokenizer

    return train_tokenizer(english_texts[:3000], kind="wordpiece", vocab_size=1000, show_progress=False)


@pytest.fixture()
def tiny_bert(tiny_tokenizer):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=64, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=128, max_position_embeddings=128,
                     pad_token_id=tiny_tokenizer.pad_token_id)
    return BertForMaskedLM(cfg)


@pytest.fixture()
def tiny_model_dir(tmp_path, tiny_bert, tiny_tokenizer):
    """`tiny_bert` + `tiny_tokenizer` saved as a Hugging Face model folder."""
    path = tmp_path / "model"
    tiny_bert.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path
