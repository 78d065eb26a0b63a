"""Capture's start-up with a week of stored events: rebuilding the dedup index.

``masar serve`` remembers every messageId of the last 7 days (docs/capture.md), rebuilt at start
from the stored segments. This measures that rebuild for a store holding ``--rows`` recent events
(imported with Segment-style UUID message ids), in a fresh process: seconds and peak memory, and
the same for its peer, DuckDB reading the same message ids into Arrow (the least any rebuild must
do), in the same run.

    .venv/bin/python bench/dedup.py --rows 5000000
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _util  # noqa: E402

# Run in a fresh interpreter each: peak RSS is the process's own (ru_maxrss).
_REBUILD = """
import json, resource, sys, time
import masar
from masar.capture.service import CaptureService
from masar.config import Settings
settings = Settings(data_dir=sys.argv[1])
store = masar.open(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
service = CaptureService(store, settings)
service.open()
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ids = service.index.size()
probe = service.index.seen_many(1, ["no-such-id"])
service.close()
print(json.dumps({"seconds": seconds, "ids": ids, "rss_before_mb": before / 1024, "peak_rss_mb": peak / 1024,
                  "probe": probe}))
"""

_PEER = """
import json, resource, sys, time
import duckdb
import masar
store = masar.open(sys.argv[1])
paths = [str(s.path) for s in store.segments.live(1)]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
ids = duckdb.sql(f"SELECT message_id FROM read_parquet({paths!r})").to_arrow_table()
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "ids": ids.num_rows, "rss_before_mb": before / 1024, "peak_rss_mb": peak / 1024}))
"""


# A week of ids straight into the index, kept in memory or with ended days on disk; then look-ups,
# and (on disk) a start that maps the ended days and rebuilds only today.
_WEEK = """
import gc, json, resource, sys, time
from pathlib import Path
import duckdb, numpy as np
from masar.capture.dedup import DAY_US, MessageIndex, warm
rows, mode, directory = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
TODAY = 20_000

def status():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {k: int(fields[k].split()[0]) / 1024 for k in ("RssAnon", "RssFile")}

def week(only_today=False):
    sql = (f"SELECT gen_random_uuid()::VARCHAR AS message_id, ({TODAY - 6} + i * 7 // {rows}) * {DAY_US} + 1000 "
           f"AS received_us FROM range({rows}) t(i)")
    if only_today:
        sql += f" WHERE {TODAY - 6} + i * 7 // {rows} = {TODAY}"
    return duckdb.sql(sql).to_arrow_reader(1 << 20)

warm()
gc.collect()
before = status()
started = time.perf_counter()
index = MessageIndex(7, directory=directory if mode == "disk" else None)
count = index.add_stored(1, week(), TODAY * DAY_US + 5)
build = time.perf_counter() - started
spill = 0.0
if mode == "disk":
    started = time.perf_counter()
    index.spill(TODAY)
    spill = time.perf_counter() - started
gc.collect()
after = status()
probes = [[str(u) for (u,) in duckdb.sql("SELECT gen_random_uuid() FROM range(100)").fetchall()] for _ in range(2000)]
lookup_us = []
for _ in range(2):  # first pass: pages of the mapped days are touched for the first time
    started = time.perf_counter()
    for probe in probes:
        assert not any(index.seen_many(1, probe))
    lookup_us.append((time.perf_counter() - started) / (len(probes) * 100) * 1e6)
restart = None
if mode == "disk":
    started = time.perf_counter()
    again = MessageIndex(7, directory=directory)
    again.load(TODAY * DAY_US + 5)
    again.add_stored(1, week(only_today=True), TODAY * DAY_US + 5)
    restart = time.perf_counter() - started
print(json.dumps({"mode": mode, "ids": count, "build_s": build, "spill_s": spill, "restart_s": restart,
                  "anon_mb": after["RssAnon"] - before["RssAnon"], "file_mb": after["RssFile"] - before["RssFile"],
                  "in_memory_mb": index.bytes_in_memory() / 2**20, "lookup_us_per_id": lookup_us,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def week(rows: int, log) -> list[dict]:
    """The index alone, for a week of ``rows`` ids: all in memory, then ended days on disk."""
    results = []
    directory = Path(tempfile.mkdtemp(prefix="masar-bench-dedup-week-"))
    try:
        for mode in ("memory", "disk"):
            out = subprocess.run([sys.executable, "-c", _WEEK, str(rows), mode, str(directory / "dedup")],
                                 capture_output=True, text=True, check=True)  # fmt: skip
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(result)
            log(
                f"week of {result['ids']:,} ids, {mode:>6}: built {result['build_s']:.2f} s"
                + (f" + written {result['spill_s']:.2f} s" if mode == "disk" else "")
                + f"; held in memory {result['in_memory_mb']:,.0f} MB (anonymous RSS +{result['anon_mb']:,.0f} MB, "
                f"file pages +{result['file_mb']:,.0f} MB); look-up {result['lookup_us_per_id'][0]:.2f} µs per id, "
                f"{result['lookup_us_per_id'][1]:.2f} the second time"
                + (f"; a start (map + today from the store) {result['restart_s']:.2f} s" if mode == "disk" else "")
            )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return results


def _run(script: str, data_dir: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", script, str(data_dir)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def build(rows: int, directory: Path, log) -> Path:
    """A store holding ``rows`` events received now, spread over the last 6 days of event time."""
    import duckdb

    data_dir = directory / "data"
    data_dir.mkdir()
    path = directory / "events.parquet"
    duckdb.sql(
        f"COPY (SELECT 'user-' || (i % {max(rows // 10, 1)}) AS user_id, 'Product Viewed' AS event, "
        "TIMESTAMPTZ '2026-11-19 00:00:00+00' + to_microseconds(i * 518400000000 // "
        f"{rows}) AS timestamp, gen_random_uuid()::VARCHAR AS mid FROM range({rows}) t(i)) TO '{path}' (FORMAT parquet)"
    )
    _util.create_source(data_dir, "Dedup bench")
    started = time.perf_counter()
    _util.run_json(_util.masar_cmd("import", str(path), "--source", "Dedup bench", "--map", "message_id=mid",
                                   "--data-dir", str(data_dir), "--json"), timeout=3600)  # fmt: skip
    log(f"imported {rows:,} events in {time.perf_counter() - started:.1f} s")
    return data_dir


def run(args: argparse.Namespace, log) -> dict:
    directory = Path(tempfile.mkdtemp(prefix="masar-bench-dedup-"))
    try:
        data_dir = build(args.rows, directory, log)
        results = {"rows": args.rows, "rebuild": [], "peer": []}
        for _ in range(args.repeat):
            results["peer"].append(_run(_PEER, data_dir))
            results["rebuild"].append(_run(_REBUILD, data_dir))
        return results
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000, help="stored events (default 5,000,000)")
    parser.add_argument("--repeat", type=int, default=2, help="rebuilds to time (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--week", type=int, default=0,
                        help="instead: a week of this many ids straight into the index, in memory and on disk")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print only one line of JSON")
    args = parser.parse_args()
    log = (lambda _m: None) if args.json else (lambda m: print(m, flush=True))
    if args.week:
        print(json.dumps(week(args.week, log)))
        return
    results = run(args, log)
    if not args.json:
        for peer, rebuild in zip(results["peer"], results["rebuild"], strict=True):
            grown = rebuild["peak_rss_mb"] - rebuild["rss_before_mb"]
            print(
                f"rebuild of {rebuild['ids']:,} ids: {rebuild['seconds']:.2f} s, peak RSS +{grown:,.0f} MB "
                f"({grown * 2**20 / max(rebuild['ids'], 1):.0f} B per id) | peer (DuckDB → Arrow) "
                f"{peer['seconds']:.2f} s, +{peer['peak_rss_mb'] - peer['rss_before_mb']:,.0f} MB | "
                f"rebuild / peer time {rebuild['seconds'] / peer['seconds']:.1f}x"
            )
            if rebuild["probe"] != [False]:
                raise SystemExit("the rebuilt index claims an unknown id")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
