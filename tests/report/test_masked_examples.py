"""Original / Masked / Predicted rendering: aligned columns, wrapping, colour only when asked."""

import io
import re

from mlmkit.report.masked_examples import MaskedExample, print_examples, render_plain

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


def test_colour_is_used_when_asked():
    examples = [MaskedExample(["the", "cat"], ["the", "[MASK]"], ["the", "dog"], [False, True])]
    buf = io.StringIO()
    print_examples(examples, color=True, file=buf)
    coloured = buf.getvalue()
    assert ANSI.search(coloured)
    plain = ANSI.sub("", coloured)
    assert "Original:" in plain and "Predicted:" in plain
