"""A character run's `CharMLMTask` from its config (`task: char`; sections data, model, masking;
train.batch_size and train.seed), and the line that says what it found.

The ranks come from the run's entry (`families.build_task`, which also seeds the model's
initialisation: `engine.distributed.start_run`); nothing here joins the process group or seeds.
"""

from __future__ import annotations

from ..engine.distributed import Dist
from .task import CharMLMTask


def build_char_task(cfg, dist_info: Dist, *, log=None, progress: bool = False) -> CharMLMTask:
    """The task of a run config, on the ranks `dist_info` (from `engine.distributed.start_run`)."""
    task = CharMLMTask(cfg.data, cfg.model, cfg.masking, batch_size=cfg.train.batch_size, seed=cfg.train.seed,
                       rank=dist_info.rank, world_size=dist_info.world_size, progress=progress)
    if log is not None:
        _log_task(task, cfg, log)
    return task


def _log_task(task: CharMLMTask, cfg, log) -> None:
    d = task.describe()
    inv = ", ".join(f"{k} {v}" for k, v in d["invalid_rows"].items()) or "none"
    fam = f" ({d['scan']['family_share']:.0%} of them distinct families)" if "family_share" in d["scan"] else ""
    log(f"char task: {d['scan']['train']:,} training names scanned{fam}, {d['eval_names']:,} held-out names, "
        f"alphabet {d['alphabet_size']} ({d['alphabet']}), {d.get('parameters', 0):,} parameters, "
        f"{d['batches_per_epoch'] or 'unknown'} batches/epoch; invalid rows skipped: {inv}")
    loaded = getattr(task.model.encoder, "loaded", None)  # set by a CANINE encoder read from `init_from`
    if loaded is not None:
        log(f"continuing pre-training from {cfg.model.init_from}: {loaded[0]} of {loaded[1]} encoder tensors "
            "loaded; the span head is new")
    if "hub_shards" in d:
        how = "each rank reads its own shards" if d["hub_split_by_rank"] else "every rank reads it whole"
        log(f"hub stream: {d['hub_shards']} shard(s); {how} (hub_split_by_rank: {d['hub_split_by_rank']})")
