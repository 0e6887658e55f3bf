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
                   max_steps: int | None, *, eval_every: int | None = None, eval_seconds: float = 0.0) -> int | None:
    """The step a time budget will end at, for the bar's total (and so its ETA): `step` plus the
    steps `seconds_left` allows, capped by `max_steps`. None (no total) until there is a rate and
    no step limit to fall back on.

    The rate is `steps_timed` steps in `seconds`, which must be training time only: evaluations
    are paused for, not steps, and a rate over wall time would fall at every evaluation (and rise
    between them). Evaluations are spent from the budget too, so with `eval_every` and
    `eval_seconds` (what one costs) each evaluation the remaining steps would reach is paid for:
    the run ends where training steps and evaluations together use up `seconds_left`."""
    if steps_timed <= 0 or seconds <= 0:
        return max_steps
    per_step = seconds / steps_timed
    steps = max(int(seconds_left / per_step), 0)
    if eval_every and eval_seconds > 0:
        # `step` has just been taken and its own evaluation (if due) is still to come
        to_next = -step % eval_every
        if steps >= to_next:  # at least one more evaluation: then whole cycles of steps + evaluation
            left = seconds_left - to_next * per_step - eval_seconds
            cycle = eval_every * per_step + eval_seconds
            cycles = max(int(left // cycle), 0)
            left -= cycles * cycle
            # the budget is checked before each step, so the last cycle stops at the next
            # evaluation at the latest (which then runs, and the run ends)
            steps = to_next + cycles * eval_every + min(max(int(left / per_step), 0), eval_every)
    end = step + steps
    return end if max_steps is None else min(max_steps, end)


write = tqdm.write
