"""Does the character model keep learning with compute, beyond what counting learns? A budget
curve: train a recipe for several CPU budgets, and at each point measure the fills on the
external benchmark's names against Kneser-Ney on the same names, and the encoder fine-tuned on the
downstream tasks against a TF-IDF + logistic-regression baseline on the same splits.

    python bench/char_budget.py                                  # the default plan (hours)
    python bench/char_budget.py --points default:10,default:90,default:30 --step-budget
    python bench/char_budget.py --points default:0.5 --tasks free-vs-disposable --sizes 300 --seeds 0   # a smoke run

Each point is `RECIPE:MINUTES`; recipes are in `RECIPES` (`default`: the `domains-tiny` preset with
262,144 count rows, as shipped before the compact count store; `best`: 4x the count rows, the
preset now; `before`: the preset before it had counts;
`more`: the preset on the lists and about 160k more real names, `char_external.py --names more`,
paced at `default`'s step rate; `families`: the preset with `model.head_ngram_count_families`,
paced the same; `onename`: that and `data.one_name_per_family`, paced the same; `more-onename`: both levers;
`words`: `more` and about 225k English words, `char_external.py --names words`, paced the same).
Per point, in its own process each: training (`char_external.py --train-minutes`, 2 threads on an
idle machine: say what else ran; with `--step-budget`, a recipe's later points train for the steps
their minutes buy at the rate of its first point in `--points`, so only that one needs the machine
to itself, and the others give the same model whatever else runs), the external
fills (`char_external.py --json`), and fine-tuning the pre-trained encoder (`char_downstream.py
--arms pre-trained --json`) per task and number of labels. The TF-IDF baseline (`tfidf_baseline.py`,
scikit-learn) is fitted once per task. Every stage's result is kept under `--out` (default
`.cache/char_budget/`) and reused when the script runs again, so a long plan can be resumed; a
point is trained again only with `--retrain`. Prints one markdown table and, with matplotlib, draws
`--plot` (default docs/char-budget.png).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

RECIPES: dict[str, list[str]] = {
    # `domains-tiny` with 262,144 count rows, as it was shipped before the compact count store
    "default": ["model.head_ngram_count_buckets=262144"],
    # 4x the count rows: `domains-tiny` as shipped now
    "best": ["model.head_ngram_count_buckets=1048576"],
    # `domains-tiny` before it carried the counted memory (a bidirectional 3-layer encoder)
    "before": ["model.arch=scratch", "model.num_layers=3", "model.head_ngram_dim=32", "model.head_ngram_counts=false",
               "model.head_ngram_joint=0", "model.head_ngram_count_buckets=0", "model.head_ngram_max_dist=8"],
}
# the training names of a recipe when not the two lists (`char_external.py --names`)
NAMES = {"more": "more"}
# the preset on the lists and the extra names (HSTS preload list), Kneser-Ney on the same; with
# the lists' alphabet (`char_external.lists_alphabet`), so that it fills the same names
RECIPES["more"] = list(RECIPES["default"])
# the preset with the counts' families (`model.head_ngram_count_families`): a change to the counting
# pass only, so its steps cost what the preset's do
RECIPES["families"] = RECIPES["default"] + ["model.head_ngram_count_families=true"]
# the preset trained on one name of each family a pass (`data.one_name_per_family`), with the
# counts' families: a name's twins neither teach it again in a pass nor lengthen its contexts
RECIPES["onename"] = RECIPES["default"] + ["data.one_name_per_family=true", "model.head_ngram_count_families=true"]
# both: the extra names, one name of each family a pass
RECIPES["more-onename"] = RECIPES["more"] + RECIPES["onename"]
NAMES["more-onename"] = "more"
# capacity: the preset's encoder twice as wide (hidden 256, feed-forward 1,024; `mini`'s widths at
# the preset's 2 layers); `wide:10` on an idle machine measures its own step rate, which paces
# `wide-more` (the extra names) at the longer budgets
RECIPES["wide"] = RECIPES["default"] + ["model.size=mini", "model.num_layers=2"]
RECIPES["wide-more"] = RECIPES["wide"] + RECIPES["more"]
NAMES["wide-more"] = "more"
# span length: training windows of 1..8 characters (the preset: 1..3), as long as the held-out
# spans that training's logged evaluation masks (`masking.max_span` 8); `windows8:10` by the clock
RECIPES["windows8"] = RECIPES["default"] + ["model.cloze_windows=8"]
# English words: the preset on the lists, the extra names and about 225k English words, one a line
# (`char_external.py --names words`), Kneser-Ney on the same; paced at `default`'s step rate
RECIPES["words"] = list(RECIPES["default"])
NAMES["words"] = "words"
# the learning rate (the preset's 3e-3 was chosen for the bidirectional encoder it had before the
# cloze one): half and twice it, on the 320k names, paced at `default`'s step rate
RECIPES["more-lrhalf"] = RECIPES["default"] + ["optim.lr=1.5e-3"]
RECIPES["more-lrdouble"] = RECIPES["default"] + ["optim.lr=6e-3"]
NAMES.update({"more-lrhalf": "more", "more-lrdouble": "more"})
# the best recipe (4x the count rows) on the 320k names; `best:10` on an idle machine measures its
# own step rate, which paces it
RECIPES["best-more"] = list(RECIPES["best"])
NAMES["best-more"] = "more"
# a recipe that differs only in its names or its counting pass takes the step rate of the one with
# its model: the extra names are as long as the lists' (14.4 characters on average)
STEP_RATE_OF = {"more": "default", "families": "default", "onename": "default", "more-onename": "default",
                "wide-more": "wide", "words": "default", "more-lrhalf": "default", "more-lrdouble": "default",
                "best-more": "best"}
DEFAULT_POINTS = "default:10,default:30,default:90"


def _run(cmd: list[str], log: Path) -> float:
    """Run a stage in its own process, its output to `log`; its wall time (s). A failed stage stops
    the plan with the log's tail."""
    t = time.perf_counter()
    with open(log, "w", encoding="utf-8") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if code:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed (exit {code}); {log}:\n{tail}")
    return time.perf_counter() - t


def train_point(recipe: str, minutes: float, folder: Path, threads: int, retrain: bool,
                steps: int | None = None) -> dict:
    """Train the point (unless done before) and return what training measured; `steps`: train
    for that many steps instead of `minutes` (`--step-budget`)."""
    done = folder / "train.json"
    if done.is_file() and not retrain:
        return json.loads(done.read_text())
    budget = ["--train-steps", str(steps)] if steps else ["--train-minutes", str(minutes)]
    cmd = [sys.executable, str(HERE / "char_external.py"), "--model-dir", str(folder / "run" / "model"),
           *budget, "--threads", str(threads), "--train-only", "--names", NAMES.get(recipe, "lists")]
    for s in RECIPES[recipe]:
        cmd += ["--set", s]
    wall = _run(cmd, folder / "train.log")
    peak = re.search(r"peak RSS ([\d.]+) GB", (folder / "train.log").read_text(errors="replace"))
    summary = json.loads((folder / "run" / "summary.json").read_text())
    model_bytes = sum(p.stat().st_size for p in (folder / "run" / "model").rglob("*") if p.is_file())
    out = {"steps": summary["step"], "train_seconds": summary["train_seconds"], "wall_seconds": round(wall),
           "model_mb": round(model_bytes / 2**20), "peak_rss_gb": float(peak.group(1)) if peak else None,
           "budget": f"{steps} steps" if steps else f"{minutes:g} min"}
    done.write_text(json.dumps(out, indent=2))
    return out


def fills_point(folder: Path, threads: int) -> dict:
    path = folder / "external.json"
    if not path.is_file():
        # fills as `mlmkit predict` makes them (`--rescore auto`: a cloze model's are re-ranked)
        cmd = [sys.executable, str(HERE / "char_external.py"), "--model-dir", str(folder / "run" / "model"),
               "--threads", str(threads), "--json", str(path)]
        _run(cmd, folder / "external.log")
    return json.loads(path.read_text())


def downstream_point(folder: Path, task: str, size: int | None, seeds: str) -> list[float]:
    name = f"{task}-{size or 'all'}"
    path = folder / f"downstream-{name}.json"
    if not path.is_file():
        cmd = [sys.executable, str(HERE / "char_downstream.py"), "--model-dir", str(folder / "run" / "model"),
               "--task", task, "--seeds", seeds, "--arms", "pre-trained", "--json", str(path),
               "--out", str(folder / f"finetune-{name}")]
        if size:
            cmd += ["--train-size", str(size)]
        _run(cmd, folder / f"downstream-{name}.log")
    return [r["accuracy"] for r in json.loads(path.read_text())["pre-trained"]]


def tfidf_baseline(out: Path, task: str, sizes: list[int | None], seeds: list[int]) -> dict:
    """{size: [test accuracy per seed]} of the TF-IDF baseline (the analyzer chosen on validation)."""
    path = out / f"tfidf-{task}-{'_'.join(str(s or 'all') for s in sizes)}-{'_'.join(map(str, seeds))}.json"
    if not path.is_file():
        import char_tasks
        import tfidf_baseline as tb

        rows = char_tasks.labelled_names(task)
        fits = tb.run(rows, seeds, sizes, log=lambda s: None)
        chosen, _ = tb.choose_analyzer(fits, tb.ANALYZERS)
        test = char_tasks.split(rows, seeds[0], None)[2]  # the test split does not depend on seed or size
        path.write_text(json.dumps({str(s): [fits[(chosen, s, seed)].score(test)["accuracy"] for seed in seeds]
                                    for s in sizes}))
    return {None if k == "None" else int(k): v for k, v in json.loads(path.read_text()).items()}


def mean_sd(vals: list[float]) -> str:
    return f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals) if len(vals) > 1 else 0.0:.3f}"


def print_table(points: list[dict], tasks: list[str], sizes: list[int | None], tfidf: dict) -> None:
    print("\n| recipe | CPU min | steps | model MB | peak RSS GB | external top-1 model / Kneser-Ney | held-out top-1 "
          "model / Kneser-Ney | " + " | ".join(f"{t} {s or 'all'}" for t in tasks for s in sizes) + " |")
    print("|---|---|---|---|---|---|---|" + "---|" * (len(tasks) * len(sizes)))
    for p in points:
        ext, held, tr = p["fills"]["external"], p["fills"]["held_out"], p["train"]
        cells = [mean_sd(p["downstream"][(t, s)]) for t in tasks for s in sizes]
        print(f"| {p['recipe']} | {p['minutes']:g} | {tr['steps']:,} | {tr['model_mb']} | {tr['peak_rss_gb']} | "
              f"{ext['model']['top1']:.3f} / {ext['kneser_ney']['top1']:.3f} | "
              f"{held['model']['top1']:.3f} / {held['kneser_ney']['top1']:.3f} | " + " | ".join(cells) + " |")
    print("| TF-IDF + logistic regression | - | - | - | - | - | - | "
          + " | ".join(mean_sd(tfidf[t][s]) for t in tasks for s in sizes) + " |")


def plot(points: list[dict], tasks: list[str], sizes: list[int | None], tfidf: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot)")
        return
    fig, axes = plt.subplots(1, 1 + len(tasks), figsize=(5 * (1 + len(tasks)), 4))
    # downstream: a colour per number of labels (its TF-IDF line's), a marker per recipe
    for r, recipe in enumerate(sorted({p["recipe"] for p in points})):
        ps = sorted((p for p in points if p["recipe"] == recipe), key=lambda p: p["minutes"])
        x, marker = [p["minutes"] for p in ps], "os^Dvp*"[r % 7]
        axes[0].plot(x, [p["fills"]["external"]["model"]["top1"] for p in ps], marker + "-", label=f"{recipe} recipe")
        for ax, task in zip(axes[1:], tasks):
            for i, s in enumerate(sizes):
                ax.plot(x, [statistics.mean(p["downstream"][(task, s)]) for p in ps], marker + "-", color=f"C{i}",
                        label=f"{recipe}" if i == 0 else None)
    kn = {}  # Kneser-Ney on each recipe's training names (the same for recipes on the same names)
    for p in points:
        kn.setdefault(NAMES.get(p["recipe"], "lists"), []).append(p["fills"]["external"]["kneser_ney"]["top1"])
    for (names, vals), ls in zip(sorted(kn.items()), ("--", "-.")):
        axes[0].axhline(statistics.mean(vals), color="grey", ls=ls,
                        label="Kneser-Ney, same names" + ("" if len(kn) == 1 else f" ({names})"))
    axes[0].set(title="external names: span exact match top-1", xlabel="CPU minutes", xscale="log")
    for ax, task in zip(axes[1:], tasks):
        for i, s in enumerate(sizes):
            ax.axhline(statistics.mean(tfidf[task][s]), ls=":", color=f"C{i}", label=f"{s or 'all'} labels (dotted: TF-IDF)")
        ax.set(title=f"{task}: test accuracy", xlabel="CPU minutes", xscale="log")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    import char_tasks

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", default=DEFAULT_POINTS, help="RECIPE:MINUTES,... (recipes: " + ", ".join(RECIPES) + ")")
    ap.add_argument("--tasks", default=",".join(sorted(char_tasks.TASKS)))
    ap.add_argument("--sizes", default="300,1000,all", help="labelled names per fine-tuning run")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=".cache/char_budget")
    ap.add_argument("--plot", default="docs/char-budget.png")
    ap.add_argument("--step-budget", action="store_true",
                    help="train each point after a recipe's first for the steps its minutes buy at the step rate "
                         "of that first point (run on an idle machine): the same compute, whatever else runs")
    ap.add_argument("--retrain", action="store_true", help="train the points again even if trained before")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = args.tasks.split(",")
    sizes = [None if s == "all" else int(s) for s in args.sizes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    bad = [spec for spec in args.points.split(",") if spec.partition(":")[0] not in RECIPES]
    if bad:
        raise SystemExit(f"--points: unknown recipe in {', '.join(bad)} (recipes: {', '.join(RECIPES)})")
    tfidf = {t: tfidf_baseline(out, t, sizes, seeds) for t in tasks}
    points, rate = [], {}
    for spec in args.points.split(","):
        recipe, minutes = spec.split(":")
        folder = out / f"{recipe}-{minutes}"
        folder.mkdir(parents=True, exist_ok=True)
        p = {"recipe": recipe, "minutes": float(minutes)}
        paced = STEP_RATE_OF.get(recipe, recipe)
        steps = round(rate[paced] * float(minutes)) if args.step_budget and paced in rate else None
        p["train"] = train_point(recipe, float(minutes), folder, args.threads, args.retrain, steps)
        rate.setdefault(paced, p["train"]["steps"] / float(minutes))
        p["fills"] = fills_point(folder, args.threads)
        p["downstream"] = {(t, s): downstream_point(folder, t, s, args.seeds) for t in tasks for s in sizes}
        points.append(p)
        print(f"{spec}: {p['train']['steps']:,} steps, external top-1 {p['fills']['external']['model']['top1']:.3f} "
              f"(Kneser-Ney {p['fills']['external']['kneser_ney']['top1']:.3f})", flush=True)
    print_table(points, tasks, sizes, tfidf)
    if args.plot:
        plot(points, tasks, sizes, tfidf, Path(args.plot))


if __name__ == "__main__":
    main()
