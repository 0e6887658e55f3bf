"""Token models' Original / Masked / Predicted: the examples the trainer logs at each evaluation."""

from mlmkit.token_mlm.masking import TokenMasker


def test_eval_sample_uses_the_fixed_validation_mask(tiny_bert, tiny_tokenizer, english_texts):
    from mlmkit.token_mlm.data import group_texts
    from mlmkit.token_mlm.task import TokenMLMTask

    val = group_texts(english_texts[:60], tiny_tokenizer, 48, progress=False)
    task = TokenMLMTask(tiny_bert, tiny_tokenizer, None, val, TokenMasker.from_tokenizer(tiny_tokenizer))
    tiny_bert.train()
    first = task.sample_text(tiny_bert, 3)
    assert first.count("Example ") == 3 and "[MASK]" in first
    assert task.sample_text(tiny_bert, 3) == first  # same rows, same mask, same model
    assert tiny_bert.training  # the model's mode is restored for the training loop
