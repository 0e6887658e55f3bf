"""External evaluation of the character model: fill a hidden span of real domain names from lists
the model never saw, against a Kneser-Ney character n-gram trained on the same names.

    python bench/char_external.py --model-dir RUN/model [--train-minutes 10] [--n 1500] [--seed 0]

Training data: the full `isdisposable` and `mailchecker` lists (PyPI, MIT), written in a seeded
random order to ``.cache/char_external/train_names.txt``. With ``--train-minutes`` the script first
trains ``RUN`` (the parent of ``--model-dir``) with mlmkit's own one-call API, preset
``domains-tiny`` on that file. ``--names more`` adds the registered sites of Chromium's HSTS
preload list (`char_sources.EXTRA_TRAIN_SOURCES`, about 160k names; ``train_names_more.txt``),
less any name whose name without TLD occurs in an external or downstream list; ``--names words``
adds those and English words, one a line (`char_sources.WORD_SOURCES`, about 225k;
``train_names_words.txt``), less the same keys. The n-gram is then trained on the same names, and
the in-distribution set stays the training lists' own held-out names. The evaluation reads which
file the model was trained on from its config.

Evaluation sets (names valid under mlmkit's rules and written in the model's alphabet):

* external: names of other real lists (`char_sources.EXTERNAL_SOURCES`) whose name without its
  TLD occurs nowhere in the training lists (one name per such key), at most ``--n``, seeded;
* in-distribution: the training lists' held-out hash split (`data.is_validation`, the model's
  ``validation_fraction`` and ``holdout_key``), at most ``--n``, seeded.

The n-gram: interpolated modified Kneser-Ney (`kneser_ney.py`) on the training split, its order (3-10)
chosen by bits/char on a dev split of it.

Task: one span of 1-3 characters (length uniform among those that leave a character of the label
known, position uniform; seeded by the name) inside the registrable label (the label left of the
public suffix: the TLD, or a ``co.uk``-style two-label suffix), e.g. ``goo[3].com``.
The model fills it through ``predict_pattern`` (mlmkit predict's path, top 5); the baseline scores
every candidate span by the full-string log-probability of the filled name (exhaustive: every
string of the model's alphabet, 44^3 = 85,184 for a 3-character span) and keeps the best valid
ones (`portable.plausible_name` and `check_domain`, as the model's fills).
Bits per character of the gold span: the model's teacher-forced span head (softmax over the
alphabet without the specials); the n-gram's exact conditional P(span | rest of the name).

The n-gram's order tuning and fills depend only on the training names, the alphabet and the masked
names: they are cached in ``.cache/char_external/kn-*.json`` (about 10 minutes the first time), so
evaluating another model on the same data takes about a minute.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import char_sources  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "char_external"


# ------------------------------------------------------------------------------------ data
def valid_names(raw: list[str], idn: str = "keep", max_length: int | None = None) -> list[str]:
    """Normalised names that pass mlmkit's check (order kept, duplicates dropped)."""
    from mlmkit.char_mlm.data import check_domain

    seen: dict[str, None] = {}
    for r in raw:
        d, reason = check_domain(r, idn, None, max_length)
        if reason is None:
            seen.setdefault(d, None)
    return list(seen)


def training_lists() -> tuple[list[str], dict[str, int]]:
    """The raw entries of the training lists (concatenated) and their count per list."""
    raw, counts = [], {}
    for src in char_sources.TRAIN_SOURCES:
        names = char_sources.read_source(src)
        counts[src.name] = len(names)
        raw += names
    return raw, counts


# the training names beside the two lists (`--names`), and the file each set is written to
NAME_SETS = {"lists": [], "more": char_sources.EXTRA_TRAIN_SOURCES,
             "words": [*char_sources.EXTRA_TRAIN_SOURCES, *char_sources.WORD_SOURCES]}
TRAIN_FILES = {"lists": "train_names.txt", "more": "train_names_more.txt", "words": "train_names_words.txt"}


def extra_names(idn: str = "keep", max_length: int | None = None, names: str = "more") -> list[str]:
    """The valid names of the name set's extra sources (`NAME_SETS`) whose name without TLD occurs
    in no external or downstream list (those sets stay unseen, and the same as without them)."""
    from mlmkit.char_mlm.data import holdout_key

    kept = {holdout_key(d, "name") for src in (*char_sources.EXTERNAL_SOURCES, *char_sources.DOWNSTREAM_SOURCES)
            for d in valid_names(char_sources.read_source(src), idn, max_length)}
    raw = [r for src in NAME_SETS[names] for r in char_sources.read_source(src)]
    return [d for d in valid_names(raw, idn, max_length) if holdout_key(d, "name") not in kept]


def train_file(names: str = "lists") -> Path:
    return CACHE / TRAIN_FILES[names]


def train_names(seed: int, names: str = "lists") -> list[str]:
    """The full lists (and the name set's extra names), deduplicated (exact normalised name), in a
    seeded random order (mlmkit's shuffle buffer is a window: a sorted file would give
    alphabetical batches): the training file's lines."""
    raw, _ = training_lists()
    names_ = sorted(set(valid_names(raw) + (extra_names(names=names) if NAME_SETS[names] else [])))
    random.Random(seed).shuffle(names_)
    return names_


def write_train_file(seed: int, names: str = "lists") -> tuple[Path, int]:
    """`train_names` written to the training file (atomically); its path and length."""
    lines = train_names(seed, names)
    CACHE.mkdir(parents=True, exist_ok=True)
    path = train_file(names)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path, len(lines)


def lists_alphabet(seed: int) -> str:
    """The alphabet mlmkit derives when it trains on the lists' file alone (from its first
    `data.alphabet_sample` names). A model trained with the extra names is given it, so that it and
    the lists' models evaluate the same external and held-out names (a name is evaluated only if
    written in the model's alphabet)."""
    from mlmkit.char_mlm.config import CharDataConfig
    from mlmkit.char_mlm.data import derive_alphabet

    first = train_names(seed, "lists")[: CharDataConfig().alphabet_sample]
    return "".join(derive_alphabet(first).chars)


def train_model(model_dir: Path, minutes: float | None, threads: int, seed: int, sets: list[str] | None = None,
                steps: int | None = None, names: str = "lists") -> None:
    """`sets`: extra ``section.key=value`` overrides (one change per row of a comparison); `steps`
    instead of `minutes`: a fixed number of steps, whatever else runs on the machine; `names`: the
    name set (`NAME_SETS`); beyond the lists, the lists' alphabet unless `sets` gives one."""
    import mlmkit

    sets = list(sets or [])
    if names != "lists" and not any(s.startswith("data.alphabet=") for s in sets):
        sets.insert(0, f"data.alphabet={lists_alphabet(seed)}")
    path, n = write_train_file(seed, names)
    run = model_dir.parent
    budget = [f"train.max_steps={steps}", "train.max_minutes=null"] if steps else [f"train.max_minutes={minutes}"]
    print(f"training {run} (domains-tiny, {f'{steps:,} steps' if steps else f'{minutes} min'}, {threads} thread(s)) "
          f"on {n:,} names from {path}")
    # a step budget gives the same model resumed or not: continue a stopped one from its last checkpoint
    again = dict(resume="auto") if steps and (run / "checkpoints").is_dir() else dict(overwrite=True)
    mlmkit.train(preset="domains-tiny", data=[str(path)], output_dir=str(run), **again,
                 overrides=[*budget, f"train.threads={threads}", "train.progress=false", *sets])


# ------------------------------------------------------------------------------------ evaluation sets
SECOND_LEVEL = {"co", "com", "net", "org", "ac", "gov", "edu", "or", "ne", "go", "gob", "mil", "nom", "ltd", "plc",
                "sch", "info", "biz", "in", "gen", "web", "firm"}


def registrable(name: str) -> tuple[int, int]:
    """(offset, length) of the registrable label: left of the TLD, or of a ``co.uk``-style
    two-label suffix (a short list of second levels under a two-letter TLD; no public-suffix list)."""
    labels = name.split(".")
    k = len(labels) - 2
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in SECOND_LEVEL:
        k -= 1
    return sum(len(l) + 1 for l in labels[:k]), len(labels[k])


def usable(name: str, chars: set) -> bool:
    """Has a TLD and a registrable label of 2+ characters, written in the model's alphabet."""
    return "." in name and set(name) <= chars and registrable(name)[1] >= 2


def one_per_key(names: list[str], taken: set) -> list[str]:
    """Names whose name-without-TLD is not in `taken`, one per such key (the first); adds the keys."""
    from mlmkit.char_mlm.data import holdout_key

    out = []
    for d in names:
        key = holdout_key(d, "name")
        if key not in taken:
            taken.add(key)
            out.append(d)
    return out


def sample(names: list[str], n: int, seed: int) -> list[str]:
    names = sorted(names)
    return sorted(random.Random(seed).sample(names, min(n, len(names))))


def external_set(train_keys: set, dcfg, chars: set, n: int, seed: int) -> tuple[list[tuple[str, str]], list[dict]]:
    """(name, source) pairs of the external lists, and per source: raw, valid, new (after dedupe)."""
    taken, pool, stats = set(train_keys), [], []
    for src in char_sources.EXTERNAL_SOURCES:
        raw = char_sources.read_source(src)
        valid = [d for d in valid_names(raw, dcfg.idn, dcfg.max_length) if usable(d, chars)]
        new = one_per_key(valid, taken)
        pool += [(d, src.name) for d in new]
        stats.append({"source": src, "raw": len(raw), "valid": len(valid), "new": len(new)})
    picked = set(sample([d for d, _ in pool], n, seed))
    return [(d, s) for d, s in sorted(pool) if d in picked], stats


def split_training(names: list[str], dcfg) -> tuple[list[str], list[str]]:
    """(training split, held-out split) exactly as mlmkit's hash split."""
    from mlmkit.char_mlm.data import is_validation

    held = [d for d in names if is_validation(d, dcfg.validation_fraction, dcfg.holdout_key)]
    hs = set(held)
    return [d for d in names if d not in hs], held


def make_mask(name: str, seed: int) -> tuple[int, int]:
    """(start, length) of the hidden span: 1-3 characters (uniform among those that leave a
    character of the label known) inside the registrable label; seeded by the name."""
    rng = random.Random(f"{seed}:{name}")
    off, n = registrable(name)
    L = rng.choice([k for k in (1, 2, 3) if k < n])
    return off + rng.randrange(n - L + 1), L


# ------------------------------------------------------------------------------------ fills
RESCORE: dict = {}  # --rescore R --rescore-weight W --beam B: predict_pattern's options (its defaults when empty)


def model_fills(bundle, items: list[tuple[str, int, int]]) -> tuple[list[list[str]], float]:
    """mlmkit's own fill path (`predict_pattern`, top 5) on every masked name; and its time."""
    from mlmkit.char_mlm.predict import predict_pattern

    out, t0 = [], time.perf_counter()
    for name, start, L in items:
        pattern = f"{name[:start]}[{L}]{name[start + L:]}"
        out.append([f for f, _ in predict_pattern(bundle, pattern, k=5, **RESCORE)])
    return out, time.perf_counter() - t0


def model_bits(bundle, items: list[tuple[str, int, int]], batch: int = 256) -> list[float]:
    """Teacher-forced bits of each gold span from the span head (softmax over the alphabet
    without the specials, which the fill never produces)."""
    import math

    import torch

    from mlmkit.char_mlm.portable import _encode

    chars = "".join(bundle.alphabet.chars)
    model, out = bundle.model.eval(), []
    n_spec = bundle.alphabet.N_SPECIALS
    for i in range(0, len(items), batch):
        part = items[i: i + batch]
        texts = [n[:s] + "\0" * L + n[s + L:] for n, s, L in part]
        holes = [[s <= j < s + L for j in range(len(n))] for n, s, L in part]
        cps, idx, att, spans = _encode(texts, holes, chars)
        lmax = max(L for _, _, L in part)
        gold = torch.full((len(part), lmax), -100, dtype=torch.long)
        for r, (n, s, L) in enumerate(part):
            gold[r, :L] = torch.tensor(bundle.alphabet.encode(n[s: s + L]))
        with torch.no_grad():
            hidden = model.encode(cps, idx, att)
            logits = model.head(hidden, spans, gold, idx)[..., n_spec:].float()
        lp = torch.log_softmax(logits, -1).gather(-1, (gold.clamp_min(n_spec) - n_spec)[..., None])[..., 0]
        lp = lp.masked_fill(gold < 0, 0.0).sum(1)
        out += [-float(x) / math.log(2) for x in lp]
    return out


def kn_fills(kn, items: list[tuple[str, int, int]]) -> tuple[list[list[str]], list[float], float]:
    """The n-gram's top 5 valid names (exhaustive over every span of the alphabet, ranked by the
    full-string log-probability), the exact bits of the gold span given the rest of the name,
    and the time."""
    import math

    import numpy as np

    from mlmkit.char_mlm.predict import _valid

    cands = {L: kn.candidates(L) for L in (1, 2, 3)}
    fills, bits, t0 = [], [], time.perf_counter()
    for name, start, L in items:
        left, right = name[:start], name[start + L:]
        sc = kn.span_scores(left, right, cands[L])
        top = []
        for j in np.argsort(-sc, kind="stable"):
            cand = left + kn.decode(cands[L][j]) + right
            if _valid(cand):
                top.append(cand)
                if len(top) == 5:
                    break
        fills.append(top)
        gold = 0
        for c in kn.encode(name[start: start + L]):
            gold = gold * len(kn.chars) + (c - 4)
        z = sc.max() + math.log(np.exp(sc - sc.max()).sum())
        bits.append(-(sc[gold] - z) / math.log(2))
    return fills, bits, time.perf_counter() - t0


def tune_kn(train: list[str], chars: str, orders=range(3, 11)) -> tuple[int, dict]:
    """The order with the best bits/char (whole strings, EOS counted) on a dev split of the
    training names (a second hash split, by name without TLD), and every order's number."""
    import math

    from kneser_ney import CharKN

    from mlmkit.char_mlm.data import holdout_key
    from mlmkit.util import unit_hash

    is_dev = [unit_hash("kn-dev:" + holdout_key(d, "name")) < 0.05 for d in train]
    fit = [d for d, dev in zip(train, is_dev) if not dev]
    dev = [d for d, dv in zip(train, is_dev) if dv]
    n_chars = sum(len(d) + 1 for d in dev)
    res = {}
    for o in orders:
        lp = CharKN(chars, o).fit(fit).string_logprob(dev)
        res[o] = float(-lp.sum() / math.log(2) / n_chars)
    return min(res, key=res.get), {"dev_names": len(dev), "fit_names": len(fit), "bits": res}


# ------------------------------------------------------------------------------------ report
def score(items, fills, bits) -> dict:
    """Counts per span length (0: all): n, top-1 and top-5 exact matches, span characters,
    characters right in the top-1 fill, bits."""
    out = {L: dict(n=0, top1=0, top5=0, chars=0, char_ok=0, bits=0.0) for L in (0, 1, 2, 3)}
    for (name, start, L), f, b in zip(items, fills, bits):
        best = f[0][start: start + L] if f else ""
        for key in (0, L):
            r = out[key]
            r["n"] += 1
            r["top1"] += bool(f) and f[0] == name
            r["top5"] += name in f
            r["chars"] += L
            r["char_ok"] += sum(a == b for a, b in zip(best, name[start: start + L]))
            r["bits"] += b
    return out


def pm(k: int, n: int) -> str:
    """A proportion with its binomial standard error."""
    if not n:
        return "n/a"
    p = k / n
    return f"{p:.3f} ± {(p * (1 - p) / n) ** 0.5:.3f}"


def print_tables(title: str, rows: dict[str, tuple[dict, float]]) -> None:
    """`rows`: system -> (score(...), seconds for the fills)."""
    any_r = next(iter(rows.values()))[0]
    print(f"\n### {title}: {any_r[0]['n']:,} names (span length 1/2/3: "
          f"{any_r[1]['n']:,} / {any_r[2]['n']:,} / {any_r[3]['n']:,})\n")
    print("| system | span exact match top-1 | top-5 | char accuracy (top-1 fill) | bits/char (gold span) | patterns/s |")
    print("|---|---|---|---|---|---|")
    for name, (r, secs) in rows.items():
        a = r[0]
        print(f"| {name} | {pm(a['top1'], a['n'])} | {pm(a['top5'], a['n'])} | {pm(a['char_ok'], a['chars'])} | "
              f"{a['bits'] / max(a['chars'], 1):.3f} | {a['n'] / secs:.1f} |")
    print("\n| system | " + " | ".join(f"L={L} top-1 | L={L} top-5" for L in (1, 2, 3)) + " |")
    print("|---|" + "---|" * 6)
    for name, (r, _) in rows.items():
        cells = [f"{pm(r[L]['top1'], r[L]['n'])} | {pm(r[L]['top5'], r[L]['n'])}" for L in (1, 2, 3)]
        print(f"| {name} | " + " | ".join(cells) + " |")


def breakdown(what: str, groups: dict[str, list[int]], items, fills_by_system: dict[str, list]) -> None:
    """Top-1 / top-5 of each system on groups of items (indices)."""
    print(f"\n| {what} | names | " + " | ".join(f"{s} top-1 | {s} top-5" for s in fills_by_system) + " |")
    print("|---|---|" + "---|---|" * len(fills_by_system))
    for group, idx in groups.items():
        if not idx:
            continue
        cells = []
        for fills in fills_by_system.values():
            t1 = sum(bool(fills[i]) and fills[i][0] == items[i][0] for i in idx)
            t5 = sum(items[i][0] in fills[i] for i in idx)
            cells.append(f"{pm(t1, len(idx))} | {pm(t5, len(idx))}")
        print(f"| {group} | {len(idx):,} | " + " | ".join(cells) + " |")


def label_of(name: str) -> str:
    off, n = registrable(name)
    return name[off: off + n]


def by_label(items, fills_by_system: dict[str, list], seen: set) -> None:
    """Split by whether the masked label itself occurs as a registrable label in the training
    lists (``x.dynv6.net`` is a new name, but ``dynv6`` is well known)."""
    groups = {"registrable label seen in the training lists": [], "registrable label new": []}
    for i, (name, _, _) in enumerate(items):
        groups["registrable label seen in the training lists" if label_of(name) in seen else
               "registrable label new"].append(i)
    breakdown("masked label", groups, items, fills_by_system)


def cached(parts, compute):
    """`compute()` (JSON-able), remembered under .cache/char_external by a hash of `parts`: the
    n-gram's numbers depend only on its training names, order and the masked names, and its
    exhaustive 3-character fills take minutes, so a model-only rerun reuses them."""
    import hashlib
    import json

    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    path = CACHE / f"kn-{key}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    out = compute()
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out), encoding="utf-8")
    os.replace(tmp, path)
    return out


def evaluate_set(title: str, names: list[str], bundle, kn, seed: int, label: str) -> list:
    items = [(d, *make_mask(d, seed)) for d in names]
    m_fills, m_secs = model_fills(bundle, items)
    m_bits = model_bits(bundle, items)
    k_fills, k_bits, k_secs = cached(["fills", kn.fingerprint, items], lambda: kn_fills(kn(), items))
    print_tables(title, {"character model (mlmkit predict path)": (score(items, m_fills, m_bits), m_secs),
                         label: (score(items, k_fills, k_bits), k_secs)})
    step = max(1, len(items) // 6)
    shown = [f"`{n[:s]}[{L}]{n[s + L:]}` ({n}): {(m or ['-'])[0]} / {(k or ['-'])[0]}"
             for (n, s, L), m, k in list(zip(items, m_fills, k_fills))[::step][:6]]
    print("\nexamples, pattern (gold): model top-1 / n-gram top-1: " + "; ".join(shown))
    print_agreement(items, m_fills, k_fills)
    return [items, m_fills, k_fills]


def print_agreement(items, m_fills, k_fills) -> None:
    """How often each system's top-1 is right where the other's is not. "Either" is what an
    oracle choosing, name by name, whichever system is right would score: the most any
    re-ranking between the two could reach, so a measure of what the model adds to counting."""
    m_ok = [bool(f) and f[0] == name for (name, _, _), f in zip(items, m_fills)]
    k_ok = [bool(f) and f[0] == name for (name, _, _), f in zip(items, k_fills)]
    n = len(items)
    both = sum(a and b for a, b in zip(m_ok, k_ok))
    only_m, only_k = sum(a and not b for a, b in zip(m_ok, k_ok)), sum(b and not a for a, b in zip(m_ok, k_ok))
    print(f"\ntop-1 agreement: both right {pm(both, n)}, only the model {pm(only_m, n)}, only the n-gram "
          f"{pm(only_k, n)}, either (an oracle picking the right one) {pm(both + only_m + only_k, n)}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", required=True, help="the model folder (RUN/model)")
    ap.add_argument("--train-minutes", type=float, default=None,
                    help="first train RUN (the model folder's parent) for this long, domains-tiny on the full lists")
    ap.add_argument("--train-steps", type=int, default=None,
                    help="instead of --train-minutes: train RUN for this many steps")
    ap.add_argument("--train-only", action="store_true", help="train, then stop (no evaluation)")
    ap.add_argument("--names", choices=tuple(NAME_SETS), default="lists",
                    help="training names: the two lists; more: and the extra names (char_sources.EXTRA_TRAIN_SOURCES); "
                         "words: and English words (char_sources.WORD_SOURCES)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (training and the model's fills)")
    ap.add_argument("--n", type=int, default=1500, help="names per evaluation set (at most)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="with --train-minutes: a config override for the training run (repeatable)")
    ap.add_argument("--rescore", default="auto", metavar="R|auto|off",
                    help="re-rank each name's candidates by their pseudo-log-likelihood over the span and R "
                         "characters either side (predict_pattern's rescore; auto, its default: R = 4 for a "
                         "cloze encoder, off for others)")
    ap.add_argument("--rescore-weight", type=float, default=1.0)
    ap.add_argument("--beam", type=int, default=None, help="the model's beam width (default: predict_pattern's, 10)")
    ap.add_argument("--json", default=None, metavar="FILE",
                    help="also write the headline numbers (top-1 / top-5 of both systems on both sets) to FILE")
    args = ap.parse_args(argv)
    if args.rescore != "auto":
        RESCORE.update(rescore=None if args.rescore == "off" else int(args.rescore), rescore_weight=args.rescore_weight)
    if args.beam is not None:
        RESCORE.update(beam=args.beam)
    import torch

    torch.set_num_threads(args.threads)
    model_dir = Path(args.model_dir)
    if args.train_minutes or args.train_steps:
        train_model(model_dir, args.train_minutes, args.threads, args.seed, args.sets, args.train_steps,
                    args.names)
        import resource

        peak_kib = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
        print(f"peak RSS {peak_kib / 2**20:.2f} GB (training, counting pass included)")
    if args.train_only:
        return
    headline = evaluate_all(model_dir, args.n, args.seed)
    if args.json:
        import json

        Path(args.json).write_text(json.dumps(headline, indent=2), encoding="utf-8")


def headline_numbers(items, m_fills, k_fills) -> dict:
    """Top-1 and top-5 span exact match of both systems on one set (what bench/char_budget.py plots)."""
    n = len(items)

    def rates(fills):
        return {"top1": sum(bool(f) and f[0] == name for (name, _, _), f in zip(items, fills)) / n,
                "top5": sum(name in f for (name, _, _), f in zip(items, fills)) / n}

    return {"n": n, "model": rates(m_fills), "kneser_ney": rates(k_fills)}


def evaluate_all(model_dir: Path, n: int, seed: int) -> dict:
    from mlmkit.char_mlm.data import holdout_key
    from mlmkit.char_mlm.model import load_char_model

    t0 = time.perf_counter()
    bundle = load_char_model(model_dir)
    dcfg = bundle.data
    chars = "".join(bundle.alphabet.chars)
    raw, counts = training_lists()
    names = valid_names(raw, dcfg.idn, dcfg.max_length)
    name_set = next((k for k in NAME_SETS if list(dcfg.train or []) == [str(train_file(k))]), None)
    if name_set is None:
        print(f"WARNING: the model was trained on {dcfg.train}, not on {train_file('lists')}")
    extra = extra_names(dcfg.idn, dcfg.max_length, name_set) if NAME_SETS.get(name_set) else []
    counts["extra"] = len(extra)
    lists = set(names)
    names = list(dict.fromkeys(names + extra))
    train, held = split_training(names, dcfg)
    train_keys = {holdout_key(d, "name") for d in names} | {holdout_key(r.strip().lower(), "name") for r in raw}
    ext, stats = external_set(train_keys, dcfg, set(chars), n, seed)
    indist = sample(one_per_key([d for d in held if d in lists and usable(d, set(chars))], set()), n, seed)
    order, tune = cached(["tune", chars, train], lambda: tune_kn(train, chars))
    tune["bits"] = {int(o): b for o, b in tune["bits"].items()}
    kn = lazy_kn(chars, order, train)
    print_data(counts, names, train, held, stats, bundle, tune, order, name_set)
    label = f"Kneser-Ney {order}-gram"
    seen = {label_of(d) for d in train}
    items, m_fills, k_fills = evaluate_set("External names (other lists, unseen names)", [d for d, _ in ext], bundle,
                                           kn, seed, label)
    headline = {"external": headline_numbers(items, m_fills, k_fills), "kneser_ney_order": order}
    systems = {"model": m_fills, "n-gram": k_fills}
    breakdown("external source", {src.name: [i for i, (_, s) in enumerate(ext) if s == src.name]
                                  for src in char_sources.EXTERNAL_SOURCES}, items, systems)
    by_label(items, systems, seen)
    items, m_fills, k_fills = evaluate_set("In-distribution (the training lists' held-out hash split)", indist,
                                           bundle, kn, seed, label)
    by_label(items, {"model": m_fills, "n-gram": k_fills}, seen)
    headline["held_out"] = headline_numbers(items, m_fills, k_fills)
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")
    return headline


def lazy_kn(chars: str, order: int, train: list[str]):
    """A callable that fits the n-gram on first use (never, when every result is cached), with a
    `fingerprint` of what it would be fitted on."""
    import hashlib

    from kneser_ney import CharKN

    fitted: list = []

    def get():
        if not fitted:
            fitted.append(CharKN(chars, order).fit(train))
        return fitted[0]

    get.fingerprint = [chars, order, hashlib.sha256("\n".join(train).encode()).hexdigest()]
    return get


def print_data(counts, names, train, held, stats, bundle, tune, order, name_set) -> None:
    print("## Data\n")
    for src in char_sources.TRAIN_SOURCES:
        print(f"- training: `{src.package}=={src.version}` ({src.licence}), {counts[src.name]:,} entries")
    if counts.get("extra"):
        for src in NAME_SETS[name_set]:
            print(f"- training, extra names: `{src.package}=={src.version}` ({src.licence})")
        print(f"- extra names kept (name without TLD in no external or downstream list): {counts['extra']:,}")
    print(f"- union: {len(names):,} valid distinct names; mlmkit's hash split "
          f"(validation_fraction {bundle.data.validation_fraction}, key {bundle.data.holdout_key}): "
          f"{len(train):,} training, {len(held):,} held out")
    print("\n| external source | package | licence | entries | valid, in the alphabet | new names (name without TLD not in the training lists nor an earlier source) |")
    print("|---|---|---|---|---|---|")
    for st in stats:
        s = st["source"]
        print(f"| {s.name} | `{s.package}=={s.version}` | {s.licence} | {st['raw']:,} | {st['valid']:,} | {st['new']:,} |")
    bits = ", ".join(f"{o}: {b:.3f}" for o, b in tune["bits"].items())
    print(f"\nKneser-Ney order tuned on a dev split of the training names ({tune['fit_names']:,} fit, "
          f"{tune['dev_names']:,} dev; bits/char by order: {bits}): order {order}, refit on all {len(train):,}")
    print(f"model: {bundle.model_cfg.arch}/{bundle.model_cfg.size}, alphabet {len(bundle.alphabet.chars)} characters")


if __name__ == "__main__":
    main()
