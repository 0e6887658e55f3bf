"""The reference pages, generated from the code so that they cannot drift from it: every config
key (`config_keys`: the config dataclasses, their defaults and the comments that explain each
field) and every command (the typer app of `cli`: commands, options, help, defaults). The docs
site (docs/hooks.py) calls the two markdown renderers; `mlmkit config` prints the first in a
terminal.

    from mlmkit.reference import config_reference, config_reference_markdown, cli_reference_markdown
    keys = config_reference("token", preset="scratch-tiny")      # list[KeyDoc]
    page = config_reference_markdown()                           # every family; or ("char"), (preset=...)
    page = cli_reference_markdown()                              # every command and option

This module sits above the command line (it reads the typer app); `cli` itself imports
`config_keys` only, so there is no import loop.
"""

from __future__ import annotations

import inspect
from typing import Any

from .config_keys import KeyDoc, config_reference, config_reference_markdown, field_meaning

__all__ = ["KeyDoc", "config_reference", "config_reference_markdown", "cli_reference_markdown", "field_meaning"]


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default_text(param: Any) -> str:
    """A parameter's default as `--help` shows it: flags on/off, nothing for "not given"."""
    if param.required:
        return "required"
    default = param.default
    if getattr(param, "is_flag", False) and not param.secondary_opts:
        return "on" if default else "off"
    if default is None or callable(default) or default == () or default == []:
        return ""
    if getattr(param, "is_flag", False):  # --x/--no-x: the name of the side that is on
        return f"`{(param.opts if default else param.secondary_opts)[0]}`"
    return f"`{default}`"


def _value_kind(param: Any, ctx: Any) -> str:
    """What a parameter takes, as --help shows it (`<float>`, `<auto|ddp|fsdp>`); nothing for a flag."""
    if getattr(param, "is_flag", False):
        return ""
    if param.metavar:
        return param.metavar
    if hasattr(param, "display_type"):  # typer's own parameters
        return param.display_type(ctx)
    return getattr(getattr(param, "type", None), "name", "")  # click's


def _param_row(param: Any, ctx: Any) -> str:
    if param.param_type_name == "argument":
        names = f"`{param.name.upper()}`" + ("..." if param.nargs != 1 else "")
    else:
        names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
    kind = _value_kind(param, ctx)
    kind = f"`{kind}`" if kind else ""  # code: markdown would take <float> for an HTML tag
    if getattr(param, "multiple", False):
        kind = f"{kind} (repeatable)".strip()
    return f"| {names} | {_cell(kind)} | {_cell(_default_text(param))} | {_cell(getattr(param, 'help', None) or '')} |"


def cli_reference_markdown(app: Any = None) -> str:
    """Every command of the typer `app` (default: mlmkit's) with its arguments and options,
    their help and defaults, as markdown for a page that has its own title (`##` per command)."""
    import typer

    if app is None:
        from .cli import app
    group = typer.main.get_command(app) if isinstance(app, typer.Typer) else app
    header = "| argument / option | value | default | meaning |"
    out = [inspect.cleandoc(group.help or ""), "", "Global options (before the command):", "", header, "|---|---|---|---|",
           *[_param_row(p, group.context_class(group)) for p in group.params], ""]
    for name, cmd in group.commands.items():
        if getattr(cmd, "hidden", False):
            continue
        ctx = cmd.context_class(cmd, info_name=name)
        out += [f"## `mlmkit {name}`", "", inspect.cleandoc(cmd.help or ""), "", header, "|---|---|---|---|",
                *[_param_row(p, ctx) for p in cmd.params], ""]
    return "\n".join(out)
