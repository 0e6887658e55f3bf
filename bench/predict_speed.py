"""Fill speed of `mlmkit predict` on a character model: many patterns in one call.

    python bench/predict_speed.py --model-dir RUN/model [--n 1500] [--seed 0] [--threads N]

Patterns: held-out names of the bundled domain sample (`mlmkit:samples/domains.txt`, the hash
split `mlmkit train` holds out), each with one hidden span of 1-3 characters of known length
inside its registrable part (``goo[3].com``), chosen by a seeded RNG. Times the CLI's own path
(`char_mlm.predict.predict_patterns`: model loaded once, all patterns in one call) and, on the
first 100 patterns, one call per pattern, and checks both give the same fills. Prints patterns/s;
the goal set for the character model is >= 20 patterns/s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from mlmkit.char_mlm.data import is_validation  # noqa: E402
from mlmkit.char_mlm.model import load_char_model  # noqa: E402
from mlmkit.char_mlm.predict import predict_patterns  # noqa: E402
from mlmkit.data.records import bundled_path  # noqa: E402


def patterns(n: int, seed: int) -> list[str]:
    path = bundled_path("mlmkit:samples/domains.txt")
    names = [l.strip() for l in open(path, encoding="utf-8") if l.strip()]
    held = sorted({d for d in names if is_validation(d, 0.05) and d.count(".") == 1 and len(d.split(".")[0]) >= 4})
    rng = random.Random(seed)
    out = []
    for name in rng.sample(held, min(n, len(held))):
        label, tld = name.split(".")
        length = rng.randint(1, 3)
        start = rng.randint(0, len(label) - length)
        out.append(f"{label[:start]}[{length}]{label[start + length:]}.{tld}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: as mlmkit predict sets them)")
    ap.add_argument("--rescore", type=int, default=None, metavar="R", help="as `mlmkit predict --rescore R`")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pats = patterns(args.n, args.seed)
    bundle = load_char_model(args.model_dir)
    t = time.perf_counter()
    together = predict_patterns(bundle, pats, top_k=5, rescore=args.rescore)
    batched_s = time.perf_counter() - t
    t = time.perf_counter()
    single = [predict_patterns(bundle, [p], top_k=5, rescore=args.rescore)[0] for p in pats[:100]]
    single_s = time.perf_counter() - t
    same = all([f["text"] for f in a["fills"]] == [f["text"] for f in b["fills"]] for a, b in zip(together, single))
    print(f"{len(pats)} patterns in one call: {batched_s:.2f} s = {len(pats) / batched_s:.1f} patterns/s")
    print(f"first 100 one call each: {single_s:.2f} s = {100 / single_s:.1f} patterns/s; same fills: {same}")
    print(f"threads {torch.get_num_threads()}; goal >= 20 patterns/s: {'met' if len(pats) / batched_s >= 20 else 'NOT met'}")


if __name__ == "__main__":
    main()
