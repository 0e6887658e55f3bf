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


write = tqdm.write
