"""A seeded sample of the chaos scenarios (tests/chaos/harness.py) in every test run; the full
randomised suite is `make chaos`. The scenarios run in a fresh process: the harness forks its runs
from a parent that has only imported torch, never from this test session."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# One scenario of each fault, the two families alternating (seeds 0-5 map to the faults in order).
SEEDS = ["0", "1", "2", "3", "4", "5"]


def test_a_seeded_sample_of_chaos_scenarios_passes(tmp_path):
    proc = subprocess.run([sys.executable, str(HERE / "run.py"), "--seeds", *SEEDS, "--root", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    summary = [l for l in proc.stdout.splitlines() if l.startswith("chaos:")]
    assert proc.returncode == 0 and summary, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert f"{len(SEEDS)} passed, 0 failed" in summary[0], summary[0]
