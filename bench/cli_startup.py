"""Start-up time of the `mlmkit` commands that do no work: `--help`, `--version`, `presets`,
`config` and shell completion (goal: median <= 0.3 s each), next to the floor of `python -c pass`.

    python bench/cli_startup.py                       # this checkout's src/, 10 runs per command
    python bench/cli_startup.py -n 20                 # more runs
    python bench/cli_startup.py --src /tmp/old/src    # another copy of the package (e.g. an older commit)

Each run is a fresh process (`python -m mlmkit ...`): start-up is what a user waits for at every
command, and in one process the second import would be free. The commands run round-robin
(command 1, 2, ..., then again) so that background load on a shared machine hits every command
alike; the median is the number to compare, the min the best case. Completion runs as the shell
runs it (`_MLMKIT_COMPLETE=complete_bash`, completing `mlmkit ex`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL_S = 0.3
COMMANDS: dict[str, tuple[list[str], dict[str, str]]] = {
    "python -c pass": (["-c", "pass"], {}),
    "mlmkit --help": (["-m", "mlmkit", "--help"], {}),
    "mlmkit --version": (["-m", "mlmkit", "--version"], {}),
    "mlmkit presets": (["-m", "mlmkit", "presets"], {}),
    "mlmkit config": (["-m", "mlmkit", "config"], {}),
    "completion (mlmkit ex<TAB>)": (["-m", "mlmkit"], {"_MLMKIT_COMPLETE": "complete_bash",
                                                        "COMP_WORDS": "mlmkit ex", "COMP_CWORD": "1"}),
}


def time_once(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0, r.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=10, help="runs per command (default 10)")
    parser.add_argument("--src", default=str(Path(__file__).resolve().parents[1] / "src"),
                        help="folder holding the mlmkit package to time (default: this checkout's src/)")
    args = parser.parse_args()
    base = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [args.src, os.environ.get("PYTHONPATH")])))
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    codes: dict[str, set[int]] = {name: set() for name in COMMANDS}
    for _ in range(args.runs):
        for name, (argv, extra) in COMMANDS.items():
            seconds, code = time_once(argv, {**base, **extra})
            times[name].append(seconds)
            codes[name].add(code)
    print(f"{args.runs} fresh processes per command, package from {args.src}")
    print(f"{'command':<30} {'median s':>9} {'min s':>7}  exit")
    for name, ts in times.items():
        med = statistics.median(ts)
        flag = "" if name.startswith("python") or med <= GOAL_S else f"  (over the {GOAL_S} s goal)"
        print(f"{name:<30} {med:9.3f} {min(ts):7.3f}  {','.join(map(str, sorted(codes[name])))}{flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
