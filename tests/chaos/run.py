#!/usr/bin/env python3
"""`make chaos`: run N randomised fault scenarios (tests/chaos/harness.py) and print a summary.

    python tests/chaos/run.py --scenarios 200            # seeds 0..199
    python tests/chaos/run.py --seeds 17 42              # replay particular scenarios

Exit status 1 if any scenario failed (its folder is kept under --root for inspection)."""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import run_many  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", type=int, default=200)
    ap.add_argument("--first", type=int, default=0, help="seed of the first scenario")
    ap.add_argument("--seeds", type=int, nargs="*", help="run exactly these seeds")
    ap.add_argument("--root", default=None, help="work folder (default: a new temporary one, removed if all pass)")
    args = ap.parse_args()
    seeds = args.seeds if args.seeds else list(range(args.first, args.first + args.scenarios))
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="mlmkit-chaos-"))
    t = time.monotonic()
    outcomes = run_many(root, seeds, log=lambda s: print(s, flush=True))
    failed = [o for o in outcomes if o.failures]
    kinds = collections.Counter(f"{o.family}/{o.fault}" for o in outcomes)
    missed = sum(not o.landed for o in outcomes)
    print(f"chaos: {len(outcomes)} scenarios ran in {(time.monotonic() - t) / 60:.1f} min, "
          f"{len(outcomes) - len(failed)} passed, {len(failed)} failed "
          f"({missed} ended before their fault landed; {', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})")
    if failed:
        print(f"failed seeds: {' '.join(str(o.seed) for o in failed)} (work folder kept: {root})")
        return 1
    if not args.root:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
