"""`mlmkit finetune --task classification`: labelled texts -> hash split -> the model family's
classifier (`Family.classifier`) -> a `ClassificationTask` ready for the engine (`run._train`)."""

from __future__ import annotations

from collections import Counter

from ..families import family_of_model
from .labelled_task import Prepared
from .sequence_data import Example, load_examples
from .sequence_task import ClassificationTask
from .splits import split_examples, subsample


def prepare_classification(path: str, data: list[str], cfg, log) -> Prepared:
    """Everything `finetune` needs for a sequence-classification run (`cfg`: a `FinetuneConfig`):
    the examples, the hash split, the family's classifier and the engine task."""
    examples = load_examples(data, cfg.text_column, cfg.label_column, cfg.max_samples, log=log)
    train_ex, val_ex, test_ex = split_examples(examples, cfg.validation_fraction, cfg.test_fraction)
    train_ex = subsample(train_ex, cfg.max_train_samples, cfg.seed)
    labels = sorted({e.label for e in examples})
    log(f"{len(labels)} labels ({', '.join(f'{k}: {v}' for k, v in sorted(Counter(e.label for e in examples).items()))}); "
        f"split {len(train_ex)} train / {len(val_ex)} validation / {len(test_ex)} test")
    clf = family_of_model(path).classifier(path, labels, from_scratch=cfg.from_scratch, seed=cfg.seed,
                                           max_length=cfg.max_length)
    lab_id = {l: i for i, l in enumerate(labels)}

    def encode(examples: list[Example]):
        return clf.prepare([e.text for e in examples]), [lab_id[e.label] for e in examples]

    task = ClassificationTask(clf, encode(train_ex), encode(val_ex), len(labels), batch_size=cfg.batch_size,
                              seed=cfg.seed)
    return Prepared(clf, task, encode(test_ex) if test_ex else None, labels,
                    {"train": len(train_ex), "validation": len(val_ex), "test": len(test_ex)}, "eval_accuracy")
