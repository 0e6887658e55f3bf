"""The train / validation (/ test) split of either fine-tuning task, by a hash of the text: the same
text (a sentence's words joined, for token classification) always lands on the same side, on
every machine and run; and the seeded sample of the training split (`max_train_samples`)."""

from __future__ import annotations

import random

from ..errors import MlmkitError
from ..util import unit_hash


def subsample(examples: list, n: int | None, seed: int) -> list:
    """`n` of `examples` drawn by `seed`, in their original order (all of them when n is None or
    not smaller): the same seed gives the same sample, whatever the model."""
    if n is None or n >= len(examples):
        return examples
    keep = sorted(random.Random(f"max_train_samples:{seed}").sample(range(len(examples)), n))
    return [examples[i] for i in keep]


def split_examples(examples: list, validation_fraction: float, test_fraction: float = 0.0):
    """(train, validation, test) by a hash of the text: [0, test) test, [test, test+val) validation."""
    train, val, test = [], [], []
    for e in examples:
        u = unit_hash(e.text, person=b"mlmkit-ft")
        (test if u < test_fraction else val if u < test_fraction + validation_fraction else train).append(e)
    if not train or not val:
        raise MlmkitError(f"the split left {len(train)} training and {len(val)} validation examples; "
                          "give more data or change --validation-fraction")
    return train, val, test
