"""`mlmkit export RUN OUT [--step N] [--encoder-only] [--license ID] [--push-to-hub user/name]`:
a shareable model folder with a model card, optionally uploaded to the Hugging Face Hub.

OUT is the full masked-LM folder, or with ``--encoder-only`` the bare encoder (ready for
fine-tuning or embeddings) with the full masked-LM beside it in ``OUT/masked-lm``, so the
pre-training head is never lost. The model's family writes the folders (token models:
Hugging Face folders that ``AutoModelForMaskedLM`` / ``AutoModel`` load; character models: the
same with the model's code, see `char_mlm/export.py`). ``--step N`` exports checkpoint N of the
run instead of its final model (checkpoints are loadable model folders; the checksums are
verified first). Every folder gets a ``README.md`` model card built from the run folder (config,
data, steps, metrics as model-index results, base model, licence) and the run's config as
``training_config.yaml``, which reproduces it (``mlmkit train --config training_config.yaml``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .engine.checkpoint import list_checkpoints, verify
from .errors import MlmkitError
from .families import open_model_dir
from .folders import claim
from .report.cards import TRAINING_CONFIG
from .runs import CHECKPOINTS_DIR, CONFIG_FILE, MASKED_LM_SUBDIR, run_and_model_dirs, run_facts
from .util import one_line

MODEL_MARKERS = ("config.json", "mlmkit_char.json")


def export(run_or_model: str | Path, out: str | Path, *, encoder_only: bool = False, overwrite: bool = False,
           step: int | None = None, license: str | None = None, log=print) -> Path:
    """Write the export folder(s); returns OUT."""
    run_dir, model_dir = run_and_model_dirs(run_or_model, MODEL_MARKERS)
    if step is not None:
        model_dir = _checkpoint(run_dir, step)
    _, fam = open_model_dir(model_dir)  # a checkpoint is verified against its manifest
    if step is None and model_dir.parent.name == CHECKPOINTS_DIR:  # a checkpoint folder given directly
        step = json.loads((model_dir / "trainer_state.json").read_text()).get("step")
    out = Path(out)
    run_lock = claim(out, "export", overwrite=overwrite, source=run_dir or model_dir, log=log)
    try:
        facts = run_facts(run_dir, step)
        facts["license"] = license
        fam.export(model_dir, out, facts, encoder_only=encoder_only, log=log)
        if run_dir is not None and (run_dir / CONFIG_FILE).is_file():
            for folder in (out, out / MASKED_LM_SUBDIR):
                if (folder / "README.md").is_file():
                    shutil.copyfile(run_dir / CONFIG_FILE, folder / TRAINING_CONFIG)
    finally:
        # An export is a folder to share (and push): no lock file left in it; its README and
        # training_config.yaml say what it is (`folders.holding`).
        run_lock.release(remove=True)
    return out


def _checkpoint(run_dir: Path | None, step: int) -> Path:
    """RUN/checkpoints/step-N, verified and loadable (one-line errors otherwise)."""
    if run_dir is None:
        raise MlmkitError("--step needs a run folder (its checkpoints/ hold the steps)")
    ckpt = run_dir / CHECKPOINTS_DIR / f"step-{step:08d}"
    have = [int(c.name.removeprefix("step-")) for c in list_checkpoints(run_dir / CHECKPOINTS_DIR)]
    if not ckpt.is_dir():
        raise MlmkitError(f"{run_dir} has no checkpoint of step {step} (it has: {', '.join(map(str, have)) or 'none'})")
    problem = verify(ckpt)
    if problem:
        raise MlmkitError(f"checkpoint {ckpt} is damaged: {problem}")
    if not any((ckpt / m).is_file() for m in MODEL_MARKERS):
        raise MlmkitError(f"checkpoint {ckpt} holds weights only (written by an older mlmkit): no config to load it with")
    return ckpt


def push_to_hub(folder: Path, repo_id: str, *, private: bool = False, log=print) -> str:
    """Upload `folder` to the Hub model repository `repo_id` (created if missing); its URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                   commit_message="Upload model exported by mlmkit")
    except Exception as e:  # no token, no network, no rights, bad name: one line, the folder stays
        raise MlmkitError(f"could not push {folder} to the Hub as {repo_id}: {one_line(e)} "
                          f"(the exported folder is complete; log in with `hf auth login` and retry)") from None
    url = f"https://huggingface.co/{repo_id}"
    log(f"pushed to {url} ({getattr(commit, 'oid', '') or 'uploaded'})")
    return url
