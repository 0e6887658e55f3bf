"""The character MLM model (encoder + span head) and its folder: `mlmkit_char.json` (the configs
it was trained with and the encoder's own config), `alphabet.json`, `model.safetensors`."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from ..config import from_dict
from ..errors import ConfigError, MlmkitError
from ..util import check_loaded, one_line
from .config import CharDataConfig, CharMaskingConfig, CharModelConfig, upgrade_legacy
from .data import Alphabet
from ..config import MODEL_SIZES
from .encoders import CanineCharEncoder, build_scratch_encoder, ngram_tables, tiny_canine_config
from .heads import build_head

FORMAT_VERSION = 2  # 2: count tables saved as their non-zero cells (`pack_count_tables`)
CONFIG_NAME = "mlmkit_char.json"
WEIGHTS_NAME = "model.safetensors"
ALPHABET_NAME = "alphabet.json"


class CharMLMModel(nn.Module):
    """Character encoder + span head. Inputs: code points (CANINE) or alphabet indices (scratch)."""

    def __init__(self, cfg: CharModelConfig, alphabet_size: int, max_positions: int, max_span: int,
                 encoder_config: Optional[dict] = None):
        super().__init__()
        self.cfg = cfg
        if cfg.arch == "canine":
            if encoder_config is not None:  # reload: never download
                self.encoder = CanineCharEncoder(config=encoder_config)
            elif cfg.init_from:
                self.encoder = _pretrained_canine(cfg.init_from, cfg.allow_partial_init)
            else:
                self.encoder = CanineCharEncoder(config=tiny_canine_config(**cfg.overrides))
        else:
            if encoder_config is None:
                size = dict(MODEL_SIZES[cfg.size])
                for k in ("hidden_size", "num_layers", "num_heads", "intermediate_size"):
                    if getattr(cfg, k) is not None:
                        size[k] = getattr(cfg, k)
                encoder_config = dict(vocab_size=alphabet_size, max_positions=max_positions,
                                      downsampling_rate=cfg.downsampling_rate, dropout=cfg.dropout,
                                      ngram_buckets=cfg.ngram_buckets, ngram_max=cfg.ngram_max,
                                      ngram_dim=cfg.ngram_dim, **size)
                if cfg.arch == "cloze":
                    encoder_config["cloze"] = True
            self.encoder = build_scratch_encoder(**encoder_config)
        # build_head's arguments, kept: an export rebuilds the head from them without mlmkit
        self.head_config = dict(head=cfg.head, hidden_size=self.encoder.hidden_size, vocab_size=alphabet_size,
                                kind=cfg.head_kind, head_size=cfg.head_size, max_span=max(max_span, 64),
                                dropout=cfg.dropout if cfg.head == "autoregressive" else 0.0,
                                ngram_buckets=cfg.head_ngram_buckets, ngram_max=cfg.head_ngram_max,
                                ngram_dropout=cfg.head_ngram_dropout, ngram_dim=cfg.head_ngram_dim)
        if cfg.head_ngram_dense > 0:  # absent otherwise: older exports rebuild their head unchanged
            self.head_config["ngram_dense"] = True
        if cfg.arch == "cloze":
            self.head_config["cloze"] = True
        if cfg.head_ngram_counts:
            self.head_config["ngram_counts"] = True
        if cfg.head_ngram_count_buckets:
            self.head_config["ngram_count_buckets"] = cfg.head_ngram_count_buckets
        if cfg.head_ngram_joint:
            self.head_config["ngram_joint"] = cfg.head_ngram_joint
        if cfg.head_ngram_max_dist != 8:
            self.head_config["ngram_max_dist"] = cfg.head_ngram_max_dist
        self.head = build_head(**self.head_config)

        if cfg.sparse_ngram:  # the engine pairs sparse tables with SparseAdam (engine/optim.py)
            for table in ngram_tables(self):
                table.sparse = True

    def gradient_checkpointing_enable(self) -> None:
        """`train.gradient_checkpointing`: the encoder's layers recompute their activations in the
        backward pass. The span head is not: it is one or two layers over the predicted spans only,
        while the encoder's activations grow with its depth and every character."""
        self.encoder.gradient_checkpointing_enable()

    def encoder_config(self) -> dict:
        if isinstance(self.encoder, CanineCharEncoder):
            return self.encoder.canine.config.to_dict()
        return dict(self.encoder.config)

    def encode(self, input_ids, input_idx, attention_mask):
        if self.encoder.uses_code_points:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return self.encoder(input_idx, attention_mask)

    def forward(self, input_ids, input_idx, attention_mask, spans, targets, clean_idx=None):
        """Span logits; in training with a dense head memory and the unmasked rows `clean_idx`,
        (logits, dense loss sum, dense count): in one forward, so DDP sees every parameter used."""
        hidden = self.encode(input_ids, input_idx, attention_mask)
        logits = self.head(hidden, spans, targets, input_idx)
        if self.training and clean_idx is not None and getattr(self.head, "ngram_dense", False):
            return (logits, *self.head.dense_loss(clean_idx))
        return logits


def _pretrained_canine(name: str, allow_partial: bool = False) -> CanineCharEncoder:
    """The CANINE encoder of checkpoint `name`; it must load whole (`check_loaded`)."""
    try:
        encoder = CanineCharEncoder(pretrained=name)
        total = len(encoder.canine.state_dict())
        check_loaded(name, encoder.missing, total, "", allow_partial=allow_partial)
        encoder.loaded = (total - len(encoder.missing), total)
        return encoder
    except OSError as e:
        raise ConfigError(f"config key 'model.init_from': cannot load CANINE model {name!r} ({one_line(e)})") from None


# A count table (`heads.CountMemory`) is saved as its non-zero cells: a context is followed by a
# few of the characters, so 2-3% of the cells are set, and a cell's flat index (int32) and its
# byte take 5 bytes where the whole table takes one a cell.
PACKED_CELLS, PACKED_VALUES = "_cells", "_values"


def pack_count_tables(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with each count table (`*counts.table`) replaced by its non-zero cells: exact. A
    table so full that its cells would take more bytes than itself (a very large corpus) stays whole."""
    out = {}
    for name, t in state.items():
        out[name] = t
        if not (name.endswith("counts.table") and t.dtype == torch.uint8):
            continue
        flat = t.detach().reshape(-1)
        cells = flat.nonzero().squeeze(1)
        index, index_bytes = (torch.int32, 4) if flat.numel() < 2**31 else (torch.int64, 8)
        if len(cells) * (1 + index_bytes) < flat.numel():
            del out[name]
            out[name + PACKED_CELLS] = cells.to(index)
            out[name + PACKED_VALUES] = flat[cells]
    return out


def unpack_count_tables(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The inverse of `pack_count_tables`; the tables' shapes are the model's. A folder saved
    whole (checkpoints, older mlmkit) passes through."""
    for name in [k[: -len(PACKED_CELLS)] for k in state if k.endswith("counts.table" + PACKED_CELLS)]:
        cells, values = state.pop(name + PACKED_CELLS), state.pop(name + PACKED_VALUES, None)
        if values is None:
            raise MlmkitError(f"{name}: its cells without their values (a damaged model file)")
        param = model.get_parameter(name)
        # filled in place: loading then copies the table onto itself, not a second 822 MB (not
        # a table on a GPU, nor an FSDP shard: a whole one is built for those)
        in_place = param.device.type == "cpu" and type(param.data) is torch.Tensor
        table = param.data.zero_() if in_place else torch.zeros(param.shape, dtype=torch.uint8)
        if len(cells) and int(cells.max()) >= table.numel():
            raise MlmkitError(f"{name}: a cell past the end of its table (a damaged or mismatched model file)")
        table.view(-1)[cells.long()] = values.to(torch.uint8)
        state[name] = table
    return state


def save_char_model(model: CharMLMModel, path: Path, alphabet: Alphabet, data: CharDataConfig,
                    mcfg: CharModelConfig, masking: CharMaskingConfig) -> None:
    from ..engine.checkpoint import save_tensors

    save_char_meta(model, path, alphabet, data, mcfg, masking)
    save_tensors(pack_count_tables(model.state_dict()), Path(path) / WEIGHTS_NAME)


def save_char_meta(model: CharMLMModel, path: Path, alphabet: Alphabet, data: CharDataConfig,
                   mcfg: CharModelConfig, masking: CharMaskingConfig) -> None:
    """The folder's config and alphabet: all but the weights (a checkpoint has those already)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {
        "mlmkit_task": "char",
        "format_version": FORMAT_VERSION,
        "data": dataclasses.asdict(data),
        "model": dataclasses.asdict(mcfg),
        "masking": dataclasses.asdict(masking),
        "encoder_config": model.encoder_config(),
        "alphabet_size": len(alphabet),
    }
    (path / CONFIG_NAME).write_text(json.dumps(meta, indent=1, default=str), encoding="utf-8")
    alphabet.save(path / ALPHABET_NAME)


@dataclass
class CharMLM:
    """A loaded character MLM: model, alphabet and the configs it was trained with."""

    model: CharMLMModel
    alphabet: Alphabet
    data: CharDataConfig
    model_cfg: CharModelConfig
    masking: CharMaskingConfig


def load_weights(model: CharMLMModel, file: Path) -> None:
    """Load `file` into `model`, count tables packed or whole; every weight must be there, and no
    other (a tied weight saved once loads through either name)."""
    from safetensors.torch import load_file

    from ..engine.checkpoint import load_state

    load_state(model, unpack_count_tables(load_file(str(file)), model), file)


def load_char_model(path, device: str | torch.device = "cpu") -> CharMLM:
    path = Path(path)
    cfg_file = path / CONFIG_NAME
    if not cfg_file.is_file():
        raise MlmkitError(f"{path}: not a character MLM folder (no {CONFIG_NAME})")
    meta = json.loads(cfg_file.read_text(encoding="utf-8"))
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise MlmkitError(f"{path}: saved by a newer mlmkit (format {meta['format_version']})")
    data = from_dict(CharDataConfig, upgrade_legacy("data", meta["data"]), "data.")
    mcfg = from_dict(CharModelConfig, upgrade_legacy("model", meta["model"]), "model.")
    masking = from_dict(CharMaskingConfig, upgrade_legacy("masking", meta["masking"]), "masking.")
    alphabet = Alphabet.load(path / ALPHABET_NAME)
    model = CharMLMModel(mcfg, len(alphabet), data.max_length + 2, masking.max_span,
                         encoder_config=meta["encoder_config"])
    load_weights(model, path / WEIGHTS_NAME)
    model.to(device).eval()
    return CharMLM(model, alphabet, data, mcfg, masking)


def is_char_model_dir(path) -> bool:
    """True if `path` is a folder written by `save_char_model`."""
    return (Path(path) / CONFIG_NAME).is_file()


def bundle_of(model_dir) -> CharMLM:
    """A loaded model as it is, or the model folder (or run folder) loaded."""
    from ..runs import resolve_model_dir

    return model_dir if isinstance(model_dir, CharMLM) else load_char_model(resolve_model_dir(model_dir))
