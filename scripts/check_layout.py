#!/usr/bin/env python3
"""Check the package layout: imports only run down the layers, the two model families never import
each other, and no function is longer than 80 lines.

    python scripts/check_layout.py            # prints the import graph summary and the five longest functions
    python scripts/check_layout.py --quiet    # only problems; exit status 1 if there are any

Layers, lowest first (a module may import its own layer and the ones below):

    0  errors, util
    1  config, runs, folders, family_protocol, report/*
    2  data/*
    3  engine/*
    4  token_mlm/*, char_mlm/*          (siblings: neither imports the other)
    5  families
    6  finetune/*, export, show, api, config_keys
    7  cli, __init__, __main__
    8  reference                        (the docs pages: it reads the CLI's typer app)
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "mlmkit"
LAYERS: list[tuple[str, ...]] = [
    ("errors", "util"),
    ("config", "runs", "folders", "family_protocol", "report"),
    ("data",),
    ("engine",),
    ("token_mlm", "char_mlm"),
    ("families",),
    ("finetune", "export", "show", "api", "config_keys"),
    ("cli", "__init__", "__main__"),
    ("reference",),
]
SIBLINGS = {"token_mlm", "char_mlm"}
MAX_LINES = 80


def unit_of(module: str) -> str:
    """`mlmkit.engine.loop` -> `engine`; `mlmkit` -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(unit: str) -> int:
    for i, names in enumerate(LAYERS):
        if unit in names:
            return i
    raise SystemExit(f"check_layout: {unit!r} is in no layer; add it to LAYERS")


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """mlmkit modules imported anywhere in the file (lazy imports in functions count too)."""
    out = set()
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = base[: len(base) - node.level + 1] + ([node.module] if node.module else [])
                name = ".".join(target)
            else:
                name = node.module or ""
            if name.split(".")[0] == PACKAGE:
                out.add(name)
    return out


def long_functions(tree: ast.AST, path: Path) -> list[tuple[int, str, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append((node.end_lineno - node.lineno + 1, node.name, f"{path}:{node.lineno}"))
    return out


def check(root: Path) -> tuple[list[str], list[tuple[int, str, str]], int]:
    problems, functions, edges = [], [], 0
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        functions += long_functions(tree, path.relative_to(root.parent))
        unit = unit_of(module)
        for target in sorted(imports_of(tree, module, path.name == "__init__.py")):
            other = unit_of(target)
            if other == unit:
                continue
            edges += 1
            if layer_of(other) > layer_of(unit):
                problems.append(f"{module} imports {target}: layer {layer_of(other)} above its own {layer_of(unit)}")
            elif unit in SIBLINGS and other in SIBLINGS:
                problems.append(f"{module} imports {target}: the model families must not import each other")
    functions.sort(reverse=True)
    problems += [f"{where}: {name} is {n} lines (over {MAX_LINES})" for n, name, where in functions if n > MAX_LINES]
    return problems, functions, edges


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1] / "src" / PACKAGE))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    problems, functions, edges = check(Path(args.root))
    if not args.quiet:
        print(f"{edges} imports between units checked against {len(LAYERS)} layers: "
              f"{'no upward import, no import between the families' if not problems else 'problems below'}")
        print("five longest functions:")
        for n, name, where in functions[:5]:
            print(f"  {n:4d}  {name}  {where}")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
