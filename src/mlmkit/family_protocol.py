"""The family protocol: what a model family is to the rest of mlmkit. One object per family
(`token_mlm.FAMILY`, `char_mlm.FAMILY`), looked up in the registry (`families.py`). The commands (train, eval,
predict, show, export, finetune, stats) ask it for everything family-specific, so none of them
branches on the family."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass
class Classifier:
    """A sequence classifier on a pre-trained encoder, as `finetune` needs it."""

    model: Any  # nn.Module: model(**batch, labels=None) -> an object with .logits (and .loss)
    prepare: Callable[[list[str]], list]  # texts -> model inputs (cut to the length limit)
    collate: Callable[[list, list[int]], dict]  # prepared inputs, rows -> batch tensors
    save: Callable[[Path], None]  # write a loadable classifier folder
    library: str  # "transformers" (pipeline("text-classification") loads it) or "mlmkit"
    usage: str  # a Python snippet for the model card; "{out}" is the folder
    param_groups: Callable[[], list] = list  # engine.ParamGroup's to optimise apart


class Family:
    """The family-specific steps; each family subclasses this once."""

    name: str  # the config's `task` value
    config_class: type  # the run config dataclass (sections data, model, masking, optim, train, ...)

    def build_task(self, cfg, dist_info, *, log: Callable[[str], None], progress: bool,
                   resume: "bool | str" = False):
        """The run's `engine.Task` (data, model, masking) from its config, on the ranks `dist_info`
        (an `engine.distributed.Dist`: the registry's `build_task` joined the process group and
        seeded the model's initialisation before asking)."""
        raise NotImplementedError

    def prepare(self, cfg, dist_info, *, log: Callable[[str], None], progress: bool) -> str:
        """Do the run's one-off data preparation now (`mlmkit prepare`), on the ranks `dist_info`;
        a line saying what was done."""
        raise NotImplementedError

    def stats(self, cfg, *, log: Callable[[str], None], progress: bool, sample: int | None = None,
              vocab_sizes: list[int] | None = None) -> dict[str, Any]:
        """Statistics of the run's training data (`mlmkit stats`), JSON-ready, computed in one
        streaming pass (constant memory); `sample` caps the records the costly parts read,
        `vocab_sizes` the tokenizers compared (families without a tokenizer ignore it). The key
        "histograms" holds the panels `report.stats.plot_histograms` draws."""
        raise NotImplementedError

    def format_stats(self, result: dict[str, Any]) -> list[str]:
        """The lines `mlmkit stats` prints for `stats`'s result."""
        raise NotImplementedError

    def owns_model_dir(self, path: Path) -> bool:
        """True if `path` is a model folder of this family."""
        raise NotImplementedError

    def evaluate(self, model: str, data: list[str], *, overrides: dict, batch_size: int,
                 max_samples: int | None, log: Callable[[str], None]) -> dict[str, Any]:
        """Metrics of a saved model (folder, run folder or hub name) on `data`; `overrides` are
        config sections (e.g. {"data": {"max_length": 64}}) on top of the model's own settings."""
        raise NotImplementedError

    def predict(self, model: str, inputs: list[str], *, top_k: int, rescore: int | str | None = "auto") -> list[dict[str, Any]]:
        """Fill the masks of each input; one JSON-ready result per input, in the inputs' order.
        An input that cannot be filled (no mask, a bad pattern) must not stop the others: its
        result is ``{"input": ..., "error": "<one-line reason>"}`` and the rest are filled (a
        batch of thousands is not lost to one typo). What concerns every input (the model, the
        options) is still raised as an `MlmkitError`. `rescore` (`mlmkit predict --rescore R`):
        re-rank by the model's pseudo-log-likelihood around each hole, for families that support
        it (an error otherwise); "auto", the default: the family's own choice; None: off."""
        raise NotImplementedError

    def format_prediction(self, result: dict[str, Any]) -> list[str]:
        """The lines `mlmkit predict` prints for one result."""
        raise NotImplementedError

    def held_out_texts(self, cfg, *, log: Callable[[str], None]) -> list[str]:
        """Validation records of a run (its config), for `mlmkit show` without --data."""
        raise NotImplementedError

    def show_examples(self, model: str, texts: list[str], *, seed: int, rate: float, max_tokens: int):
        """Original / Masked / Predicted `report.masked_examples.MaskedExample`s for `texts`."""
        raise NotImplementedError

    def export(self, model_dir: Path, out: Path, facts: dict[str, Any], *, encoder_only: bool,
               log: Callable[[str], None]) -> Path:
        """A shareable folder (with a model card built from the run `facts`)."""
        raise NotImplementedError

    def classifier(self, model: str, labels: list[str], *, from_scratch: bool, seed: int,
                   max_length: int) -> Classifier:
        """A sequence classifier on the encoder of `model` (new, seeded head)."""
        raise NotImplementedError

    def tagger(self, model: str, labels: list[str], *, from_scratch: bool, seed: int,
               max_length: int) -> Classifier:
        """A per-word tagger on the encoder of `model` (new, seeded head). Its `prepare` takes
        sentences as word lists and returns, per sentence, ``(input_ids, word_ids)``: the
        sub-tokens (cut to `max_length`) and the index of the word each belongs to (None for
        special tokens); `collate` pads the ids of the given rows."""
        raise NotImplementedError
