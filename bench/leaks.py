"""Leak finder speed: ``{"kind": "leaks"}`` on the 5-step funnel of bench/funnel.py's data.

Generates ``--events`` events (10 million by default) for events/10 people over 90 days with
bench/funnel.py's generator (50 countries, so the country segment has 50 values to test and
scan for drops), stores them as a real embedded store, and times the leak finder: cold (first
query: builds the frame and reads the segment columns) and warm (best of ``--repeat``), for
counting sessions (the leak finder's default) and uniques.

    .venv/bin/python bench/leaks.py                  # 10M events
    .venv/bin/python bench/leaks.py --events 2000000
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from funnel import FIVE, WINDOW, best_time, generate, masar_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep the data in this directory")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="masar-bench-leaks-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"leak finder benchmark: {args.events:,} events, {args.events // 10:,} people, {os.cpu_count()} cores")
    try:
        t0 = time.perf_counter()
        data = generate(args.events)
        store, source = masar_store(data, workdir / "masar")
        del data
        gc.collect()
        print(f"  generated and stored in {time.perf_counter() - t0:.1f} s")

        def leaks(counting: str) -> dict:
            query = {"kind": "leaks", "source": source.name, "steps": FIVE, "window": WINDOW, "counting": counting}
            return store.run(query, reuse=False).to_dict()  # computed, not remembered

        for counting in ("sessions", "uniques"):
            t0 = time.perf_counter()
            leaks(counting)
            cold = time.perf_counter() - t0
            warm, result = best_time(lambda c=counting: leaks(c), args.repeat)
            print(f"  leaks, 5 steps, counting {counting}: warm {warm:.2f} s (best of {args.repeat}), "
                  f"cold {cold:.2f} s; {result['tests']} tests, {len(result['findings'])} findings")  # fmt: skip
        store.close()
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
