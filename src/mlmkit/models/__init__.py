"""Encoders and masked-LM heads.

`masked_logits` is the one entry point the tasks use: it returns vocabulary logits for the
masked positions only, whatever the model is (a transformers masked-LM, or any encoder wrapped
with `EncoderForMaskedLM`).
"""

from .heads import EncoderForMaskedLM, MaskedLMHead
from .hf import SIZES, build_model, load_model, masked_logits
from .sparse import SparseMLM

__all__ = ["EncoderForMaskedLM", "MaskedLMHead", "SIZES", "build_model", "load_model", "masked_logits", "SparseMLM"]
