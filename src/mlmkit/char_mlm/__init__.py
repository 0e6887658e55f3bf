"""Character-level, tokenizer-free MLM (`task: char`) for short strings such as domain names, in
the style of CANINE-C: code points in, character spans masked, each span predicted left to right
by a small head batched over every span.

Pipeline order:

    config.py           sections data, model, masking
    data.py             names: normalise, validate, alphabet, hold-out hash; streamed sources
    inputs.py           names as model inputs (specials, ``[CLS] chars [SEP]`` rows, span tables),
                        shared with the portable model
    masking.py          span masking, vectorised; names -> masked batches; cloze training windows
    encoders.py         CANINE, a small scratch transformer (hashed n-gram embeddings), or two
                        causal scratch towers (cloze: a window at every character is a target)
    heads.py            autoregressive / parallel span heads (hashed n-gram memory, beam search)
    model.py            encoder + head, saved and loaded as a folder
    stream.py           the training names as a plan of batches: start-up scan, windows of chunks
                        or hub records, hub positions, each rank's share (NameStream)
    task.py             the engine's Task: the stream's names masked, span loss, save (CharMLMTask)
    build.py            a run's task from its config (build_char_task)
    evaluate.py         `mlmkit eval`
    predict.py          fill holes in name patterns
    masked_examples.py  Original / Masked / Predicted (`mlmkit show`, `train.show_samples`)
    export.py           the full model, or the encoder alone, with a model card
    portable.py         the model as a transformers custom model: an export loads without mlmkit
    stats.py            `mlmkit stats`: the names before training
    classify.py         a sequence classifier on the encoder (`mlmkit finetune`)
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MlmkitError
from ..family_protocol import Family
from .config import CharConfig


class CharFamily(Family):
    name = "char"
    config_class = CharConfig

    def build_task(self, cfg, dist_info, *, log, progress, resume):
        from .build import build_char_task

        return build_char_task(cfg, dist_info, log=log, progress=progress)

    def prepare(self, cfg, dist_info, *, log, progress):
        return "nothing to prepare: character data is streamed from its files (read in chunks) as it trains"

    def stats(self, cfg, *, log, progress, sample=None, vocab_sizes=None):
        from .stats import char_stats

        return char_stats(cfg, log=log, progress=progress, sample=sample, vocab_sizes=vocab_sizes)

    def format_stats(self, result):
        from .stats import format_char_stats

        return format_char_stats(result)

    def owns_model_dir(self, path: Path) -> bool:
        from .model import is_char_model_dir

        return is_char_model_dir(path)

    def evaluate(self, model, data, *, overrides, batch_size, max_samples, log):
        from .evaluate import evaluate_char_model

        return evaluate_char_model(model, data, overrides=overrides, batch_size=batch_size or 256,
                                   max_samples=max_samples)

    def predict(self, model, inputs, *, top_k, rescore="auto"):
        from .predict import predict_patterns

        return predict_patterns(model, inputs, top_k, rescore=rescore)

    def format_prediction(self, result):
        from .predict import format_fills

        return format_fills(result)

    def held_out_texts(self, cfg, *, log):
        from .stream import NameStream

        return NameStream(cfg.data).eval_names

    def show_examples(self, model, texts, *, seed, rate, max_tokens):
        from .model import load_char_model
        from .masked_examples import char_examples

        return char_examples(load_char_model(model), texts, seed=seed)

    def export(self, model_dir, out, facts, *, encoder_only, log):
        from .export import export_char_model

        return export_char_model(model_dir, out, facts, encoder_only=encoder_only, log=log)

    def classifier(self, model, labels, *, from_scratch, seed, max_length):
        from .classify import char_classifier

        return char_classifier(model, labels, from_scratch=from_scratch, seed=seed, max_length=max_length)

    def tagger(self, model, labels, *, from_scratch, seed, max_length):
        raise MlmkitError(f"token classification needs a token-level model; {model} is a character model")


FAMILY = CharFamily()
