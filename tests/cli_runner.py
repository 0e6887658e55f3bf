"""Run the `mlmkit` command line in-process (faster than a subprocess; same `main()`)."""

import sys


def run_cli(args, capsys, monkeypatch):
    """-> (exit code, stdout, stderr) of `mlmkit ARGS`."""
    from mlmkit.cli import main

    monkeypatch.setattr(sys, "argv", ["mlmkit", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err
