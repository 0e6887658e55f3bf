"""The character family's config sections (`task: char`), on the shared vocabulary of
`mlmkit.config`: the same setting has the same key as in the token family (`data.train`,
`data.validation_fraction`, `data.on_bad_record`, `model.init_from`, `masking.mask_fraction`),
with defaults that suit short strings such as domain names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from ..config import MODEL_SIZES, DataSection, MaskingSection, ModelSection, check
from ..engine.config import OptimConfig, TrainConfig

IDN_MODES = ("keep", "to_ascii", "to_unicode")


@dataclass
class CharDataConfig(DataSection):
    text_column: str = "domain"  # CSV / JSONL / Parquet / hub column holding the names
    max_length: int = 64  # longest name (characters) used; longer ones are counted and skipped
    validation_fraction: float = 0.02  # share of names (by hash) held out for validation
    on_bad_record: Literal["error", "skip"] = "skip"  # domain lists hold junk: count it by reason
    idn: Literal["keep", "to_ascii", "to_unicode"] = "keep"  # Unicode <-> xn-- punycode
    holdout_key: Literal["name", "domain"] = "name"  # hash of: name (without its TLD: twins stay together) | domain
    shuffle_buffer: int = 65536  # rows shuffled together (window size)
    chunk_bytes: int = 65536  # local line-based files are read in chunks of this many bytes
    length_group: int = 32  # batches whose names are sorted by length together (1: no grouping)
    alphabet: Optional[str] = None  # characters of the output softmax; None: derived from the data
    alphabet_sample: int = 50000  # names read to derive the alphabet
    # each pass trains on one name of each family (the names sharing a name without TLD, foo.cf and
    # foo.ga), a different one each pass: lists that hold a name under many TLDs otherwise teach it
    # many times a pass. Families are met within a shuffle window, so keep a family's names close
    # (a sorted file)
    one_name_per_family: bool = False

    def __post_init__(self):
        super().__post_init__()
        check(4 <= self.max_length <= 253, "data.max_length", "must be in [4, 253]")
        check(self.shuffle_buffer >= 1, "data.shuffle_buffer", "must be >= 1")
        check(self.chunk_bytes >= 1024, "data.chunk_bytes", "must be >= 1024")
        check(self.alphabet_sample >= 1, "data.alphabet_sample", "must be >= 1")
        check(self.length_group >= 1, "data.length_group", "must be >= 1")


@dataclass
class CharModelConfig(ModelSection):
    # scratch: mlmkit's character transformer; canine: CanineModel; cloze: two causal scratch
    # towers (left-to-right, right-to-left) that make every window of a name a target
    arch: Literal["scratch", "canine", "cloze"] = "scratch"
    size: Literal["tiny", "mini", "small", "base"] = "tiny"  # scratch encoder size (config.MODEL_SIZES)
    # init_from (canine): hub name or local folder of a CANINE checkpoint, e.g. google/canine-c;
    # overrides: CanineConfig kwargs of a fresh CANINE model

    downsampling_rate: int = 1  # scratch encoder: 1, 2 or 4
    hidden_size: Optional[int] = None  # scratch: override the size's width
    num_layers: Optional[int] = None  # scratch: override the size's depth
    num_heads: Optional[int] = None  # scratch: override the size's attention heads
    intermediate_size: Optional[int] = None  # scratch: override the size's feed-forward width
    dropout: float = 0.1  # dropout of the scratch encoder and the autoregressive head
    ngram_buckets: int = 0  # scratch: hashed n-gram input embeddings, rows per order (0: off; e.g. 32768)
    ngram_max: int = 5  # scratch: longest hashed n-gram (orders 2..ngram_max)
    ngram_dim: int = 0  # scratch: width of the n-gram rows, projected to the encoder width (0: encoder width)
    # span head: autoregressive (each span left to right, seeing the characters before) or
    # parallel (one softmax per masked character, BERT style)
    head: Literal["autoregressive", "parallel"] = "autoregressive"
    head_kind: Literal["gru", "transformer"] = "gru"  # autoregressive head
    head_size: Optional[int] = None  # head width (default: encoder width)
    head_ngram_buckets: int = 0  # autoregressive head: hashed n-gram memory, rows per order and side (0: off)
    head_ngram_max: int = 6  # longest n-gram of the head's memory (orders 1..head_ngram_max, each side)
    head_ngram_dropout: float = 0.0  # training: drop each memory look-up with this probability
    head_ngram_dim: int = 0  # width of the memory rows, projected to the head width (0: head width)
    head_ngram_dense: float = 0.0  # > 0: the memory also learns from every character (weight of that loss)
    head_ngram_joint: int = 0  # memory: also the n left and n right characters together (n = 1..N; 0: off)
    # farthest distance from a character to the right context it is hashed with (farther: this one).
    # Counted right and joint contexts fill a row per distance: fewer distances, fewer collisions
    head_ngram_max_dist: int = 8
    head_ngram_counts: bool = False  # the memory also counts each context's next character over the training names
    head_ngram_count_buckets: int = 0  # rows per context column of the counts, a byte per character (0: head_ngram_buckets)
    # counts: names that differ only in their last label (foo.cf, foo.ga) count the contexts before
    # it once, so a training name's counts lack its whole family, as a new name's do
    head_ngram_count_families: bool = False
    cloze_windows: int = 3  # cloze: every character starts a training window of 1..N characters (0: the masked spans)
    sparse_ngram: bool = False  # n-gram tables: sparse gradients, updated by SparseAdam (dense under FSDP)
    ngram_lr_scale: float = 1.0  # LR multiplier of the hashed n-gram tables (and no weight decay)
    # The token family's key, with what each encoder has: scratch and cloze attend with
    # nn.TransformerEncoderLayer, which is PyTorch's SDPA (its flash kernel on GPUs), nothing else;
    # transformers' CANINE has plain (eager) attention only. auto: the encoder's own.
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = "auto"

    def __post_init__(self):
        super().__post_init__()
        check(self.downsampling_rate in (1, 2, 4), "model.downsampling_rate", "must be 1, 2 or 4")
        check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        check(self.ngram_buckets >= 0, "model.ngram_buckets", "must be >= 0")
        check(2 <= self.ngram_max <= 8, "model.ngram_max", "must be in [2, 8]")
        check(self.ngram_dim >= 0, "model.ngram_dim", "must be >= 0")
        check(self.head_ngram_buckets >= 0, "model.head_ngram_buckets", "must be >= 0")
        check(self.head_ngram_buckets == 0 or self.head == "autoregressive", "model.head_ngram_buckets",
              "needs model.head: autoregressive")
        check(1 <= self.head_ngram_max <= 8, "model.head_ngram_max", "must be in [1, 8]")
        check(0.0 <= self.head_ngram_dropout < 1.0, "model.head_ngram_dropout", "must be in [0, 1)")
        check(self.head_ngram_dim >= 0, "model.head_ngram_dim", "must be >= 0")
        check(self.head_ngram_dense >= 0, "model.head_ngram_dense", "must be >= 0")
        check(self.head_ngram_dense == 0 or self.head_ngram_buckets > 0, "model.head_ngram_dense",
              "needs model.head_ngram_buckets > 0")
        check(0 <= self.head_ngram_joint <= self.head_ngram_max, "model.head_ngram_joint",
              "must be in [0, model.head_ngram_max]")
        check(self.head_ngram_joint == 0 or self.head_ngram_buckets > 0, "model.head_ngram_joint",
              "needs model.head_ngram_buckets > 0")
        check(1 <= self.head_ngram_max_dist <= 64, "model.head_ngram_max_dist", "must be in [1, 64]")
        check(not self.head_ngram_counts or self.head_ngram_buckets > 0, "model.head_ngram_counts",
              "needs model.head_ngram_buckets > 0")
        check(self.head_ngram_count_buckets >= 0, "model.head_ngram_count_buckets", "must be >= 0")
        check(self.head_ngram_count_buckets == 0 or self.head_ngram_counts, "model.head_ngram_count_buckets",
              "needs model.head_ngram_counts: true")
        check(not self.head_ngram_count_families or self.head_ngram_counts, "model.head_ngram_count_families",
              "needs model.head_ngram_counts: true")
        check(0 <= self.cloze_windows <= 8, "model.cloze_windows", "must be in [0, 8]")
        check(self.arch != "cloze" or self.downsampling_rate == 1, "model.downsampling_rate", "must be 1 with arch: cloze")
        check(self.ngram_lr_scale > 0, "model.ngram_lr_scale", "must be > 0")
        own = "eager" if self.arch == "canine" else "sdpa"
        check(self.attn_implementation in ("auto", own), "model.attn_implementation",
              f"the {self.arch} encoder's attention is {own} only" + (
                  " (transformers' CANINE has no other)" if own == "eager" else
                  " (nn.TransformerEncoderLayer: PyTorch's SDPA, which picks its flash kernel on GPUs itself)"))
        for k in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "head_size"):
            v = getattr(self, k)
            check(v is None or v >= 1, f"model.{k}", "must be >= 1")
        h = self.hidden_size or MODEL_SIZES[self.size]["hidden_size"]
        nh = self.num_heads or MODEL_SIZES[self.size]["num_heads"]
        check(h % nh == 0, "model.num_heads", f"must divide hidden_size {h}")


@dataclass
class CharMaskingConfig(MaskingSection):
    # rate: expected share of characters predicted (evaluation, and training unless train_rate)
    mask_fraction: float = 0.9  # share of spans replaced by MASK; the rest are left unchanged (CANINE-C)
    train_rate: Optional[float] = None  # training batches only: a higher rate gives more targets per encoder pass
    mean_span: float = 3.0  # mean of the geometric span length
    max_span: int = 8  # longest span
    align: Literal["none", "labels", "parts"] = "none"  # labels: whole labels; parts: labels and hyphen-separated parts
    ensure_one_span: bool = True  # every name gets at least one span (short names)

    def __post_init__(self):
        super().__post_init__()
        check(0.0 < self.rate <= 0.5, "masking.rate", "must be in (0, 0.5]")
        check(self.train_rate is None or 0.0 < self.train_rate <= 0.5, "masking.train_rate", "must be in (0, 0.5]")
        check(self.mean_span >= 1.0, "masking.mean_span", "must be >= 1")
        check(1 <= self.max_span <= 64, "masking.max_span", "must be in [1, 64]")
        check(0.0 <= self.mask_fraction <= 1.0, "masking.mask_fraction", "must be in [0, 1]")


@dataclass
class CharConfig:
    task: Literal["char"] = "char"
    data: CharDataConfig = field(default_factory=CharDataConfig)
    model: CharModelConfig = field(default_factory=CharModelConfig)
    masking: CharMaskingConfig = field(default_factory=CharMaskingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# Keys renamed when the two families got one vocabulary: model folders saved before
# (mlmkit_char.json) still load.
LEGACY_KEYS: dict[str, dict[str, str]] = {
    "data": {"source": "train", "column": "text_column", "split": "hf_split", "hub_config": "hf_config",
             "hub_data_files": "hf_data_files", "on_invalid": "on_bad_record",
             "valid_fraction": "validation_fraction", "eval_size": "max_eval_samples"},
    "model": {"encoder": "arch", "pretrained": "init_from", "canine_overrides": "overrides"},
    "masking": {"mask_prob": "mask_fraction"},
}


def upgrade_legacy(section: str, raw: dict[str, Any]) -> dict[str, Any]:
    """A saved section with the old key names renamed (and values adapted where needed)."""
    names = LEGACY_KEYS.get(section, {})
    out = {names.get(k, k): v for k, v in (raw or {}).items()}
    if section == "data":
        if isinstance(out.get("train"), str):
            out["train"] = ["mlmkit:samples/domains.txt" if out["train"] == "sample" else out["train"]]
        if out.get("format") == "hub":
            out["format"] = "hf"
    return out
