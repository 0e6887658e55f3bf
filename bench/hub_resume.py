"""A hub data set resumes from its saved stream position, not by reading the rows before it.

    python bench/hub_resume.py [--rows 10000000] [--shards 4] [--work /tmp/mlmkit-hub]

Writes `--rows` synthesised domain names (`large_domains.make_names`: pieces of the real
`isdisposable` list, generated here, never committed) as `--shards` Parquet files, read through
the hub code path (`datasets`' `parquet` builder, streamed: what `--data user/name` does for a
data set of Parquet files). Then, in one process, for the character preset's data settings:

* the task's start-up (scan, plan) and its first batch from the stream's start;
* a position 90% into the stream (the start of a window in the last shard of the pass, as a
  checkpoint saves it), reached by reading the stream: the rows a resume by skipping would read;
* a fresh task given that position (`load_data_state`, as `--resume` does): its first batch.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))


def write_shards(work: Path, rows: int, shards: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from large_domains import make_names

    paths = [work / f"part-{i:03d}-of-{shards:03d}-{rows}.parquet" for i in range(shards)]
    if all(p.is_file() for p in paths):
        return [str(p) for p in paths]
    names = make_names(work / f"names-{rows}.txt", rows).read_text(encoding="ascii").split("\n")[:rows]
    per = -(-rows // shards)
    for i, p in enumerate(paths):
        pq.write_table(pa.table({"text": names[i * per:(i + 1) * per]}), p, row_group_size=100_000)
    return [str(p) for p in paths]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--work", default="/tmp/mlmkit-hub")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    files = write_shards(work, args.rows, args.shards)
    print(f"{args.shards} Parquet shards, {args.rows:,} rows ({time.perf_counter() - t:.0f} s to generate)")

    from mlmkit.data.hub import StreamCursor
    from mlmkit.families import resolve_config
    from mlmkit.char_mlm.task import CharMLMTask

    cfg = resolve_config("domains-tiny", overrides=["data.train=[parquet]", "data.format=hf", "data.text_column=text",
                                                    f"data.hf_data_files={files}"])

    def task() -> CharMLMTask:
        return CharMLMTask(cfg.data, cfg.model, cfg.masking, batch_size=256, build_model=False)

    t = time.perf_counter()
    first = task()
    t1 = time.perf_counter()
    next(first.train_batches(0))
    t2 = time.perf_counter()
    print(f"task start-up {t1 - t:.2f} s; first batch from the stream's start {t2 - t1:.2f} s")

    # A window start 90% into the stream: read there, as a resume by skipping rows would.
    W = cfg.data.shuffle_buffer
    target = (int(args.rows * 0.9) // W) * W
    t = time.perf_counter()
    cur, records = first.stream.hub.open(first.stream.source.ctx(), StreamCursor())
    for n, _ in enumerate(records, 1):
        if n == target:
            break
    read_s = time.perf_counter() - t
    saved = dataclasses.replace(cur)
    print(f"reading the {target:,} rows before window {target // W:,}: {read_s:.1f} s "
          f"({target / read_s:,.0f} rows/s; shard {saved.k + 1} of the pass, row {saved.row:,})")

    again = task()
    again.load_data_state([{"epoch": 0, "window": target // W, "cursor": saved.to_json(), "split": None}])
    t = time.perf_counter()
    batch = next(again.train_batches(0, (target // W) * again.stream.hub_per_window()))
    resume_s = time.perf_counter() - t
    print(f"resumed task, first batch of window {target // W:,} from the saved position: {resume_s:.2f} s "
          f"({batch['input_idx'].shape[0]} names); {read_s / resume_s:.0f}x faster than reading to it")


if __name__ == "__main__":
    main()
