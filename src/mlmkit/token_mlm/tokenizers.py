"""Training a tokenizer from scratch, and loading an existing one for masked-LM pre-training.

Two recipes, matching the two model families users start from:

- ``wordpiece``: BERT-style (``[PAD]`` = 0, ``[UNK]``, ``[CLS]``, ``[SEP]``, ``[MASK]``; lowercasing
  optional; ``##`` continuation pieces).
- ``bpe``: RoBERTa-style byte-level BPE (``<s>`` = 0, ``<pad>``, ``</s>``, ``<unk>``, ``<mask>``).
  Byte-level means there is no unknown character: every string round-trips.

Both are returned as `transformers.PreTrainedTokenizerFast`, so ``save_pretrained`` /
``AutoTokenizer.from_pretrained``, ``word_ids()`` (needed for whole-word masking) and the
fill-mask pipeline all work exactly as for a hub tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from ..errors import MlmkitError
from ..util import is_path_spec, one_line

if TYPE_CHECKING:  # importing transformers costs seconds; only do it when a function runs
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

__all__ = ["train_tokenizer", "load_tokenizer", "TOKENIZER_KINDS"]

TOKENIZER_KINDS = ("wordpiece", "bpe")
_WORDPIECE_SPECIALS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]",
                       "sep_token": "[SEP]", "mask_token": "[MASK]"}
_BPE_SPECIALS = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>",
                 "unk_token": "<unk>", "mask_token": "<mask>"}
_TRAIN_BATCH = 1000


def train_tokenizer(
    texts: Iterable[str],
    kind: str = "wordpiece",
    vocab_size: int = 8192,
    min_frequency: int = 2,
    lowercase: bool = True,
    model_max_length: int = 512,
    show_progress: bool = True,
) -> PreTrainedTokenizerFast:
    """Train a ``wordpiece`` (BERT-like) or ``bpe`` (RoBERTa-like byte-level) tokenizer on ``texts``.

    ``texts`` may be any iterable (a generator over a large corpus is fine: it is consumed once,
    in batches). ``lowercase`` lowercases the text for both kinds (pass ``False`` for a cased
    RoBERTa-like BPE).
    """
    if kind not in TOKENIZER_KINDS:
        raise MlmkitError(f"unknown tokenizer kind {kind!r}; expected one of {', '.join(TOKENIZER_KINDS)}")
    if vocab_size < 1:
        raise MlmkitError(f"tokenizer vocab_size must be positive, got {vocab_size}")
    build = _build_wordpiece if kind == "wordpiece" else _build_bpe
    seen = [0]
    backend, specials = build(_batched(texts, seen), vocab_size, min_frequency, lowercase, show_progress)
    if seen[0] == 0:
        raise MlmkitError("cannot train a tokenizer: no texts were given")

    from transformers import PreTrainedTokenizerFast

    # No token_type_ids: MLM pre-training uses single segments, and models without segment
    # embeddings (DistilBERT, RoBERTa-style) reject the argument.
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_max_length=model_max_length,
        model_input_names=["input_ids", "attention_mask"],
        **specials,
    )


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load a fast tokenizer by hub name or local path, checking it can be used for masked LM."""
    from transformers import AutoTokenizer

    from pathlib import Path

    if not Path(name_or_path).exists() and is_path_spec(name_or_path):
        raise MlmkitError(f"no such model or tokenizer folder: {name_or_path}")
    try:
        tok = AutoTokenizer.from_pretrained(name_or_path, use_fast=True, trust_remote_code=trust_remote_code)
    except Exception as e:  # OSError, ValueError, HTTP errors...: all mean "can't use this"
        where = "" if Path(name_or_path).exists() else " (no local folder of that name, nor a hub tokenizer)"
        raise MlmkitError(f"could not load tokenizer {name_or_path!r}{where}: {one_line(e)}") from None
    if not getattr(tok, "is_fast", False):
        # word_ids() / offsets (whole-word masking) exist only on fast (Rust) tokenizers.
        raise MlmkitError(
            f"tokenizer {name_or_path!r} is not a fast tokenizer; mlmkit needs one (word_ids for whole-word masking)"
        )
    if tok.mask_token is None or tok.mask_token_id is None:
        raise MlmkitError(f"tokenizer {name_or_path!r} has no mask token; masked-LM pre-training needs one")
    return tok


# --------------------------------------------------------------------------------------------


def _batched(texts: Iterable[str], seen: list[int]) -> Iterator[list[str]]:
    """Batches for `train_from_iterator`, which is much faster on lists than on single strings.

    ``seen[0]`` counts the texts, so the caller can tell an empty corpus from a small one.
    """
    batch: list[str] = []
    for text in texts:
        seen[0] += 1
        batch.append(text)
        if len(batch) >= _TRAIN_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _build_wordpiece(batches, vocab_size, min_frequency, lowercase, show_progress):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    sp = _WORDPIECE_SPECIALS
    tok = Tokenizer(models.WordPiece(unk_token=sp["unk_token"], max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    # Order fixes the ids: [PAD]=0 like BERT, so padding masks built from id 0 stay correct.
    order = [sp["pad_token"], sp["unk_token"], sp["cls_token"], sp["sep_token"], sp["mask_token"]]
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=order,
        continuing_subword_prefix="##", show_progress=show_progress,
    )
    tok.train_from_iterator(batches, trainer=trainer)
    cls, sep = sp["cls_token"], sp["sep_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )
    return tok, dict(sp)


def _build_bpe(batches, vocab_size, min_frequency, lowercase, show_progress):
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    sp = _BPE_SPECIALS
    tok = Tokenizer(models.BPE())  # byte-level: no unk needed, every byte is in the alphabet
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    # Order fixes the ids like RoBERTa: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4.
    order = [sp["bos_token"], sp["pad_token"], sp["eos_token"], sp["unk_token"], sp["mask_token"]]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=order,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=show_progress,
    )
    tok.train_from_iterator(batches, trainer=trainer)
    # lstrip: "hello <mask>" must put the mask where " world" would go (the space belongs to it),
    # which is what the fill-mask pipeline relies on.
    tok.add_special_tokens([AddedToken(sp["mask_token"], lstrip=True, rstrip=False, normalized=False, special=True)])
    tok.post_processor = processors.RobertaProcessing(
        (sp["eos_token"], tok.token_to_id(sp["eos_token"])),  # sep
        (sp["bos_token"], tok.token_to_id(sp["bos_token"])),  # cls
        add_prefix_space=True, trim_offsets=True,
    )
    specials = dict(sp)
    specials["sep_token"] = sp["eos_token"]
    specials["cls_token"] = sp["bos_token"]
    specials["mask_token"] = AddedToken(sp["mask_token"], lstrip=True, rstrip=False, normalized=False, special=True)
    return tok, specials
