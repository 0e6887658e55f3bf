"""What the model predicts under the mask: Original / Masked / Predicted, aligned cell by cell.

    Original : the  capital of  france is paris .
    Masked   : the  capital of  [MASK] is paris .
    Predicted: the  capital of  france is paris .

A cell is a token (token models) or a character (character models); each family builds its
`MaskedExample`s (`token_mlm/masked_examples.py`, `char_mlm/masked_examples.py`) and this module
renders them: coloured in a terminal (masked positions highlighted, predictions green when right,
red when wrong), plain text otherwise (pipes, files, CI logs). `mlmkit show` prints them for
sampled texts; the trainer logs the same block for a few fixed validation examples at every
evaluation (`train.show_samples` of them, into the run's `samples.jsonl`).

The Predicted row is the original text with the model's arg-max filled in at the masked
positions only; elsewhere the model is not asked anything.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass

LABELS = ("Original", "Masked", "Predicted")
_LABEL_WIDTH = max(map(len, LABELS)) + 2  # "Predicted: "


@dataclass
class MaskedExample:
    original: list[str]  # one display string per shown position
    masked: list[str]
    predicted: list[str]
    target: list[bool]  # was this position masked (asked of the model)?
    sep: str = " "  # between cells: a space between tokens, nothing between characters

    @property
    def n_targets(self) -> int:
        return sum(self.target)

    @property
    def n_correct(self) -> int:
        return sum(t and o == p for o, p, t in zip(self.original, self.predicted, self.target))


# ------------------------------------------------------------------------------ rendering
def _column_groups(widths: list[int], line_width: int, sep: str = " ") -> list[range]:
    """Split the columns into lines that fit `line_width` (a long sequence wraps as blocks of
    three rows, so the columns stay aligned)."""
    room = max(20, line_width - _LABEL_WIDTH)
    groups, start, used = [], 0, 0
    for j, w in enumerate(widths):
        if j > start and used + w + len(sep) > room:
            groups.append(range(start, j))
            start, used = j, 0
        used += w + len(sep)
    groups.append(range(start, len(widths)))
    return groups


def render_plain(ex: MaskedExample, line_width: int = 100) -> str:
    widths = [max(len(a), len(b), len(c)) for a, b, c in zip(ex.original, ex.masked, ex.predicted)]
    lines = []
    for group in _column_groups(widths, line_width, ex.sep):
        for label, row in zip(LABELS, (ex.original, ex.masked, ex.predicted)):
            cells = ex.sep.join(row[j].ljust(widths[j]) for j in group)
            lines.append(f"{label + ':':<{_LABEL_WIDTH}}{cells}".rstrip())
    lines.append(f"{'':<{_LABEL_WIDTH}}({ex.n_correct}/{ex.n_targets} masked {_unit(ex)} predicted right)")
    return "\n".join(lines)


def render_rich(ex: MaskedExample, line_width: int = 100):
    """The same layout as `render_plain`, as a `rich.text.Text` with the masked columns coloured."""
    from rich.text import Text

    widths = [max(len(a), len(b), len(c)) for a, b, c in zip(ex.original, ex.masked, ex.predicted)]
    out = Text()
    for group in _column_groups(widths, line_width, ex.sep):
        for row_i, (label, row) in enumerate(zip(LABELS, (ex.original, ex.masked, ex.predicted))):
            out.append(f"{label + ':':<{_LABEL_WIDTH}}", style="bold dim")
            for j in group:
                style = None
                if ex.target[j]:
                    if row_i == 0:
                        style = "bold cyan"
                    elif row_i == 1:
                        style = "bold black on yellow"
                    else:
                        style = "bold green" if ex.predicted[j] == ex.original[j] else "bold red"
                out.append(row[j], style=style)  # pad outside the style: no coloured blanks
                out.append(" " * (widths[j] - len(row[j])) + ex.sep)
            out.append("\n")
    out.append(f"{'':<{_LABEL_WIDTH}}({ex.n_correct}/{ex.n_targets} masked {_unit(ex)} predicted right)\n",
               style="dim")
    return out


def _unit(ex: MaskedExample) -> str:
    return "characters" if ex.sep == "" else "tokens"


def render_examples(examples: list[MaskedExample], line_width: int = 100) -> str:
    """Plain text for logs: numbered examples separated by rules, and a total at the end."""
    rule = "-" * min(line_width, 80)
    parts = []
    for i, ex in enumerate(examples, 1):
        parts.append(f"Example {i}\n{render_plain(ex, line_width)}")
    total = sum(e.n_targets for e in examples)
    right = sum(e.n_correct for e in examples)
    parts.append(f"{right}/{total} masked {_unit(examples[0]) if examples else 'tokens'} predicted right")
    return f"\n{rule}\n".join(parts)


def print_examples(examples: list[MaskedExample], *, color: bool | None = None, file=None) -> None:
    """Print to `file` (stdout): coloured with rich when it is a terminal (or color=True)."""
    file = file or sys.stdout
    if color is None:
        color = file.isatty()
    width = shutil.get_terminal_size((100, 24)).columns if color else 100
    if not color:
        file.write(render_examples(examples, width) + "\n")
        return
    from rich.console import Console

    console = Console(file=file, force_terminal=True, width=width, highlight=False)
    for i, ex in enumerate(examples, 1):
        console.rule(f"Example {i}", style="dim")
        console.print(render_rich(ex, width), end="")
    total = sum(e.n_targets for e in examples)
    right = sum(e.n_correct for e in examples)
    console.print(f"[bold]{right}/{total}[/bold] masked {_unit(examples[0]) if examples else 'tokens'} predicted right")


