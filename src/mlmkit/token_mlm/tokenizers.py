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

import hashlib
import json
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING

from ..errors import MlmkitError
from ..util import is_path_spec, one_line

if TYPE_CHECKING:  # importing transformers costs seconds; only do it when a function runs
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

__all__ = ["train_tokenizer", "load_tokenizer", "tokenizer_digest", "TOKENIZER_KINDS"]

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
    in batches; ``wordpiece`` spools it to a temporary file, see `_build_wordpiece`). The same
    texts and settings give the same tokenizer in any process. ``lowercase`` lowercases the text
    for both kinds (pass ``False`` for a cased RoBERTa-like BPE).
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


# What decides the ids a text gets; the rest of the backend's JSON (the decoder, and the truncation
# and padding that each call of a transformers tokenizer sets) is left out of `tokenizer_digest`.
_ENCODING_KEYS = ("added_tokens", "normalizer", "pre_tokenizer", "model", "post_processor")
_SPECIAL_ATTRS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def tokenizer_digest(tokenizer: PreTrainedTokenizerBase) -> str:
    """A short SHA-256 (16 hex digits) of what a tokenizer means to training: the ids every text
    gets (added tokens, normalizer, pre-tokenizer, model with its vocabulary and merges,
    post-processor) and the special tokens padding and masking use. Two tokenizers with the same
    digest give a model the same inputs; saving and loading one keeps its digest."""
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    facts = {key: backend.get(key) for key in _ENCODING_KEYS}
    facts["specials"] = {attr: [str(getattr(tokenizer, attr)), getattr(tokenizer, attr + "_id")]
                         for attr in _SPECIAL_ATTRS if getattr(tokenizer, attr, None) is not None}
    facts["special_ids"] = sorted(tokenizer.all_special_ids)
    facts["size"] = len(tokenizer)
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


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
    """A WordPiece tokenizer whose vocabulary depends on the texts only, not on the process.

    The `tokenizers` trainer (huggingface/tokenizers#1794) creates the ``##`` continuation symbols
    while iterating a hash map of word counts, so their ids follow the process's hash seed, and
    those ids break ties between merges of equal count: two processes training on the same texts
    renumber a fifth of the vocabulary and keep different tokens at the margin. Declaring every
    ``##c`` up front, sorted, as a trainer special token fixes their ids before counting starts;
    knowing them needs the characters first, so the texts (a one-pass iterable) are spooled to an
    unnamed temporary file while their characters are collected, then trained on from there.
    """
    from tokenizers import trainers

    order = _wordpiece_order()
    probe = _wordpiece_pipeline(lowercase)
    with tempfile.TemporaryFile(prefix="mlmkit-tokenizer-texts-") as spool:
        chars = _spool(batches, spool)
        seeds = ["##" + c for c in sorted(_continuations(probe, chars))]
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=order + seeds,
            continuing_subword_prefix="##", show_progress=show_progress,
        )
        spool.seek(0)
        probe.train_from_iterator(_unspool(spool), trainer=trainer)
    # The trainer made every seed a special (added) token, which would never be split off, nor
    # decoded, like a word piece: rebuild on the trained vocabulary so only the 5 real ones are.
    tok = _wordpiece_pipeline(lowercase, probe.get_vocab(with_added_tokens=False))
    tok.add_special_tokens(order)
    _bert_template(tok)
    return tok, dict(_WORDPIECE_SPECIALS)


def _wordpiece_order() -> list[str]:
    # Order fixes the ids: [PAD]=0 like BERT, so padding masks built from id 0 stay correct.
    sp = _WORDPIECE_SPECIALS
    return [sp["pad_token"], sp["unk_token"], sp["cls_token"], sp["sep_token"], sp["mask_token"]]


def _wordpiece_pipeline(lowercase: bool, vocab: dict[str, int] | None = None):
    """BERT's normalizer, pre-tokenizer and decoder around a WordPiece model (empty, or `vocab`)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    unk = _WORDPIECE_SPECIALS["unk_token"]
    model = models.WordPiece(vocab=vocab, unk_token=unk, max_input_chars_per_word=100) if vocab else \
        models.WordPiece(unk_token=unk, max_input_chars_per_word=100)
    tok = Tokenizer(model)
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def _bert_template(tok) -> None:
    from tokenizers import processors

    cls, sep = _WORDPIECE_SPECIALS["cls_token"], _WORDPIECE_SPECIALS["sep_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )


def _spool(batches: Iterable[list[str]], spool: IO[bytes]) -> set[str]:
    """Write the texts to `spool`, one JSON string a line (a text may hold newlines), and return
    the set of characters they use. Memory stays that of one batch, whatever the corpus size."""
    chars: set[str] = set()
    for batch in batches:
        chars.update("".join(batch))
        # surrogatepass: a lone surrogate reaches the trainer as it would have without the spool
        spool.write("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in batch).encode("utf-8", "surrogatepass"))
    return chars


def _unspool(spool: IO[bytes]) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in spool:
        batch.append(json.loads(line))  # (bytes: decoded with surrogatepass, undoing `_spool`)
        if len(batch) >= _TRAIN_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _continuations(tok, chars: set[str]) -> set[str]:
    """The characters that can stand after the first character of a word once `tok`'s own
    normalizer and pre-tokenizer have run: every one the trainer gives a ``##`` symbol. Each
    character is tried after an "a": what it normalizes to (lowercased, accents stripped,
    expanded: "İ" -> "i") and whether the pre-tokenizer splits it off (punctuation, CJK) decide;
    both steps work character by character, so no context of the texts can add another. A
    character the texts hold only at the start of words is in the set too: one more symbol
    (where one missing would get a hash-order id again). Finding those exactly needs every
    character's neighbours, another pass over the texts (the trainer's own nearly doubles the
    training time), for a slot or a few out of thousands."""
    out: set[str] = set()
    for c in chars:
        text = tok.normalizer.normalize_str("a" + c)
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(text):
            out.update(word[1:])
    return out


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
