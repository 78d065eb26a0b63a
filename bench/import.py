"""Bulk import throughput: ``masar import`` of Parquet and CSV, against a plain DuckDB copy.

Generates ``--rows`` e-commerce events for rows/10 users (vectorized with numpy/pyarrow) as one
Parquet file (real timestamp column) and one CSV file (ISO 8601 strings), then times:

* ``masar import FILE --source S --data-dir DIR --json`` (a subprocess, fresh data dir per format),
* the in-process ``masar.importers.import_path(store, source, path, preset="events")``,
* the raw floor: DuckDB ``COPY (SELECT * FROM read_csv/read_parquet(FILE)) TO 'x.parquet'``,
* a re-import of the same Parquet file, which must add 0 rows (idempotency).

    .venv/bin/python bench/import.py --rows 1000000
    .venv/bin/python bench/import.py --profile        # also: top functions of an in-process import
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _util  # noqa: E402

TARGETS = {"parquet": 1_000_000, "csv": 300_000}
EVENT_NAMES = ["Product Viewed", "Product Added", "Cart Viewed", "Checkout Started", "Order Completed",
               "Products Searched"]  # fmt: skip
EVENT_WEIGHTS = [0.45, 0.18, 0.12, 0.1, 0.05, 0.1]


# -- data -----------------------------------------------------------------------------------------


def generate(rows: int, directory: Path, seed: int = 42) -> dict[str, Path]:
    """The same events as ``events.parquet`` and ``events.csv``; columns per the issue."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    users = max(1, rows // 10)

    def prefixed(prefix: str, values: np.ndarray) -> pa.Array:
        return pc.binary_join_element_wise(prefix, pa.array(values).cast(pa.string()), "")

    def pick(choices: list[str], size: int, p: list[float] | None = None) -> pa.Array:
        codes = rng.choice(len(choices), size=size, p=p).astype(np.int32)
        return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(choices)).cast(pa.string())

    end_us = int(time.time()) * 1_000_000
    start_us = end_us - 90 * 86_400 * 1_000_000
    # Millisecond times: events of one user are spread over the 90 days.
    ts_us = start_us + rng.integers(0, 90 * 86_400 * 1000, size=rows, dtype=np.int64) * 1000
    timestamps = pa.array(ts_us, pa.timestamp("us", tz="UTC"))
    event = pick(EVENT_NAMES, rows, EVENT_WEIGHTS)
    price = np.round(rng.uniform(4.99, 249.99, size=rows), 2)
    searched = pc.equal(event, "Products Searched")
    columns = {
        "user_id": prefixed("user_", rng.integers(0, users, size=rows)),
        "event": event,
        "timestamp": timestamps,
        "price": pc.if_else(searched, pa.scalar(None, pa.float64()), pa.array(price)),
        "currency": pick(["USD", "EUR", "GBP"], rows, [0.7, 0.2, 0.1]),
        "product_id": pc.if_else(
            searched, pa.scalar(None, pa.string()), prefixed("prod_", rng.integers(0, 20_000, size=rows))
        ),  # fmt: skip
        # Two columns the events preset does not map: they end up in the properties JSON.
        "variant": pick(["red", "blue", "black", "white", "green"], rows),
        "list_position": pa.array(rng.integers(1, 48, size=rows)),
    }
    table = pa.table(columns)
    paths = {"parquet": directory / "events.parquet", "csv": directory / "events.csv"}
    pq.write_table(table, paths["parquet"], compression="zstd")
    iso = pc.binary_join_element_wise(pc.strftime(timestamps.cast(pa.timestamp("ms", tz="UTC")),
                                                  format="%Y-%m-%dT%H:%M:%S"), "Z", "")  # fmt: skip
    csv_table = table.set_column(table.schema.get_field_index("timestamp"), "timestamp", iso)
    pacsv.write_csv(csv_table, paths["csv"])
    return paths


# -- runs -----------------------------------------------------------------------------------------


def cli_import(path: Path, data_dir: Path, source: str) -> dict:
    """``masar import`` as a subprocess: its JSON report, wall time and peak RSS (from wait4)."""
    out_path, err_path = data_dir.parent / f".{data_dir.name}.out", data_dir.parent / f".{data_dir.name}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            _util.masar_cmd("import", str(path), "--source", source, "--data-dir", str(data_dir), "--json"),
            stdout=out, stderr=err, cwd=_util.ROOT,
        )  # fmt: skip
        # ru_maxrss from wait4 would include the RSS of this (forking) process, so poll VmHWM.
        peak = 0
        try:
            while True:
                peak = max(peak, _util.peak_rss_bytes(proc.pid))
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                time.sleep(0.05)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = out_path.read_bytes(), err_path.read_bytes()
    out_path.unlink(missing_ok=True)
    err_path.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"masar import {path.name} failed ({proc.returncode}):\n{stderr.decode()[-4000:]}")
    report = json.loads(stdout)
    report["wall_seconds"] = round(wall, 2)
    report["peak_rss_mb"] = _util.mb(peak)
    report["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 2)
    return report


def inprocess_import(
    path: Path, data_dir: Path, *, profile: bool = False
) -> tuple[dict, cProfile.Profile | None]:
    import masar
    from masar.importers import import_path

    store = masar.open(data_dir)
    profiler = cProfile.Profile() if profile else None
    try:
        source = store.create_source("bench-inprocess")
        base_rss = _util.rss_bytes(os.getpid())
        peak_known = _util.reset_peak_rss()
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        try:
            report = import_path(store, source, path, preset="events")
        finally:
            if profiler is not None:
                profiler.disable()
        wall = time.perf_counter() - started
        peak = _util.peak_rss_bytes()
        stored = store.count_events(source)
    finally:
        store.close()
    out = report.to_dict()
    out["wall_seconds"] = round(wall, 2)
    out["stored"] = stored
    out["rss_before_mb"] = _util.mb(base_rss)
    out["peak_rss_mb"] = _util.mb(peak) if peak_known else None
    return out, profiler


def duckdb_copy(path: Path, file_format: str, out: Path) -> dict:
    import duckdb

    reader = f"read_csv('{path}')" if file_format == "csv" else f"read_parquet('{path}')"
    con = duckdb.connect()
    try:
        started = time.perf_counter()
        con.execute(f"COPY (SELECT * FROM {reader}) TO '{out}' (FORMAT parquet)")
        seconds = time.perf_counter() - started
        rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
    finally:
        con.close()
        out.unlink(missing_ok=True)
    return {"rows": int(rows), "seconds": round(seconds, 3), "rows_per_second": round(rows / seconds)}


def _profile_text(profiler: cProfile.Profile, top: int) -> str:
    parts = []
    for order, count in (("cumulative", top), ("tottime", 15)):
        buffer = io.StringIO()
        stats = pstats.Stats(profiler, stream=buffer)
        stats.sort_stats(order).print_stats(count)
        text = buffer.getvalue()
        text = text[text.find("   ncalls") :] if "   ncalls" in text else text
        parts.append(f"== in-process import profile, top {count} by {order} ==\n{text.rstrip()}")
    return "\n\n".join(parts)


def run(args: argparse.Namespace, log) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="masar-bench-import-"))
    try:
        started = time.perf_counter()
        paths = generate(args.rows, tmp)
        log(f"generated {args.rows:,} events for {max(1, args.rows // 10):,} users in "
            f"{time.perf_counter() - started:.1f} s: parquet {_util.mb(paths['parquet'].stat().st_size)} MB, "
            f"csv {_util.mb(paths['csv'].stat().st_size)} MB  ({tmp})")  # fmt: skip
        figures: dict = {"rows": args.rows, "users": max(1, args.rows // 10), "formats": {}}
        for fmt in args.formats:
            path = paths[fmt]
            entry: dict = {"target_rows_per_second": TARGETS[fmt]}
            peer = duckdb_copy(path, fmt, tmp / f"peer-{fmt}.parquet")
            entry["duckdb_copy"] = peer
            log(f"[{fmt}] duckdb COPY floor: {peer['seconds']:.2f} s, {peer['rows_per_second']:,} rows/s")

            data_dir = tmp / f"cli-{fmt}"
            _util.create_source(data_dir, "bench")
            cli = cli_import(path, data_dir, "bench")
            entry["cli"] = cli
            log(f"[{fmt}] masar import (CLI): {cli['seconds']:.2f} s in import, {cli['wall_seconds']:.2f} s wall, "
                f"{cli['rows_per_second']:,} rows/s, imported {cli['imported']:,}, rejected {cli['rejected']:,}")  # fmt: skip

            if not args.no_inprocess:
                report, _ = inprocess_import(path, tmp / f"inproc-{fmt}")
                entry["inprocess"] = report
                log(f"[{fmt}] import_path (in-process): {report['seconds']:.2f} s, {report['rows_per_second']:,} rows/s, "
                    f"stored {report['stored']:,}, RSS {report['rss_before_mb']} MB before, "
                    f"peak {report['peak_rss_mb']} MB")  # fmt: skip

            entry["ratio_masar_time_to_duckdb"] = round(cli["seconds"] / peer["seconds"], 1)
            entry["masar_share_of_duckdb_rate"] = round(cli["rows_per_second"] / peer["rows_per_second"], 4)

            if fmt == "parquet":
                again = cli_import(path, data_dir, "bench")
                entry["reimport"] = again
                log(f"[{fmt}] re-import: added {again['imported']:,} rows "
                    f"({again['skipped_existing']:,} already stored) in {again['seconds']:.2f} s")  # fmt: skip
            figures["formats"][fmt] = entry
            shutil.rmtree(data_dir, ignore_errors=True)
            shutil.rmtree(tmp / f"inproc-{fmt}", ignore_errors=True)

        if args.profile:
            fmt = args.profile_format
            report, profiler = inprocess_import(paths[fmt], tmp / "profiled", profile=True)
            figures["profile"] = {"format": fmt, "seconds_under_cprofile": report["seconds"]}
            log(f"\nprofiled in-process import of {fmt}: {report['seconds']:.2f} s under cProfile "
                f"(DuckDB's own threads appear only as the Python call that waits for them)\n")  # fmt: skip
            log(_profile_text(profiler, args.profile_top))
        return figures
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _summary(f: dict) -> str:
    rows = []
    for fmt, e in f["formats"].items():
        target = e["target_rows_per_second"]
        cli = e["cli"]
        met = "met" if cli["rows_per_second"] >= target else f"{cli['rows_per_second'] / target:.1%} of it"
        rows.append((f"{fmt}: masar import (CLI)", f"{cli['rows_per_second']:,} events/s ({cli['seconds']:.1f} s; "
                     f"{cli['wall_seconds']:.1f} s wall)", f">= {target:,}  ({met})"))  # fmt: skip
        if "inprocess" in e:
            ip = e["inprocess"]
            rows.append((f"{fmt}: import_path (in-process)", f"{ip['rows_per_second']:,} events/s ({ip['seconds']:.1f} s; "
                         f"peak RSS {ip['peak_rss_mb']} MB)", f">= {target:,}"))  # fmt: skip
        peer = e["duckdb_copy"]
        rows.append(
            (
                f"{fmt}: DuckDB COPY (raw floor)",
                f"{peer['rows_per_second']:,} rows/s ({peer['seconds']:.2f} s)",
                "",
            )
        )
        rows.append((f"{fmt}: masar / DuckDB", f"{e['ratio_masar_time_to_duckdb']}x the time "
                     f"({e['masar_share_of_duckdb_rate']:.1%} of its rate)", ""))  # fmt: skip
        rows.append((f"{fmt}: `masar import` peak RSS / CPU", f"{cli['peak_rss_mb']} MB / {cli['cpu_seconds']} s "
                     f"({cli['cpu_seconds'] / cli['wall_seconds']:.2f} cores)", ""))  # fmt: skip
        if "reimport" in e:
            again = e["reimport"]
            ok = "ok" if again["imported"] == 0 else "NOT IDEMPOTENT"
            rows.append((f"{fmt}: re-import same file", f"added {again['imported']:,} rows in {again['seconds']:.1f} s",
                         f"0 rows ({ok})"))  # fmt: skip
    return _util.table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="events to generate (default 2,000,000)")
    parser.add_argument(
        "--formats", default="parquet,csv", help="comma-separated: parquet,csv (default both)"
    )
    parser.add_argument("--no-inprocess", action="store_true", help="skip the in-process import_path runs")
    parser.add_argument(
        "--profile", action="store_true", help="also run one in-process import under cProfile"
    )
    parser.add_argument("--profile-format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument(
        "--profile-top", type=int, default=25, help="rows of the cumulative profile (default 25)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated files and data dirs")
    parser.add_argument("--json", action="store_true", help="print only one line of JSON")
    args = parser.parse_args()
    args.formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    for fmt in args.formats:
        if fmt not in TARGETS:
            parser.error(f"unknown format {fmt!r}")

    def log(message: str) -> None:
        if not args.json:
            print(message, flush=True)

    figures = run(args, log)
    if not args.json:
        print()
        print(_summary(figures))
        print()
    print(json.dumps(figures, separators=(",", ":")))


if __name__ == "__main__":
    main()
