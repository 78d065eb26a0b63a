"""Journeys and correlation speed on bench/funnel.py's generated store (10 million events for a
million people by default).

Times, warm (best of ``--repeat`` after one untimed run that builds the frame, compiles the
kernels and caches the label columns): paths after a step (each person's first occurrence),
after every occurrence, before a step, after dropping out of a funnel step, and the correlation
of the 5-step funnel (events, and events plus the country property).

    .venv/bin/python bench/paths.py                   # 10M events
    .venv/bin/python bench/paths.py --events 2000000
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.funnel import FIVE, best_time, generate, masar_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep the data in this directory")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="masar-bench-paths-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"paths and correlation benchmark: {args.events:,} events, {args.events // 10:,} people, "
          f"{os.cpu_count()} cores")  # fmt: skip
    try:
        data = generate(args.events)
        store, source = masar_store(data, workdir / "masar")
        del data
        gc.collect()
        t0 = time.perf_counter()
        store.frame(source)
        print(f"  frame built (cold, once per store) in {time.perf_counter() - t0:.2f} s")
        name = source.name
        queries = {
            "paths after Product Viewed (first, 5 events, 1 d)": {"step": "Product Viewed"},
            "paths after every Product Added": {"step": "Product Added", "occurrence": "every"},
            "paths before Order Completed": {"step": "Order Completed", "direction": "before"},
            "paths after dropping out at Product Added": {
                "funnel": {"steps": FIVE, "dropped_after": 2, "window": "7d"}},
            "paths after Product Viewed, 10 events, cleaned": {
                "step": "Product Viewed", "length": 10,
                "cleaning": [{"pattern": "^(Checkout Started|Payment Info Entered)$", "alias": "Checkout"}]},
        }  # fmt: skip
        for title, fields in queries.items():
            first = time.perf_counter()
            store.run({"kind": "paths", "source": name, **fields})
            cold = time.perf_counter() - first
            warm, result = best_time(
                lambda f=fields: store.run({"kind": "paths", "source": name, **f}, reuse=False), args.repeat
            )
            data = result.to_dict()
            print(f"  {title}: {warm * 1000:8.1f} ms warm ({cold:.2f} s first)   {data['total']:,} paths, "
                  f"{len(data['sankey']['nodes'])} nodes, {data['loops']['paths']:,} with loops")  # fmt: skip
        for title, extra in (
            ("correlation, events", {}),
            ("correlation, events + country", {"properties": ["country"]}),
        ):
            query = {"kind": "correlation", "source": name, "steps": FIVE, "window": "7d", **extra}
            first = time.perf_counter()
            store.run(query)
            cold = time.perf_counter() - first
            warm, result = best_time(lambda q=query: store.run(q, reuse=False), args.repeat)
            data = result.to_dict()
            print(f"  {title}: {warm * 1000:8.1f} ms warm ({cold:.2f} s first)   {data['people']:,} people, "
                  f"{data['tested']} candidates tested")  # fmt: skip
        store.close()
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
