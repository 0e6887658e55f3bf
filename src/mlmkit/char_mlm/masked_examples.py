"""Original / Masked / Predicted for character models: names with spans masked as in
pre-training (seeded), filled greedily by the span head; one column per character (rendered by
`mlmkit.report.masked_examples`)."""

from __future__ import annotations

import torch

from ..engine.draws import example_keys
from ..report.masked_examples import MaskedExample, render_examples
from .data import Alphabet, normalize_domain
from .masking import make_batch
from .model import CharMLM


@torch.no_grad()
def char_examples(bundle, names: list[str], *, seed: int = 0) -> list[MaskedExample]:
    """Original / Masked / Predicted for domain names with a character model (`model.CharMLM`):
    spans masked as in pre-training (seeded), filled greedily by the span head."""
    names = [normalize_domain(n)[: bundle.data.max_length] for n in names]
    names = [n for n in names if n]
    alphabet = bundle.alphabet
    batch = make_batch(names, alphabet, bundle.masking, example_keys(seed, torch.arange(len(names))))
    model = bundle.model
    was_training = model.training
    model.eval()
    try:
        dev = next(model.parameters()).device
        hidden = model.encode(batch["input_ids"].to(dev), batch["input_idx"].to(dev),
                              batch["attention_mask"].to(dev))
        seqs, _ = model.head.beam_search(hidden, batch["spans"].to(dev), beam=1,
                                         input_idx=batch["input_idx"].to(dev))
    finally:
        model.train(was_training)
    examples = [MaskedExample(list(n), list(n), list(n), [False] * len(n), sep="") for n in names]
    masked_idx = batch["input_idx"]
    for s, (row, start, length) in enumerate(batch["spans"].tolist()):
        ex = examples[row]
        for k in range(length):
            col = start - 1 + k  # column 0 of the batch is [CLS]
            shown = int(masked_idx[row, start + k])
            ex.masked[col] = "_" if shown == Alphabet.MASK else alphabet.char(shown)
            ex.predicted[col] = alphabet.char(int(seqs[s, 0, k])) or "?"
            ex.target[col] = True
    return examples


def eval_examples_text(task, model, n: int = 4) -> str | None:
    """The text the trainer logs at each evaluation: `n` held-out names spread over the
    evaluation set, masked with a fixed seed."""
    names = task.eval_domains
    if not names:
        return None
    picks = [names[int(i)] for i in torch.linspace(0, len(names) - 1, steps=min(n, len(names))).round().long().unique()]
    bundle = CharMLM(model, task.alphabet, task.data_cfg, task.model_cfg, task.mask_cfg)
    return render_examples(char_examples(bundle, picks, seed=0))
