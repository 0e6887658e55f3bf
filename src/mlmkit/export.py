"""`mlmkit export RUN_DIR OUT [--encoder-only]`: a shareable model folder with a model card.

OUT is the full masked-LM folder, or with ``--encoder-only`` the bare encoder (ready for
fine-tuning or embeddings) with the full masked-LM beside it in ``OUT/masked-lm``, so the
pre-training head is never lost. The model's family writes the folders (token models:
Hugging Face folders that ``AutoModelForMaskedLM`` / ``AutoModel`` load; character models: see
`char_mlm/export.py`). Every folder gets a ``README.md`` model card built from the run folder:
the config (config.yaml), the training data, steps/tokens/time (summary.json) and the final
validation metrics (metrics.jsonl).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .errors import MlmkitError
from .families import family_of_model
from .runs import run_and_model_dirs, run_facts

MODEL_MARKERS = ("config.json", "mlmkit_char.json")


def export(run_or_model: str | Path, out: str | Path, *, encoder_only: bool = False, overwrite: bool = False,
           log=print) -> Path:
    """Write the export folder(s); returns OUT."""
    run_dir, model_dir = run_and_model_dirs(run_or_model, MODEL_MARKERS)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise MlmkitError(f"{out} exists and is not empty (use --overwrite to replace it)")
        shutil.rmtree(out)
    facts = run_facts(run_dir)
    return family_of_model(model_dir).export(model_dir, out, facts, encoder_only=encoder_only, log=log)
