"""User-facing errors.

Anything the user can fix (a missing file, a bad config key, an undecodable line) is raised as
`MlmkitError`; the CLI prints it as one line and exits non-zero, with no traceback unless `--debug`.
"""

from __future__ import annotations


class MlmkitError(Exception):
    """An error caused by the user's input, shown as a single line by the CLI."""


class ConfigError(MlmkitError):
    """A bad config key or value; the message names the dotted key."""


class DataError(MlmkitError):
    """A bad input file or record; the message names the file and, where it applies, the line."""

    def __init__(self, message: str, source: str | None = None, line: int | None = None):
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(where + message)
        self.source = source
        self.line = line
