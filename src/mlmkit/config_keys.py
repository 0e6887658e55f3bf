"""Every config key with its type, default and meaning, derived from the config dataclasses
themselves: `mlmkit config` prints it, and the docs site renders it (`mlmkit.reference`), so the
page, the command line and the code can never disagree.

    from mlmkit.config_keys import config_reference
    keys = config_reference("token", preset="scratch-tiny")      # list[KeyDoc]

Why comments and not docstrings: the fields are documented where they are declared, as
`name: type = default  # meaning` (and comment lines just above a field, for the longer ones);
parsing them from `inspect.getsource` with `tokenize` keeps that the one place a meaning is
written, and works wherever the package's .py files are (pip installs them). A field without a
comment in its own class takes its base class's (the families extend the shared sections of
`config.py`).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from .config import merge_sources, shown, unknown_key
from .errors import ConfigError
from .families import DEFAULT, FAMILIES, build_config

# The top-level `task` key is a field of each family's config class with one value: its meaning
# is the choice between the families, which no one class can say.
TASK_MEANING = ("the model family: token (any transformers masked-LM on text, with a tokenizer) or "
                "char (tokenizer-free character model for short strings such as domain names)")


@dataclass(frozen=True)
class KeyDoc:
    """One config key: `value` is the preset's (or the default when no preset sets it)."""

    key: str  # dotted, as --set takes it: "train.max_steps"
    type: str  # "int | null", "list[str]", "auto | text | jsonl", ...
    default: Any  # the dataclass default
    value: Any  # with a preset: its value; else the default
    meaning: str

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0] if "." in self.key else ""

    @property
    def from_preset(self) -> bool:
        return self.value != self.default


# ------------------------------------------------------------------ meanings from the source
@functools.lru_cache(maxsize=None)
def _parsed(source: str) -> tuple[ast.Module, list[str], dict[int, str]]:
    """The syntax tree, the lines and the comments (line -> text) of a piece of source."""
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    return ast.parse(source), source.splitlines(), comments


def _class_source(cls: type) -> tuple[ast.ClassDef, list[str], dict[int, str]] | None:
    """The class statement of `cls` and the lines and comments around it. A module-level class
    is found in its module's file, parsed once for all its classes (`inspect.getsource` parses
    the whole file again for every class: most of `mlmkit config`'s time); anything else
    (a class made in a function) through `inspect.getsource`."""
    try:
        if "<locals>" not in cls.__qualname__:
            tree, lines, comments = _parsed(Path(inspect.getsourcefile(cls)).read_text(encoding="utf-8"))
            node = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__), None)
            if node is not None:
                return node, lines, comments
        tree, lines, comments = _parsed(textwrap.dedent(inspect.getsource(cls)))
        return tree.body[0], lines, comments
    except (OSError, TypeError, SyntaxError):  # no source (a frozen app, a class made at run time)
        return None


@functools.lru_cache(maxsize=None)
def _own_comments(cls: type) -> dict[str, str]:
    """field -> the comments `cls`'s own source writes for it: the comment lines directly above
    the field (no blank line between) and the comment at the end of its line."""
    found = _class_source(cls)
    if found is None:
        return {}
    node, lines, comments = found
    out = {}
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        above, line = [], stmt.lineno - 1
        while line >= 1 and lines[line - 1].lstrip().startswith("#"):
            above.insert(0, comments.get(line, ""))
            line -= 1
        trailing = [comments[n] for n in range(stmt.lineno, stmt.end_lineno + 1) if n in comments]
        out[stmt.target.id] = " ".join(part for part in above + trailing if part)
    return out


def field_meaning(cls: type, name: str) -> str:
    """The meaning of field `name` of dataclass `cls`: its comments, from the first class of the
    MRO that has any ("" if none does)."""
    for klass in cls.__mro__:
        if dataclasses.is_dataclass(klass):
            text = _own_comments(klass).get(name)
            if text:
                return text
    return ""


# ------------------------------------------------------------------ types and values as users write them
def type_name(tp: Any) -> str:
    """A type hint as YAML users read it: null for None, `a | b` for the choices of a Literal."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return " | ".join(map(str, args))
    if origin in (Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        return " | ".join(names + (["null"] if type(None) in args else []))
    if origin is list:
        return f"list[{type_name(args[0]) if args else 'any'}]"
    if origin is dict:
        return "mapping"
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp))


def yaml_value(value: Any) -> str:
    """`value` as it is written in a config file or after `--set key=` (one line)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, allow_unicode=True).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


# ------------------------------------------------------------------ the reference
def _walk(cls: type, value: Any, default: Any, prefix: str = "") -> list[KeyDoc]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp, key = hints[f.name], prefix + f.name
        if dataclasses.is_dataclass(tp):
            out += _walk(tp, getattr(value, f.name), getattr(default, f.name), key + ".")
            continue
        meaning = TASK_MEANING if key == "task" else field_meaning(cls, f.name)
        out.append(KeyDoc(key, type_name(tp), getattr(default, f.name), getattr(value, f.name), meaning))
    return out


def config_reference(family: str | None = None, preset: str | None = None) -> list[KeyDoc]:
    """Every key of the run config of `family` (token or char; default the preset's, else
    token), with its type, default, meaning, and with `preset` that preset's value."""
    raw = merge_sources(preset=preset) if preset else {}
    task = raw.get("task", DEFAULT)
    if family is not None and preset is not None and family != task:
        raise ConfigError(f"preset '{preset}' is a {task} preset, not {family} (leave out --family)")
    family = family or task
    if family not in FAMILIES:
        raise ConfigError(f"unknown family '{shown(family)}' (choose from {', '.join(sorted(FAMILIES))})")
    cls = FAMILIES[family].config_class
    return _walk(cls, build_config({**raw, "task": family}), cls())


def select_keys(docs: list[KeyDoc], wanted: list[str]) -> list[KeyDoc]:
    """The keys named in `wanted` (a key, or a section for all of its keys), in reference order;
    an unknown name is an error naming the closest key."""
    keys = [d.key for d in docs]
    for name in wanted:
        if not any(k == name or k.startswith(name + ".") for k in keys):
            sections = sorted({d.section for d in docs if d.section} | {"task"})
            raise unknown_key(name, None, keys + sections, sections)
    return [d for d in docs if any(d.key == n or d.key.startswith(n + ".") for n in wanted)]


def format_config_reference(docs: list[KeyDoc], *, family: str, preset: str | None = None) -> list[str]:
    """`mlmkit config`'s lines: per key `key = value` as --set takes it, its type, and its
    meaning indented below; a blank line between sections."""
    source = f"the preset {preset}'s values" if preset else "the built-in defaults"
    lines = [f"# {family} family, {source}. Set a key with --set KEY=VALUE or in a YAML file (--config FILE);",
             "# later wins: defaults, preset, --config, --set, the command's own flags.", ""]
    assigns = [f"{d.key} = {yaml_value(d.value)}" for d in docs]
    width = min(max((len(a) for a in assigns), default=0), 48)  # a long list value overflows its row only
    section = None
    for d, assign in zip(docs, assigns):
        if section is not None and d.section != section:
            lines.append("")
        section = d.section
        note = f" (default: {yaml_value(d.default)})" if d.from_preset else ""
        lines.append(f"{assign:<{width}}  [{d.type}]{note}")
        lines += textwrap.wrap(d.meaning, 100, initial_indent="    ", subsequent_indent="    ") or [""]
    return lines


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def config_reference_markdown(family: str | None = None, preset: str | None = None) -> str:
    """The config reference as markdown for a page that has its own title: of `family` (with
    `preset`'s values; a table per section, `##` headings), or of every family when neither is
    given (the docs site's configuration page: `##` per family, `###` per section)."""
    if family is None and preset is None:
        families = sorted(FAMILIES, key=lambda name: name != DEFAULT)  # the default family first
        return "\n".join([HOW_TO_SET, ""] + [_family_markdown(name, None, level=2) for name in families])
    return "\n".join([HOW_TO_SET, "", _family_markdown(family, preset, level=1)])


HOW_TO_SET = ("Set a key in a YAML config file (`--config FILE`, sections as mappings) or on the command line "
              "(`--set section.key=value`); later wins: built-in defaults, preset, config file, `--set`, the "
              "command's own flags. `mlmkit config [--preset NAME] [--family token|char]` prints this in a terminal.")


def _family_markdown(family: str | None, preset: str | None, *, level: int) -> str:
    """Level 1: the sections as `##`; level 2: a `##` heading for the family, its sections `###`."""
    docs = config_reference(family, preset)
    family = family or next(d.value for d in docs if d.key == "task")
    out = [f"## The {family} family (`task: {family}`)", ""] if level == 2 else []
    head = "#" * (level + 1)
    if preset:
        out += [f"Values of the preset `{preset}`; where it changes a built-in default, the default follows.", ""]
    by_section: dict[str, list[KeyDoc]] = {}
    for d in docs:
        by_section.setdefault(d.section, []).append(d)
    for section, items in by_section.items():
        out += [f"{head} `{section}`" if section else f"{head} `task`", "",
                "| key | type | default | meaning |", "|---|---|---|---|"]
        for d in items:
            default = f"`{yaml_value(d.value)}`" + (f" (built-in: `{yaml_value(d.default)}`)" if d.from_preset else "")
            out.append(f"| `{d.key}` | {_cell(d.type)} | {_cell(default)} | {_cell(d.meaning)} |")
        out.append("")
    return "\n".join(out)
