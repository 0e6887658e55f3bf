"""Token-level MLM (`task: token`): any Hugging Face masked-LM, or any encoder with
`EncoderForMaskedLM`, trained on text with BERT masking.

Pipeline order:

    config.py           sections data, tokenizer, model, masking
    tokenizers.py       train a WordPiece/BPE tokenizer, or load one
    data.py             records -> texts -> token sequences (line_by_line, group_texts packers)
    prepare.py          prepare once: tokenise in parallel into memory-mapped files, cached by fingerprint
    masking.py          80/10/10 and whole-word masking, vectorised
    model.py            build / load transformers models; logits on masked positions only (SparseMLM)
    heads.py            an MLM head for any encoder (EncoderForMaskedLM)
    task.py             the engine's Task: batches, loss, save (TokenMLMTask)
    build.py            a run's task from its config: tokenizer, model, sequences (build_token_task)
    evaluate.py         `mlmkit eval`
    predict.py          fill-mask
    masked_examples.py  Original / Masked / Predicted (`mlmkit show`, `train.show_samples`)
    export.py           Hugging Face folders with a model card
    stats.py            `mlmkit stats`: the corpus before training
    classify.py         a sequence classifier / word tagger on the encoder (`mlmkit finetune`)
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MlmkitError
from ..family_protocol import Family
from .config import TokenConfig


class TokenFamily(Family):
    name = "token"
    config_class = TokenConfig

    def build_task(self, cfg, dist_info, *, log, progress, resume):
        from .build import build_token_task

        return build_token_task(cfg, dist_info, log=log, progress=progress, resume=resume)

    def prepare(self, cfg, dist_info, *, log, progress):
        from .build import prepare_run

        p = prepare_run(cfg, dist_info, log=log, progress=progress)
        splits = p.meta["splits"]
        return (f"{p.folder}: {splits['train']['sequences']:,} training sequences ({splits['train']['tokens']:,} "
                f"tokens), {splits['validation']['sequences']:,} validation sequences")

    def stats(self, cfg, *, log, progress, sample=None, vocab_sizes=None):
        from .stats import token_stats

        return token_stats(cfg, log=log, progress=progress, sample=sample, vocab_sizes=vocab_sizes)

    def format_stats(self, result):
        from .stats import format_token_stats

        return format_token_stats(result)

    def owns_model_dir(self, path: Path) -> bool:
        return True  # the registry asks the other families first: anything else is a transformers model

    def evaluate(self, model, data, *, overrides, batch_size, max_samples, log):
        from .evaluate import evaluate_token_model

        return evaluate_token_model(model, data, overrides=overrides, batch_size=batch_size or 32,
                                    max_samples=max_samples, log=log)

    def predict(self, model, inputs, *, top_k, rescore="auto"):
        from .predict import predict_texts

        if rescore != "auto":
            raise MlmkitError("--rescore re-ranks the fills of character models (name patterns); "
                              "a token model's fills are one softmax each")
        return predict_texts(model, inputs, top_k)

    def format_prediction(self, result):
        from .predict import format_fills

        return format_fills(result)

    def held_out_texts(self, cfg, *, log):
        from .data import load_texts, split_validation

        d = cfg.data
        if d.validation:
            return load_texts(d, d.validation, log=log)
        texts = load_texts(d, d.train, max_samples=d.max_samples, log=log)
        _, held_out = split_validation(texts, d.validation_fraction or 0.05, seed=0)
        return held_out or texts

    def show_examples(self, model, texts, *, seed, rate, max_tokens):
        from .model import load_model
        from .masked_examples import examples_from_texts
        from .tokenizers import load_tokenizer

        return examples_from_texts(load_model(model), load_tokenizer(model), texts, rate=rate, seed=seed,
                                   max_tokens=max_tokens)

    def export(self, model_dir, out, facts, *, encoder_only, log):
        from .export import export_token_model

        return export_token_model(model_dir, out, facts, encoder_only=encoder_only, log=log)

    def classifier(self, model, labels, *, from_scratch, seed, max_length):
        from .classify import token_classifier

        return token_classifier(model, labels, from_scratch=from_scratch, seed=seed, max_length=max_length)

    def tagger(self, model, labels, *, from_scratch, seed, max_length):
        from .classify import word_tagger

        return word_tagger(model, labels, from_scratch=from_scratch, seed=seed, max_length=max_length)


FAMILY = TokenFamily()
