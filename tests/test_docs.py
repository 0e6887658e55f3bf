"""The README and the docs site cannot rot.

* Every ```bash / ```sh / ```console / ```python block of README.md and of every docs page runs,
  in page order, in one temporary working folder per page (a later block finds what an earlier
  one made), with tiny runs: MLMKIT_DOCS_TINY=1 (families.docs_tiny) shrinks every run after all
  other settings, and the files the docs refer to (corpus.txt, heldout.txt, reviews.jsonl,
  labels.csv, ...) are made here from the bundled samples. A block whose fence has
  ``title="NAME"`` (any language) is written to NAME first. A block that needs what a test
  machine does not have (the package index, the Hub, GPUs, a cluster) is marked on the line
  before its fence with ``<!-- docs-test: skip (the reason) -->`` and counted as skipped.
* Every ``mlmkit`` command anywhere in them, run or not (skipped blocks, text blocks, inline
  code), names an existing command and options, and every ``--set`` key and every config key
  written as ``section.key`` exists.
* Every test a page cites as ``tests/...::test_name`` exists; README links resolve; the shipped
  example configs resolve.

    pytest tests/test_docs.py -s      # prints what ran and what was skipped, and why
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import typing
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RUN_LANGS = {"bash", "sh", "shell", "console", "python", "py"}
SKIP_MARK = re.compile(r"<!--\s*docs-test:\s*skip\s*\((?P<why>[^)]*(?:\([^)]*\)[^)]*)*)\)\s*-->")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)(?P<attrs>.*)$")
BLOCK_TIMEOUT_S = 300


# ------------------------------------------------------------------------------ pages and blocks
def doc_pages() -> list[Path]:
    """README.md, then the site's pages in the order of mkdocs.yml's nav."""
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]

    def walk(items):
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            if isinstance(value, list):
                yield from walk(value)
            else:
                yield value

    return [ROOT / "README.md"] + [ROOT / "docs" / p for p in walk(nav)]


@dataclass
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    lang: str
    title: str | None
    code: str
    skip: str | None  # why it is not run


def blocks_of(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m["fence"], len(m["indent"])
        title = re.search(r'title="([^"]+)"', m["attrs"])
        prev = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        skip = SKIP_MARK.search(prev)
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        out.append(Block(path.name, i + 1, m["lang"].lower(), title[1] if title else None,
                         "\n".join(body) + "\n", skip["why"] if skip else None))
        i = j + 1
    return out


def inline_code(path: Path) -> list[str]:
    """The `inline code` spans of a page, outside fenced blocks."""
    text, spans, in_fence = path.read_text(encoding="utf-8"), [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            spans += re.findall(r"`([^`\n]+)`", line)
    return spans


# ------------------------------------------------------------------------------ the working folder
def make_fixtures(folder: Path) -> None:
    """The files the docs refer to, from the bundled samples (real text, real names)."""
    samples = resources.files("mlmkit") / "samples"
    english = [l for l in (samples / "english.txt").read_text(encoding="utf-8").splitlines() if l.strip()]
    names = [l for l in (samples / "domains.txt").read_text(encoding="utf-8").splitlines() if l.strip()]
    (folder / "corpus.txt").write_text("\n".join(english[:1500]) + "\n", encoding="utf-8")
    (folder / "heldout.txt").write_text("\n".join(english[-40:]) + "\n", encoding="utf-8")
    with open(folder / "reviews.jsonl", "w", encoding="utf-8") as f:
        for line in english[1500:1700]:
            f.write(json.dumps({"review": line, "stars": 1 + len(line) % 5}) + "\n")
    _two_classes(folder / "labels.csv", "text", english, lambda l: "LORD" in l, ("lord", "other"), 24)
    people = {"God", "LORD", "Moses", "Abraham", "Jacob", "Joseph", "Pharaoh", "Aaron", "Noah", "Isaac"}
    with open(folder / "tags.conll", "w", encoding="utf-8") as f:
        for line in english[:60]:
            for word in re.findall(r"\w+|[^\w\s]", line):
                f.write(f"{word}\t{'B-PER' if word in people else 'O'}\n")
            f.write("\n")
    (folder / "domains.txt").write_text("\n".join(names[:2000]) + "\n", encoding="utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"domain": names[2000:4000]}), folder / "domains.parquet")
    _two_classes(folder / "names.csv", "domain", names, lambda n: "mail" in n, ("mail", "other"), 100)
    (folder / "patterns.txt").write_text("temp[4].com\n[?]mail.com\ngoo[3].com\n", encoding="utf-8")
    shutil.copytree(ROOT / "examples", folder / "examples")


def _two_classes(path: Path, column: str, items: list[str], is_first, labels: tuple[str, str], n: int) -> None:
    """A CSV of `column`,label: n items for which `is_first` holds and n for which it does not,
    alternating."""
    first = [x for x in items if is_first(x)][:n]
    other = [x for x in items if not is_first(x)][:n]
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow([column, "label"])
        for a, b in zip(first, other):
            w.writerows([[a, labels[0]], [b, labels[1]]])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_env(folder: Path, shims: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        # `mlmkit` runs in the fork server (docs_zygote.py); python and torchrun of this environment
        "PATH": f"{shims}{os.pathsep}{BIN}{os.pathsep}{env.get('PATH', '')}",
        "MLMKIT_DOCS_TINY": "1",
        "MLMKIT_CACHE": str(folder / ".cache"),
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
        "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
        "PET_MASTER_PORT": str(free_port()),  # torchrun's --master-port: never another job's 29500
        "NO_COLOR": "1", "COLUMNS": "120",
    })
    return env


def console_commands(code: str) -> str:
    """The commands of a ```console block: lines after `$ `, with their continuation lines."""
    out, cont = [], False
    for line in code.splitlines():
        if line.startswith("$ ") or cont:
            out.append(line[2:] if line.startswith("$ ") and not cont else line)
            cont = line.rstrip().endswith("\\")
    return "\n".join(out) + "\n"


def run_block(block: Block, n: int, folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    if block.lang in ("python", "py"):
        script, cmd = folder / f".docs-block-{n}.py", [sys.executable]
        script.write_text(block.code, encoding="utf-8")
    else:
        script, cmd = folder / f".docs-block-{n}.sh", ["bash", "-e", "-o", "pipefail"]
        script.write_text(console_commands(block.code) if block.lang == "console" else block.code, encoding="utf-8")
    return subprocess.run([*cmd, str(script)], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=BLOCK_TIMEOUT_S)


# ------------------------------------------------------------------------------ the runs
_TALLY: dict[str, tuple[int, list[str]]] = {}


@pytest.fixture(scope="module")
def tally(request):
    yield _TALLY
    if not _TALLY:
        return
    ran = sum(r for r, _ in _TALLY.values())
    skipped = Counter(why for _, whys in _TALLY.values() for why in whys)
    lines = [f"docs test: {ran} blocks ran on {len(_TALLY)} pages, {sum(skipped.values())} skipped"]
    lines += [f"  skipped {k}x: {why}" for why, k in sorted(skipped.items())]
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    for line in lines:
        reporter.write_line(line) if reporter else print(line)


@pytest.fixture(scope="module")
def shims():
    """The fork server for `mlmkit` commands (docs_zygote.py), and the folder of its shim."""
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="mlmkit-docs-"))  # short: a socket path has ~100 bytes
    sock = home / "zygote.sock"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("docs_zygote.py")), str(sock)],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout.readline().strip() == "ready", "the docs fork server did not start"
        from docs_zygote import write_shim

        yield write_shim(home / "bin", str(sock))
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: p.name)
def test_every_documented_block_runs(page: Path, tmp_path: Path, tally, shims):
    folder = tmp_path / "work"
    folder.mkdir()
    make_fixtures(folder)
    env = tiny_env(tmp_path, shims)
    ran, skipped = 0, []
    for n, block in enumerate(blocks_of(page)):
        where = f"{block.page}:{block.line}"
        if block.title:  # a file the page shows, which later blocks use
            target = folder / block.title
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")
        if block.lang not in RUN_LANGS:
            continue
        if block.skip:
            skipped.append(block.skip)
            print(f"{where}: skipped ({block.skip})")
            continue
        start = time.monotonic()
        try:
            result = run_block(block, n, folder, env)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{where}: the {block.lang} block ran over {BLOCK_TIMEOUT_S}s:\n{block.code}")
        ran += 1
        print(f"{where}: ran the {block.lang} block in {time.monotonic() - start:.1f}s (exit {result.returncode})")
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-4000:]
            usage = " (a usage error: a documented command or flag no longer exists?)" if result.returncode == 2 \
                and ("No such option" in output or "No such command" in output or "Usage:" in output) else ""
            pytest.fail(f"{where}: the {block.lang} block exited {result.returncode}{usage}\n--- block\n"
                        f"{block.code}--- output (tail)\n{output}")
    _TALLY[page.name] = (ran, skipped)
    print(f"{page.name}: {ran} blocks ran, {len(skipped)} skipped" + (f" ({'; '.join(skipped)})" if skipped else ""))


# ------------------------------------------------------------------------------ commands, flags, keys
def _cli():
    import typer.main

    from mlmkit.cli import app

    return typer.main.get_command(app)


def _options(command) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *getattr(p, "secondary_opts", []))
            if o.startswith("-")} | {"--help"}


def _config_key_exists(dotted: str) -> bool:
    """`section.key` (deeper for mappings such as model.overrides.X) is a field of either family."""
    from mlmkit.char_mlm.config import CharConfig
    from mlmkit.token_mlm.config import TokenConfig

    for root in (TokenConfig, CharConfig):
        cls, ok = root, True
        for part in dotted.split("."):
            if not (dataclasses.is_dataclass(cls) and part in {f.name for f in dataclasses.fields(cls)}):
                ok = False
                break
            cls = typing.get_type_hints(cls)[part]
            if typing.get_origin(cls) is dict or cls is dict:
                return True  # a free mapping (model.overrides): any key below it
        if ok:
            return True
    return False


SECTIONS = ("task", "data", "tokenizer", "model", "masking", "optim", "train")
KEY_LIKE = re.compile(rf"^(?:{'|'.join(SECTIONS)})\.[a-z_][a-z0-9_.]*$")
FILE_SUFFIXES = (".py", ".yaml", ".yml", ".md", ".txt", ".json", ".jsonl", ".bin", ".safetensors", ".csv", ".png")


def _is_placeholder(token: str) -> bool:
    return bool(re.fullmatch(r"[A-Z][A-Z_.]*|\.\.\.|…", token)) or token.startswith("<")


def mlmkit_invocations(text: str) -> list[list[str]]:
    """The argument lists of the `mlmkit ...` and `-m mlmkit ...` commands in a piece of shell."""
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        for m in re.finditer(r"(?:^|[\s;&|(]|^-m\s)(?:-m\s+)?mlmkit(?=\s|$)(?P<rest>.*)", line):
            rest = m["rest"].split(" #")[0]
            rest = re.split(r"\s(?:\||;|&&|\|\||>|2>)\s?", rest)[0]
            try:
                words = shlex.split(rest.replace("[", " ").replace("]", " "))
            except ValueError:
                words = rest.replace("[", " ").replace("]", " ").split()
            out.append(words)
            break  # one command per line (a later "mlmkit" is an argument or a comment)
    return out


def check_invocation(words: list[str], cli) -> list[str]:
    """What is wrong with `mlmkit WORDS` (unknown command, option or --set key), as messages."""
    problems, global_opts, i = [], _options(cli), 0
    while i < len(words) and words[i].startswith("-"):
        if words[i] not in global_opts:
            problems.append(f"unknown global option {words[i]}")
        i += 1
    if i == len(words) or _is_placeholder(words[i]):
        return problems
    name = words[i]
    if name not in cli.commands:
        return problems + [f"unknown command {name!r}"]
    command, opts = cli.commands[name], _options(cli.commands[name])
    args = words[i + 1:]
    for j, word in enumerate(args):
        if word.startswith("-") and len(word) > 1 and not re.fullmatch(r"-?[\d.e-]+", word):
            flag = word.split("=", 1)[0]
            if flag not in opts:
                problems.append(f"{name}: unknown option {flag}")
        if j and args[j - 1] in ("--set", "-s") and "=" in word:
            key = word.split("=", 1)[0]
            if not _is_placeholder(key) and not key.startswith("section") and not _config_key_exists(key):
                problems.append(f"{name}: unknown config key in --set {key}")
    return problems


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: p.name)
def test_documented_commands_flags_and_keys_exist(page: Path):
    cli = _cli()
    texts = [b.code for b in blocks_of(page) if "--8<--" not in b.code and b.lang not in ("python", "py")]
    spans = inline_code(page)
    problems = []
    for text in texts + [s for s in spans if re.match(r"(?:torchrun .*)?mlmkit\s", s)]:
        for words in mlmkit_invocations(text):
            problems += [f"`mlmkit {' '.join(words)}`: {p}" for p in check_invocation(words, cli)]
    for span in spans:
        key = re.split(r"[\s=:]", span.strip(), maxsplit=1)[0]
        if KEY_LIKE.match(key) and not key.endswith(FILE_SUFFIXES) and not _config_key_exists(key):
            problems.append(f"config key `{key}` does not exist")
    for block in blocks_of(page):
        if block.lang in ("yaml", "yml") and block.title and "--8<--" not in block.code:
            problems += [f"{block.title}: {p}" for p in _yaml_config_problems(block.code)]
    assert not problems, f"{page.name}:\n" + "\n".join(sorted(set(problems)))


def _yaml_config_problems(text: str) -> list[str]:
    from mlmkit.families import build_config

    try:
        build_config(yaml.safe_load(text))
    except Exception as e:  # noqa: BLE001 - the message is the finding
        return [str(e)]
    return []


# ------------------------------------------------------------------------------ tests, links, examples
def test_every_cited_test_exists():
    """`tests/x.py::test_name`, and `::test_name` after it in the same line, name real tests."""
    missing, cited = [], 0
    for page in doc_pages():
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            current = None
            for m in re.finditer(r"`(tests/[\w/.-]+?)?(?:::(test_\w+))?`", line):
                path, name = m[1], m[2]
                if path:
                    current = path
                    if not (ROOT / path).exists():
                        missing.append(f"{page.name}:{n}: {path} does not exist")
                        continue
                if name:
                    cited += 1
                    source = (ROOT / current).read_text(encoding="utf-8") if current else ""
                    if not re.search(rf"^\s*(?:async\s+)?def {name}\(", source, re.M):
                        missing.append(f"{page.name}:{n}: {current}::{name} does not exist")
    assert cited >= 30, f"expected the What-survives-what table's tests, found {cited} citations"
    assert not missing, "\n".join(missing)


def test_readme_links_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\((?!https?://|#|mailto:)([^)\s#]+)", text)
    assert targets, "the README links to the docs"
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_example_configs_resolve_and_their_commands_exist(monkeypatch):
    from mlmkit.families import resolve_config

    monkeypatch.delenv("MLMKIT_DOCS_TINY", raising=False)
    examples = sorted((ROOT / "examples").glob("*.yaml"))
    assert examples
    cli, problems = _cli(), []
    for path in examples:
        resolve_config(config_file=str(path))  # raises with the file and key on a bad one
        comments = "\n".join(l.lstrip("# ") for l in path.read_text(encoding="utf-8").splitlines() if l.startswith("#"))
        for words in mlmkit_invocations(comments):
            problems += [f"{path.name}: `mlmkit {' '.join(words)}`: {p}" for p in check_invocation(words, cli)]
    assert not problems, "\n".join(problems)


def test_every_preset_is_documented():
    from mlmkit.config import preset_names

    text = "\n".join(p.read_text(encoding="utf-8") for p in doc_pages())
    missing = [name for name in preset_names() if f"`{name}`" not in text and f"--preset {name} " not in text]
    assert not missing, f"presets the docs do not mention: {missing}"


def test_the_product_text_speaks_of_the_product():
    """No working notes in the README or the docs: sessions, issue numbers."""
    found = []
    for page in doc_pages():
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\b(?:this|previous|last|next|a) session\b|\bissue \d+|\bissues? #\d+", line, re.I):
                found.append(f"{page.name}:{n}: {line.strip()[:100]}")
    assert not found, "\n".join(found)
