"""The pieces `mlmkit stats` shares between the families: fixed-size summaries of a stream
(`LengthHistogram`, `TopCounter`), aligned text tables, and the histogram PNG.

Everything here keeps constant memory however long the corpus: a histogram is a fixed array of
counters (exact for lengths below `EXACT`, geometric bins of at most 1/16 relative width above),
a counter of keys keeps at most `capacity` of them (exact until then, the largest counts after).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from ..errors import MlmkitError

EXACT = 4096  # lengths 0..EXACT-1 are counted exactly
_STEPS_PER_DOUBLING = 16
_DOUBLINGS = 40  # up to EXACT * 2**40: more than any record


class LengthHistogram:
    """Counts of non-negative integers (record lengths) in a fixed number of bins: exact below
    `EXACT`, geometric above. Count, sum, min and max are exact; quantiles are exact below
    `EXACT` and the lower edge of their bin above it."""

    def __init__(self):
        self.exact = np.zeros(EXACT, np.int64)
        self.geo = np.zeros(_STEPS_PER_DOUBLING * _DOUBLINGS, np.int64)
        self.count = self.total = 0
        self.min: Optional[int] = None
        self.max: Optional[int] = None

    def add(self, values) -> None:
        """Add one length or an array of lengths."""
        v = np.atleast_1d(np.asarray(values, dtype=np.int64))
        if not len(v):
            return
        if v.min() < 0:
            raise ValueError("lengths must be >= 0")
        small = v[v < EXACT]
        self.exact += np.bincount(small, minlength=EXACT)
        big = v[v >= EXACT]
        if len(big):
            idx = np.floor(np.log2(big / EXACT) * _STEPS_PER_DOUBLING).astype(np.int64)
            np.add.at(self.geo, np.minimum(idx, len(self.geo) - 1), 1)
        self.count += len(v)
        self.total += int(v.sum())
        self.min = int(v.min()) if self.min is None else min(self.min, int(v.min()))
        self.max = int(v.max()) if self.max is None else max(self.max, int(v.max()))

    def _geo_edge(self, i: int) -> int:
        return int(math.ceil(EXACT * 2 ** (i / _STEPS_PER_DOUBLING)))

    def quantile(self, q: float) -> int:
        """The smallest length with at least a share `q` of the values at or below it."""
        if not self.count:
            return 0
        rank = max(1, math.ceil(q * self.count))
        cum = np.cumsum(self.exact)
        if cum[-1] >= rank:
            return int(np.searchsorted(cum, rank))
        gi = int(np.searchsorted(np.cumsum(self.geo) + cum[-1], rank))
        return min(max(self._geo_edge(gi), self.min or 0), self.max or 0)

    def count_above(self, limit: int) -> int:
        """How many values are > `limit` (exact when `limit` < EXACT)."""
        if limit < EXACT:
            return int(self.exact[limit + 1:].sum() + self.geo.sum())
        edges = np.array([self._geo_edge(i) for i in range(len(self.geo))])
        return int(self.geo[edges > limit].sum())

    def summary(self) -> dict[str, Any]:
        mean = self.total / self.count if self.count else 0.0
        return {"min": self.min or 0, "mean": round(mean, 2), "median": self.quantile(0.5),
                "p90": self.quantile(0.9), "p99": self.quantile(0.99), "max": self.max or 0}

    def bins(self, upper: int, n: int = 40) -> dict[str, list]:
        """About `n` equal-width bins from 0 to `upper` for a plot; values above `upper` go in the
        last bin (`overflow` says how many)."""
        width = max(1, math.ceil((upper + 1) / n))
        nbins = math.ceil((upper + 1) / width)
        counts = np.zeros(nbins, np.int64)
        lim = min(EXACT, nbins * width)
        counts[: math.ceil(lim / width)] += np.add.reduceat(self.exact[:lim], np.arange(0, lim, width))
        overflow = int(self.exact[nbins * width:].sum()) if nbins * width < EXACT else 0
        for i in np.nonzero(self.geo)[0]:
            b = self._geo_edge(int(i)) // width
            if b < nbins:
                counts[b] += self.geo[i]
            else:
                overflow += int(self.geo[i])
        counts[-1] += overflow
        return {"edges": [i * width for i in range(nbins + 1)], "counts": counts.tolist(), "overflow": overflow}


class TopCounter:
    """Counts of keys with at most `capacity` kept: exact until more distinct keys arrive, then
    the rarest half is dropped each time it fills (`exact` turns False; the top keys stay right
    unless the stream is very flat)."""

    def __init__(self, capacity: int = 10_000):
        self.capacity = capacity
        self.counts: dict[Any, int] = {}
        self.exact = True

    def add(self, key, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n
        if len(self.counts) > self.capacity:
            keep = sorted(self.counts.items(), key=lambda kv: -kv[1])[: self.capacity // 2]
            self.counts = dict(keep)
            self.exact = False

    def update(self, keys: Iterable) -> None:
        for k in keys:
            self.add(k)

    def top(self, n: int) -> list[tuple[Any, int]]:
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:n]

    def __len__(self) -> int:
        return len(self.counts)


def pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.2f}%" if whole else "-"


def num(x: Any) -> str:
    """1234567 -> '1,234,567'; 1.2345 -> '1.23'."""
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:,.2f}"
    return str(x)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], indent: str = "  ") -> list[str]:
    """Aligned text columns (the first left-aligned, the others right-aligned)."""
    cells = [[str(h) for h in headers]] + [[num(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for j, r in enumerate(cells):
        line = "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        out.append(indent + line.rstrip())
        if j == 0:
            out.append(indent + "  ".join("-" * w for w in widths))
    return out


def key_values(pairs: Iterable[tuple[str, Any]], indent: str = "  ") -> list[str]:
    pairs = [(k, num(v)) for k, v in pairs]
    width = max((len(k) for k, _ in pairs), default=0)
    return [f"{indent}{k.ljust(width)}  {v}" for k, v in pairs]


def plot_histograms(panels: list[dict], out: str | Path, *, title: str | None = None, dpi: int = 110) -> Path:
    """A PNG with one bar chart per panel ({"title", "xlabel", "edges", "counts", "overflow",
    "marker": value or None, "marker_label"}); the marker (e.g. max_length) is a vertical line."""
    try:
        import matplotlib
    except ImportError:
        raise MlmkitError("--plot needs matplotlib (pip install 'mlmkit[plots]' or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        raise MlmkitError("nothing to plot")
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.9 * len(panels)), squeeze=False)
    for ax, p in zip(axes[:, 0], panels):
        edges, counts = p["edges"], p["counts"]
        widths = [b - a for a, b in zip(edges, edges[1:])]
        if max(widths) == 1:  # one bar per integer: centred on it
            ax.bar(edges[:-1], counts, width=0.9, color="#4878a8")
        else:
            ax.bar(edges[:-1], counts, width=widths, align="edge", color="#4878a8", edgecolor="white", linewidth=0.3)
        if p.get("marker") is not None:
            ax.axvline(p["marker"], color="#c03030", linestyle="--", linewidth=1.5,
                       label=p.get("marker_label") or f"{p['marker']}")
            ax.legend(fontsize=8, loc="upper right")
        more = f"  (last bar: {p['overflow']:,} longer)" if p.get("overflow") else ""
        ax.set_title(p["title"] + more, fontsize=10)
        ax.set_xlabel(p.get("xlabel", ""))
        ax.set_ylabel(p.get("ylabel", "records"))
        ax.grid(True, axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97) if title else (0, 0, 1, 1))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def length_panel(hist: LengthHistogram, title: str, xlabel: str, marker: Optional[int] = None,
                 marker_label: str | None = None, ylabel: str = "records") -> dict:
    """A plot panel of `hist` from 0 to a little past its p99 (and the marker)."""
    upper = max(hist.quantile(0.99) * 11 // 10, (marker or 0) * 11 // 10, 8)
    upper = min(upper, max(hist.max or 0, marker or 0, 8))
    return {"title": title, "xlabel": xlabel, **hist.bins(upper), "marker": marker,
            "marker_label": marker_label, "ylabel": ylabel}
