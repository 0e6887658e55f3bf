"""Progress bars that stay readable in log files.

On a terminal tqdm redraws in place; written to a file (a cluster job, `make demo > log`, CI) every
redraw is a new chunk of text, so 10 updates a second fill the log. Off a terminal the bar updates
every 30 seconds instead.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress_bar(**kwargs) -> tqdm:
    stream = kwargs.get("file") or sys.stderr
    interactive = hasattr(stream, "isatty") and stream.isatty()
    kwargs.setdefault("mininterval", 0.1 if interactive else 30.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(**kwargs)


def budgeted_total(step: int, steps_timed: int, seconds: float, seconds_left: float,
                   max_steps: int | None) -> int | None:
    """The step a time budget will end at, for the bar's total (and so its ETA): `step` plus the
    steps `seconds_left` allows at the rate measured so far (`steps_timed` steps in `seconds`),
    capped by `max_steps`. None (no total) until there is a rate and no step limit to fall back on."""
    if steps_timed <= 0 or seconds <= 0:
        return max_steps
    estimate = step + max(int(seconds_left * steps_timed / seconds), 0)
    return estimate if max_steps is None else min(max_steps, estimate)


write = tqdm.write
