"""`mlmkit show`: sampled texts of the run's held-out data (or --data), masked, predicted, printed."""

import io
import re

import pytest
import torch

from mlmkit.show import show

ANSI = re.compile(r"\x1b\[[0-9;]*m")


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
    from mlmkit.char_mlm.config import CharDataConfig, CharMaskingConfig, CharModelConfig
    from mlmkit.char_mlm.task import CharMLMTask

    names = tmp_path / "names.txt"
    names.write_text("".join(f"{w}{i}.com\n" for i in range(30) for w in ("mailbox", "shopping")))
    torch.manual_seed(0)
    task = CharMLMTask(CharDataConfig(train=[str(names)], max_eval_samples=8, validation_fraction=0.3),
                       CharModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
                       CharMaskingConfig(), batch_size=8)
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
    text = task.sample_text(task.model, 2)
    assert text.count("Example ") == 2 and "masked characters" in text
