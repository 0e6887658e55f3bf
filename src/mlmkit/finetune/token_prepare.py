"""`mlmkit finetune --task token-classification`: tagged sentences -> hash split -> the model
family's tagger (`Family.tagger`) -> aligned labels -> a `TokenClassificationTask` ready for the
engine (`run._train`)."""

from __future__ import annotations

from collections import Counter

from ..families import family_of_model
from .entity_f1 import entity_types, is_bio
from .labelled_task import Prepared
from .splits import split_examples, subsample
from .token_data import TaggedSentence, load_tagged
from .token_task import TokenClassificationTask, align_labels


def encode_tagged(clf, sentences: list[TaggedSentence], tag_id: dict[str, int]) -> tuple[list, list[list[int]], int]:
    """(prepared inputs, aligned labels, words cut off by the length limit) of `sentences`."""
    prepared = clf.prepare([s.words for s in sentences])
    labels, cut = [], 0
    for (_, word_ids), s in zip(prepared, sentences):
        labels.append(align_labels(word_ids, [tag_id[t] for t in s.tags]))
        kept = {w for w in word_ids if w is not None}
        cut += len(s.words) - len(kept)
    return prepared, labels, cut


def _describe(sentences: list[TaggedSentence], labels: list[str]) -> str:
    if is_bio(labels):
        types = entity_types(labels)
        begins = Counter(t[2:] for s in sentences for t in s.tags if t.startswith(("B-", "S-")))
        return f"BIO tags, {len(types)} entity types ({', '.join(f'{k}: {begins[k]}' for k in types)} B-/S- tags)"
    counts = Counter(t for s in sentences for t in s.tags)
    top = ", ".join(f"{k}: {v}" for k, v in counts.most_common(8))
    return f"{len(labels)} tags, not BIO: F1 is word accuracy ({top}{', ...' if len(counts) > 8 else ''})"


def prepare_tagging(path: str, data: list[str], cfg, log) -> Prepared:
    """Everything `finetune` needs for a token-classification run (`cfg`: a `FinetuneConfig`)."""
    sentences = load_tagged(data, cfg.text_column, cfg.label_column, cfg.max_samples, log=log)
    train_s, val_s, test_s = split_examples(sentences, cfg.validation_fraction, cfg.test_fraction)
    train_s = subsample(train_s, cfg.max_train_samples, cfg.seed)
    labels = sorted({t for s in sentences for t in s.tags})
    log(f"{_describe(sentences, labels)}; split {len(train_s)} train / {len(val_s)} validation / "
        f"{len(test_s)} test sentences")
    clf = family_of_model(path).tagger(path, labels, from_scratch=cfg.from_scratch, seed=cfg.seed,
                                       max_length=cfg.max_length)
    tag_id = {t: i for i, t in enumerate(labels)}
    encoded = [encode_tagged(clf, part, tag_id) for part in (train_s, val_s, test_s)]
    cut = sum(e[2] for e in encoded)
    if cut:
        log(f"{cut} words have no sub-token within --max-length {cfg.max_length} (cut off, or empty once "
            "tokenised): neither trained on nor scored")
    task = TokenClassificationTask(clf, encoded[0][:2], encoded[1][:2], labels, batch_size=cfg.batch_size,
                                   seed=cfg.seed)
    return Prepared(clf, task, encoded[2][:2] if test_s else None, labels,
                    {"train": len(train_s), "validation": len(val_s), "test": len(test_s)}, "eval_f1")
