"""Original / Masked / Predicted: aligned columns, colour only in a terminal, the trainer's sample."""

import io
import re

import pytest
import torch

from mlmkit.masking import TokenMasker
from mlmkit.visualize import (MaskedExample, eval_samples_text, examples_from_texts, print_examples,
                              render_plain, show)

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _starts(line: str) -> list[int]:
    """Columns where the cells start, after the "Predicted: " label column."""
    body = line[len("Predicted: "):]
    assert not body.startswith(" ")
    return [m.start() for m in re.finditer(r"(?<= )\S|^\S", body)]


def test_plain_rendering_aligns_the_three_rows():
    ex = MaskedExample(original=["the", "capital", "of", "france", "is", "paris"],
                       masked=["the", "capital", "of", "[MASK]", "is", "[MASK]"],
                       predicted=["the", "capital", "of", "spain", "is", "paris"],
                       target=[False, False, False, True, False, True])
    text = render_plain(ex)
    orig, masked, pred, summary = text.splitlines()
    assert orig.startswith("Original:") and masked.startswith("Masked:") and pred.startswith("Predicted:")
    assert _starts(orig) == _starts(masked) == _starts(pred)
    assert "[MASK]" in masked and "spain" in pred
    assert "1/2" in summary


def test_long_examples_wrap_in_aligned_blocks():
    words = [f"word{i}" for i in range(60)]
    ex = MaskedExample(words, ["[MASK]" if i % 7 == 0 else w for i, w in enumerate(words)], words,
                       [i % 7 == 0 for i in range(60)])
    lines = render_plain(ex, line_width=60).splitlines()[:-1]
    assert len(lines) % 3 == 0 and len(lines) > 3
    assert all(len(l) <= 60 for l in lines)
    for block in range(0, len(lines), 3):
        o, m, p = lines[block: block + 3]
        assert _starts(o) == _starts(m) == _starts(p)


def test_show_prints_original_masked_predicted(tmp_path, tiny_model_dir, english_texts):
    data = tmp_path / "texts.txt"
    data.write_text("\n".join(english_texts[:50]) + "\n")
    buf = io.StringIO()
    examples = show(str(tiny_model_dir), [str(data)], n=3, seed=1, color=None, file=buf, log=lambda s: None)
    out = buf.getvalue()
    assert len(examples) == 3
    assert out.count("Example ") == 3
    assert "Original:" in out and "Masked:" in out and "Predicted:" in out and "[MASK]" in out
    assert not ANSI.search(out)  # StringIO is not a terminal: plain text
    for ex in examples:
        assert ex.n_targets >= 1  # every example shows at least one masked token
        for o, m, p, t in zip(ex.original, ex.masked, ex.predicted, ex.target):
            if not t:  # the model is only asked about masked positions
                assert o == m == p


def test_colour_is_used_when_asked(tiny_bert, tiny_tokenizer, english_texts):
    examples = examples_from_texts(tiny_bert, tiny_tokenizer, english_texts[:2], seed=0)
    buf = io.StringIO()
    print_examples(examples, color=True, file=buf)
    coloured = buf.getvalue()
    assert ANSI.search(coloured)
    plain = ANSI.sub("", coloured)
    assert "Original:" in plain and "Predicted:" in plain


def test_eval_sample_uses_the_fixed_validation_mask(tiny_bert, tiny_tokenizer, english_texts):
    from mlmkit.data.preprocessing import group_texts
    from mlmkit.token_task import TokenMLMTask

    val = group_texts(english_texts[:60], tiny_tokenizer, 48, progress=False)
    task = TokenMLMTask(tiny_bert, tiny_tokenizer, None, val, TokenMasker.from_tokenizer(tiny_tokenizer))
    tiny_bert.train()
    first = eval_samples_text(task, tiny_bert, n=3)
    assert first.count("Example ") == 3 and "[MASK]" in first
    assert eval_samples_text(task, tiny_bert, n=3) == first  # same rows, same mask, same model
    assert tiny_bert.training  # the model's mode is restored for the training loop


def test_show_on_a_run_folder_without_data_uses_its_config(tmp_path, tiny_model_dir, english_texts):
    import shutil

    from mlmkit.errors import MlmkitError

    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run / "model")
    with pytest.raises(MlmkitError, match="config.yaml"):
        show(str(run), None, n=2, file=io.StringIO(), log=lambda s: None)
    data = tmp_path / "d.txt"
    data.write_text("\n".join(english_texts[:200]) + "\n")
    (run / "config.yaml").write_text(f"data:\n  train: [{data}]\n  validation_fraction: 0.2\n")
    buf = io.StringIO()
    examples = show(str(run), None, n=2, file=buf, log=lambda s: None)
    assert len(examples) == 2 and "Original:" in buf.getvalue()


def test_show_character_model_aligns_characters(tmp_path):
    from mlmkit.char_task import CharDataConfig, CharMLMTask, CharModelConfig, SpanMaskConfig

    names = tmp_path / "names.txt"
    names.write_text("".join(f"{w}{i}.com\n" for i in range(30) for w in ("mailbox", "shopping")))
    torch.manual_seed(0)
    task = CharMLMTask(CharDataConfig(source=str(names), eval_size=8, valid_fraction=0.3),
                       CharModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
                       SpanMaskConfig(), batch_size=8)
    task.save_pretrained(task.model, tmp_path / "char")
    buf = io.StringIO()
    examples = show(str(tmp_path / "char"), [str(names)], n=4, seed=2, file=buf, log=lambda s: None)
    assert len(examples) == 4 and all(e.n_targets >= 1 for e in examples)  # ensure_one_span
    lines = buf.getvalue().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Original:"):
            o, m, p = (l[len("Predicted: "):] for l in lines[i: i + 3])
            assert len(o) == len(m) == len(p)  # one column per character, no separators
            assert o.endswith(".com") and "masked characters" in lines[i + 3]
    # the trainer's per-evaluation sample works for character tasks too
    assert len(task.eval_domains) >= 2
    text = eval_samples_text(task, task.model, n=2)
    assert text.count("Example ") == 2 and "masked characters" in text
