"""`mlmkit stats` for character data (domain names): what the names look like before training.

One streaming pass over the run's sources (`DomainSource`: files read in chunks, or a hub data
set) with the family's own normalisation and validity rules (`DomainFilter`, counted by reason or
stopping with file:line as `data.on_bad_record` says). Names longer than `data.max_length` are
valid here and counted apart: `train` skips them (reason `longer_than_max_length`), and their
lengths are what tells you which max_length to pick.

Memory is constant in the corpus: fixed histograms (name and label lengths, labels per name),
bounded counters (characters, TLDs), and the duplicate count on at most `sample` names
(8 bytes each; said in the output when capped).
"""

from __future__ import annotations

from array import array
from typing import Any, Callable, Optional

import numpy as np

from ..report.progress import progress_bar
from ..report.stats import LengthHistogram, TopCounter, key_values, length_panel, num, pct, table
from .data import MAX_LABEL_LENGTH, ON_BAD_HINT, DomainFilter, DomainSource

DEFAULT_SAMPLE = 2_000_000  # names whose duplicates are counted (16 MB of hashes at most)
TOP = 10


class NameScan:
    """Counters and histograms of valid names, fed one name at a time."""

    def __init__(self, max_length: int, sample: int):
        self.max_length, self.sample = max_length, sample
        self.name_len, self.label_len, self.labels = LengthHistogram(), LengthHistogram(), LengthHistogram()
        self.chars, self.tlds = TopCounter(20_000), TopCounter(10_000)
        self.valid = self.over_max = self.idn = 0
        self.hashes = array("q")

    def add(self, name: str) -> None:
        self.valid += 1
        self.name_len.add(len(name))
        if len(name) > self.max_length:
            self.over_max += 1
        parts = name.split(".")
        self.labels.add(len(parts))
        self.label_len.add([len(p) for p in parts])
        if len(parts) > 1:
            self.tlds.add(parts[-1])
        if not name.isascii() or "xn--" in name:
            self.idn += 1
        for c in name:
            self.chars.add(c)
        if len(self.hashes) < self.sample:
            self.hashes.append(hash(name))

    def duplicates(self) -> int:
        """Names among the first `sample` that repeat an earlier one."""
        h = np.frombuffer(self.hashes, dtype=np.int64) if len(self.hashes) else np.zeros(0, np.int64)
        return int(len(h) - len(np.unique(h)))


def char_stats(cfg, *, log: Callable[[str], None] = print, progress: bool = True,
               sample: Optional[int] = None, vocab_sizes=None) -> dict[str, Any]:
    """The statistics of the run's names (a JSON-ready dict; `format_char_stats` prints it)."""
    from ..errors import ConfigError

    d = cfg.data
    if not d.train:
        raise ConfigError("config key 'data.train': no data given (mlmkit stats DATA)")
    source = DomainSource(d.train, d)
    ctx, keep = source.ctx(), DomainFilter(d.idn, max_length=None)
    scan = NameScan(d.max_length, sample or DEFAULT_SAMPLE)
    rows = 0
    bar = progress_bar(desc="reading", unit="name", unit_scale=True, disable=not progress, leave=False)
    for rec in source.iter_records(ctx):
        rows += 1
        name = keep(rec, ctx)
        if name is not None:
            scan.add(name)
            if d.max_samples is not None and scan.valid >= d.max_samples:
                break
        if rows % 10_000 == 0:
            bar.update(10_000)
    bar.update(rows % 10_000)
    bar.close()
    return _result(cfg, scan, ctx.stats, rows)


def _result(cfg, scan: NameScan, read, rows: int) -> dict[str, Any]:
    d = cfg.data
    invalid = read.bad_counts()
    panels = [length_panel(scan.name_len, "name length", "characters", marker=d.max_length,
                           marker_label=f"max_length {d.max_length}", ylabel="names"),
              length_panel(scan.label_len, "label length (the dot-separated parts)", "characters",
                           marker=MAX_LABEL_LENGTH, marker_label=f"label limit {MAX_LABEL_LENGTH}", ylabel="labels"),
              length_panel(scan.labels, "labels per name", "labels", ylabel="names")]
    label_counts = {int(i): int(c) for i, c in enumerate(scan.labels.exact) if c}
    return {
        "family": "char", "data": list(d.train), "rows": rows, "valid": scan.valid,
        "invalid": sum(invalid.values()), "invalid_reasons": invalid, "examples": {k: v.replace(ON_BAD_HINT, "") for k, v in read.examples.items()},
        "empty_lines": read.skipped.get("empty", 0), "max_length": d.max_length,
        "over_max_length": scan.over_max, "idn_names": scan.idn,
        "name_length": scan.name_len.summary(), "label_length": scan.label_len.summary(),
        "labels_per_name": label_counts,
        "alphabet": {"distinct": len(scan.chars), "exact": scan.chars.exact,
                     "counts": dict(scan.chars.top(len(scan.chars)))},
        "tlds": {"distinct": len(scan.tlds), "exact": scan.tlds.exact, "top": dict(scan.tlds.top(TOP))},
        "duplicates": scan.duplicates(), "duplicates_checked": len(scan.hashes),
        "histograms": panels,
    }


def format_char_stats(r: dict[str, Any]) -> list[str]:
    """The report `mlmkit stats` prints (aligned text)."""
    out = [f"data: {', '.join(r['data'])}", ""]
    checked = r["duplicates_checked"]
    dup_note = "" if checked == r["valid"] else f" (among the first {num(checked)} names)"
    out += key_values([("rows", r["rows"]), ("valid names", f"{num(r['valid'])} ({pct(r['valid'], r['rows'])})"),
                       ("invalid", f"{num(r['invalid'])} ({pct(r['invalid'], r['rows'])})"),
                       (f"over max_length {r['max_length']}",
                        f"{num(r['over_max_length'])} ({pct(r['over_max_length'], r['valid'])} of valid; "
                        "train skips them)"),
                       ("IDN names", f"{num(r['idn_names'])} (Unicode or xn-- labels)"),
                       ("duplicates", f"{num(r['duplicates'])}{dup_note}")])
    if r["invalid_reasons"]:
        out += ["", "invalid rows by reason:"] + table(["reason", "rows"], sorted(
            r["invalid_reasons"].items(), key=lambda kv: -kv[1]))
        first = next(iter(r["examples"].values()), None)
        out += [f"  first: {first}"] if first else []
    out += ["", "lengths:"]
    out += table(["", "min", "mean", "median", "p90", "p99", "max"],
                 [["name (characters)"] + list(r["name_length"].values()),
                  ["label (characters)"] + list(r["label_length"].values())])
    out += ["", "labels per name:"] + table(["labels", "names"], [[str(k), v] for k, v in r["labels_per_name"].items()])
    tl = r["tlds"]
    out += ["", f"top {TOP} TLDs ({num(tl['distinct'])} distinct{'' if tl['exact'] else ', approximate'}):"]
    out += table(["TLD", "names", "share"], [[k, v, pct(v, r["valid"])] for k, v in tl["top"].items()])
    al = r["alphabet"]
    total = sum(al["counts"].values())
    shown = "  ".join(f"{c!r}:{pct(n, total)}" for c, n in list(al["counts"].items())[:20])
    rare = list(al["counts"])[20:][-10:]
    out += ["", f"alphabet: {al['distinct']} distinct characters{'' if al['exact'] else ' (approximate)'}",
            f"  most common: {shown}"] + ([f"  rarest: {' '.join(repr(c) for c in rare)}"] if rare else [])
    return out
