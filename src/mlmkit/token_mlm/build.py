"""A token run's `TokenMLMTask` from its config: the tokenizer (the run's own, trained once and
cached; a named one; or, on resume, the checkpoint's), the model (new or `model.init_from`), the
prepared, memory-mapped train/validation sequences (rank 0 prepares, the others wait and map
the same files) and the masker. `mlmkit prepare` runs the same tokenizer and data steps ahead.

The ranks come from the run's entry (`families.build_task`, which also seeds the model's
initialisation: `engine.distributed.start_run`); nothing here joins the process group or seeds.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

from ..config import save_config
from ..data.records import iter_records
from ..engine.checkpoint import iter_valid, verify
from ..engine.distributed import Dist, barrier, broadcast_object, start_run
from ..errors import ConfigError, MlmkitError
from ..runs import CONFIG_FILE
from ..util import stable_hash
from .data import Sequences
from .masking import TokenMasker
from .model import build_model, check_attention, load_model, use_attention
from .prepare import prepare, tokenizer_folder
from .task import TokenMLMTask
from .tokenizers import load_tokenizer, tokenizer_digest, train_tokenizer

_TOKENIZER_MARKER = "tokenizer_config.json"  # a folder holds a saved tokenizer (run copy, cache, checkpoint)


def build_token_task(cfg, dist_info: Dist | None = None, *, log=print, progress: bool = True,
                     resume: bool | str = False) -> TokenMLMTask:
    """Config -> tokenizer, model, prepared (memory-mapped) train/validation sequences, masker, on
    the ranks `dist_info` (from `engine.distributed.start_run`, which seeded the model's
    initialisation). `resume` (as the engine's: True, "auto" or a checkpoint folder): the
    tokenizer is the checkpoint's (see `run_tokenizer`). The tokenizer's digest is written into
    the config (`tokenizer.fingerprint`, and the run's config.yaml). Called on its own (the
    Python API), without `dist_info`, it starts the run itself."""
    if dist_info is None:
        dist_info = start_run(cfg.train)
    d, m = cfg.data, cfg.model
    if not d.train:
        raise ConfigError("config key 'data.train': no training data given (use --data FILE)")
    check_attention(m.attn_implementation, cfg.train.device)
    tokenizer = run_tokenizer(cfg, dist_info, resume=resume, log=log, progress=progress)
    _record_fingerprint(cfg, tokenizer, dist_info)
    if m.init_from:
        model = load_model(m.init_from, trust_remote_code=m.trust_remote_code, allow_pickle=m.allow_pickle,
                           init=True, allow_partial=m.allow_partial_init, log=log)
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tokenizer))
        use_attention(model, m.attn_implementation)
    else:
        model = build_model(m.arch, m.size, tokenizer, d.max_length, m.overrides, m.attn_implementation)
        log(f"new {m.arch}-{m.size} model ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters)")
    if cfg.train.gradient_checkpointing and not getattr(model, "supports_gradient_checkpointing", True):
        # (the engine enables it; said here, before the data is prepared)
        raise ConfigError(f"config key 'train.gradient_checkpointing': {type(model).__name__} cannot recompute "
                          "its activations (transformers does not support it for this architecture)")
    limit = _max_length_of(model)
    if limit is not None and d.max_length > limit:
        raise ConfigError(f"config key 'data.max_length': {d.max_length} exceeds the model's "
                          f"maximum of {limit} positions")
    train_seqs, val_seqs = _prepared(cfg, tokenizer, dist_info, log=log, progress=progress)
    log(f"{len(train_seqs):,} training sequences ({train_seqs.num_tokens():,} tokens), "
        f"{len(val_seqs):,} validation sequences, mode {d.mode}, max_length {d.max_length}")
    return TokenMLMTask(model, tokenizer, train_seqs, val_seqs, make_masker(tokenizer, cfg.masking),
                        batch_size=cfg.train.batch_size, seed=cfg.train.seed, sparse=m.sparse_prediction,
                        rank=dist_info.rank, world_size=dist_info.world_size)


def run_tokenizer(cfg, dist_info, *, resume: bool | str = False, log=print, progress: bool = True,
                  keep_copy: bool = True):
    """`tokenizer.name_or_path`, else the `model.init_from` checkpoint's, else the run's own
    (`_run_tokenizer`). A resumed run takes the tokenizer its checkpoint holds and never trains
    one (`_resumed_tokenizer`). When the config names a fingerprint, the tokenizer must have it.
    `keep_copy`: keep it in `<output_dir>/tokenizer/` (a training run; `prepare` writes only
    the cache)."""
    name = cfg.tokenizer.name_or_path or cfg.model.init_from
    found = _resumed_tokenizer(cfg, dist_info, resume, own=not name, log=log) if resume else None
    if found is not None:
        tokenizer, where = found
    elif name:
        tokenizer, where = load_tokenizer(name, trust_remote_code=cfg.model.trust_remote_code), repr(name)
    else:
        tokenizer, where = _run_tokenizer(cfg, dist_info, log=log, progress=progress)
    _check_fingerprint(cfg, tokenizer, where)
    if keep_copy and not name and dist_info.is_main:
        _keep_run_copy(tokenizer, Path(cfg.train.output_dir) / "tokenizer", log)
    return tokenizer


def prepare_run(cfg, dist_info: Dist, *, log=print, progress: bool = True):
    """`mlmkit prepare`: the run's tokenizer and prepared data, made (or found in the cache) now."""
    tokenizer = run_tokenizer(cfg, dist_info, log=log, progress=progress, keep_copy=False)
    return prepare(cfg.data, tokenizer, word_ids=cfg.masking.whole_word, log=log, progress=progress)


def _prepared(cfg, tokenizer, dist_info, *, log, progress) -> tuple[Sequences, Sequences]:
    """The run's sequences, memory-mapped: rank 0 prepares them (or finds them in the cache),
    the other ranks wait, then every rank maps the same files."""
    d, whole = cfg.data, cfg.masking.whole_word
    if dist_info.is_main:
        prepare(d, tokenizer, word_ids=whole, log=log, progress=progress)
    barrier(dist_info)
    prepared = prepare(d, tokenizer, word_ids=whole, log=lambda s: None, progress=False)
    return run_splits(prepared, d, log=log)


def run_splits(prepared, d, *, log=print) -> tuple[Sequences, Sequences]:
    """A run's training and evaluation sequences from its prepared data (`data` section `d`):
    what it trains on and what its evaluations score -- and `mlmkit eval RUN`, to the record."""
    train, val = prepared.train, prepared.validation
    if not d.validation and d.validation_fraction > 0 and (not len(train) or not len(val)):
        # Few records (one long line, say): the hash split put them all on one side. Hold out the
        # last sequences instead, so the run trains and still reports held-out numbers.
        whole = train if len(train) else val
        k = max(1, round(len(whole) * d.validation_fraction)) if len(whole) > 1 else 0
        train, val = whole.head(len(whole) - k), whole.tail(k)
        log(f"warning: the hash split of the records left one side empty (too few records?); the last {k} "
            f"of {len(whole)} sequences are held out instead")
    if not len(train):
        raise MlmkitError("no training records left after the validation split")
    if d.max_eval_samples is not None and len(val) > d.max_eval_samples:
        val = val.head(d.max_eval_samples)
    return train, val


def training_texts(data_cfg, held_out_too: bool = False):
    """The training side of the records, streamed (the hash split and max_samples applied as
    `prepare` applies them): what the tokenizer is trained on. `held_out_too`: every record."""
    d = data_cfg
    threshold = 0 if held_out_too else int(d.validation_fraction * 2**32)
    records = iter_records(d.train, text_column=d.text_column, fmt=d.format, on_bad=d.on_bad_record,
                           hf_split=d.hf_split, hf_config=d.hf_config, hf_data_files=d.hf_data_files)
    for n, rec in enumerate(records, 1):
        if d.max_samples is not None and n > d.max_samples:
            return
        if d.validation or stable_hash(rec.text, 4, salt=b"0") >= threshold:
            yield rec.text


def _run_tokenizer(cfg, dist_info, *, log, progress: bool):
    """The run's tokenizer, trained once on its data; -> (tokenizer, where it came from).

    A tokenizer trained earlier on the same data with the same settings is taken from the cache
    (`prepare.tokenizer_folder`), else rank 0 trains one on the streamed training records (at most
    `tokenizer.train_samples`) and caches it. Every other rank loads rank 0's copy: one file is
    the simplest way to be sure every rank reads the embeddings with the same vocabulary.
    """
    cached = tokenizer_folder(cfg)
    trained = False
    if dist_info.is_main and not (cached / _TOKENIZER_MARKER).is_file():
        t = cfg.tokenizer
        log(f"training a {t.kind} tokenizer (vocab {t.vocab_size}) on at most {t.train_samples:,} records")
        texts = training_texts(cfg.data)
        first = next(texts, None)
        if first is None:  # every record is on the held-out side of the hash split (a tiny corpus)
            log("warning: the hash split holds out every record; the tokenizer is trained on all of them")
            texts = training_texts(cfg.data, held_out_too=True)
        else:
            texts = itertools.chain([first], texts)
        texts = itertools.islice(texts, t.train_samples)
        tokenizer = train_tokenizer(texts, kind=t.kind, vocab_size=t.vocab_size, min_frequency=t.min_frequency,
                                    lowercase=t.lowercase, model_max_length=cfg.data.max_length,
                                    show_progress=progress)
        save_atomically(tokenizer, cached)
        trained = True
    barrier(dist_info)  # rank 0's tokenizer is on disk
    if dist_info.is_main:
        log(f"tokenizer: {cached}")
    return load_tokenizer(str(cached)), ("trained now" if trained else f"cached in {cached}")


def _resumed_tokenizer(cfg, dist_info, resume, *, own: bool, log):
    """(tokenizer, where) for a resumed run, or None when it starts afresh ("auto" with nothing
    to resume) or its checkpoints hold no tokenizer and it names one (`own` False).

    The tokenizer is the one the model was trained with: the newest checkpoint that verifies
    holds a copy (`TokenMLMTask.model_files`), or, with a checkpoint folder to resume from, that
    one. A run whose checkpoints hold none (a bare `EncoderForMaskedLM`) falls back to its own
    `<output_dir>/tokenizer/`. Without either: an error -- a tokenizer trained now would number
    the vocabulary otherwise than the one the model learned, and nothing would say so.
    """
    if dist_info.is_main:  # rank 0 looks (verifying reads every byte of a checkpoint), all load
        try:
            source, error = _resume_source(Path(cfg.train.output_dir), resume, own), ""
        except MlmkitError as e:
            source, error = None, str(e)
    else:
        source, error = None, ""
    source, error = broadcast_object((str(source or ""), error), dist_info)
    if error:
        raise MlmkitError(error)
    if not source:
        return None
    log(f"reusing this run's tokenizer from {source}")
    return load_tokenizer(source), f"of {source}"


def _resume_source(run: Path, resume, own: bool) -> Path | None:
    """The folder a resumed run's tokenizer is loaded from (see `_resumed_tokenizer`)."""
    run_copy = run / "tokenizer"
    if isinstance(resume, (str, Path)) and resume != "auto":
        ckpt = Path(resume)
        problem = verify(ckpt) if ckpt.is_dir() else "no such checkpoint folder"
        if problem:
            raise MlmkitError(f"cannot resume from {ckpt}: {problem}")
        checkpoints = iter([ckpt])
    else:  # newest first, verified as asked for (the trainer reports the corrupt ones itself)
        checkpoints = iter_valid(run / "checkpoints", log=lambda s: None)
    verified = 0
    for ckpt in checkpoints:
        verified += 1
        if (ckpt / _TOKENIZER_MARKER).is_file():
            return ckpt
    if own and (run_copy / _TOKENIZER_MARKER).is_file():
        return run_copy
    if not own or (resume == "auto" and not verified):
        return None
    why = "no checkpoint of it holds a tokenizer" if verified else "it has no checkpoint that verifies"
    raise MlmkitError(f"cannot resume {run}: {why} and {run_copy} is missing; a tokenizer trained now would not "
                      "number the vocabulary as the model learned it (restore that folder, or start a new run)")


def _keep_run_copy(tokenizer, run_copy: Path, log) -> None:
    """`<output_dir>/tokenizer/` holds the tokenizer the run uses (restored from a checkpoint
    when a resumed run lost it; replaced when it held another)."""
    if (run_copy / _TOKENIZER_MARKER).is_file():
        if tokenizer_digest(load_tokenizer(str(run_copy))) == tokenizer_digest(tokenizer):
            return
        log(f"warning: {run_copy} held another tokenizer; it is replaced by the one this run uses")
        shutil.rmtree(run_copy)
    save_atomically(tokenizer, run_copy)


def _check_fingerprint(cfg, tokenizer, where: str) -> None:
    want = cfg.tokenizer.fingerprint
    got = tokenizer_digest(tokenizer)
    if want and want != got:
        raise MlmkitError(f"the tokenizer ({where}) has fingerprint {got}, but the config's tokenizer.fingerprint "
                          f"is {want}: the run would not use the tokenizer its config names (another tokenizers "
                          "version, data or settings?); set tokenizer.fingerprint=null to take this one")


def _record_fingerprint(cfg, tokenizer, dist_info) -> None:
    """Write the tokenizer's digest into the config, and into the run's config.yaml (written
    before the tokenizer was known), so the config names the tokenizer it trained with: a run
    from that file, on any machine, uses the same one or stops (`_check_fingerprint`)."""
    digest = tokenizer_digest(tokenizer)
    if cfg.tokenizer.fingerprint == digest:
        return
    cfg.tokenizer.fingerprint = digest
    saved = Path(cfg.train.output_dir) / CONFIG_FILE
    if dist_info.is_main and saved.is_file():
        save_config(cfg, saved)


def save_atomically(tokenizer, folder: Path) -> None:
    """`save_pretrained` into a temporary folder, then rename: a reader never sees half a tokenizer."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process saved it first
        shutil.rmtree(tmp, ignore_errors=True)


def make_masker(tokenizer, masking_cfg) -> TokenMasker:
    if tokenizer.mask_token_id is None:
        raise MlmkitError("the tokenizer has no mask token; masked-LM pre-training needs one")
    return TokenMasker.from_tokenizer(tokenizer, rate=masking_cfg.rate, mask_fraction=masking_cfg.mask_fraction,
                                      random_fraction=masking_cfg.random_fraction,
                                      whole_word=masking_cfg.whole_word)


def _max_length_of(model) -> int | None:
    cfg = getattr(model, "config", None)
    n = getattr(cfg, "max_position_embeddings", None)
    if n is None:
        return None
    if getattr(cfg, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        n -= 2
    return int(n)
