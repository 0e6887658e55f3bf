"""The fixed-size pieces of `mlmkit stats`: histograms and counters stay the same size however
much they are fed; quantiles are exact below EXACT; the PNG is written."""

import numpy as np
import pytest

from mlmkit.report.stats import EXACT, LengthHistogram, TopCounter, length_panel, plot_histograms, table


def test_histogram_is_exact_for_small_lengths():
    h = LengthHistogram()
    h.add([3, 1, 2, 10])
    h.add(7)
    assert h.summary() == {"min": 1, "mean": 4.6, "median": 3, "p90": 10, "p99": 10, "max": 10}
    assert h.count_above(6) == 2 and h.count_above(10) == 0


def test_histogram_memory_is_fixed_when_fed_100k_lengths():
    h = LengthHistogram()
    sizes = (h.exact.nbytes, h.geo.nbytes)
    rng = np.random.default_rng(0)
    values = rng.integers(0, 1_000_000, 100_000)
    for part in np.array_split(values, 100):
        h.add(part)
    assert (h.exact.nbytes, h.geo.nbytes) == sizes
    assert h.count == 100_000 and h.total == int(values.sum())
    assert h.min == int(values.min()) and h.max == int(values.max())
    assert h.count_above(EXACT - 1) == int((values >= EXACT).sum())
    # above EXACT the quantile is its bin's lower edge: within 1/16 of a doubling (4.4%)
    true = int(np.quantile(values, 0.5, method="inverted_cdf"))
    assert true * 0.95 <= h.quantile(0.5) <= true


def test_bins_put_the_long_tail_in_the_last_bar():
    h = LengthHistogram()
    h.add([1, 2, 2, 5, 9, 50_000])
    b = h.bins(9, n=10)
    assert b["edges"] == list(range(11)) and b["counts"] == [0, 1, 2, 0, 0, 1, 0, 0, 0, 2]
    assert b["overflow"] == 1
    panel = length_panel(h, "t", "x", marker=4)
    assert sum(panel["counts"]) == 6 and panel["marker"] == 4


def test_top_counter_is_exact_until_full_then_keeps_the_largest():
    c = TopCounter(capacity=4)
    c.update(["com"] * 5 + ["net"] * 3 + ["org"])
    assert c.exact and c.top(2) == [("com", 5), ("net", 3)]
    c.update(f"x{i}" for i in range(100))
    assert len(c) <= 4 and not c.exact and c.top(1) == [("com", 5)]


def test_table_aligns_columns():
    lines = table(["", "n"], [["a", 1234], ["bb", 5]])
    assert lines == ["          n", "  --  -----", "  a   1,234", "  bb      5"]


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    h = LengthHistogram()
    h.add([1, 1, 2, 3])
    out = plot_histograms([length_panel(h, "lengths", "tokens", marker=2)], tmp_path / "p" / "h.png", title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 1000
