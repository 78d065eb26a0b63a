"""Capture throughput of a real ``masar serve``: concurrent clients posting /v1/batch.

Starts ``python -m masar.cli serve`` on a free loopback port with a fresh data directory, runs
``--clients`` client *processes* (so client CPU does not share the server's GIL) that post batches
of realistic e-commerce track events with keep-alive connections for ``--seconds``, and prints:

* sustained acknowledged events/s (a 200 answer means the events are fsynced in the WAL),
* p50 / p99 request latency,
* the server's RSS every 5 s (VmRSS of the server and any child process),
* the ingestor's lag when the clients stop (GET /health: wal_position vs applied_position),
* freshness: how long until the stored count reaches the acknowledged total,
* a final exactness check: stored events == acknowledged events (and no duplicate messageIds),
* the peer, first: the same clients against a bare uvicorn handler that only parses the JSON
  (``--ceiling-seconds``, 0 to skip), so masar's rate reads as a share of what this stack and
  this machine allow at all.

    .venv/bin/python bench/ingest.py --seconds 20
    .venv/bin/python bench/ingest.py --seconds 300          # the 5-minute run from the issue
    .venv/bin/python bench/ingest.py --seconds 60 --json    # one line of JSON only
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _util  # noqa: E402

TARGET_EVENTS_PER_SECOND = 50_000
SAMPLE_EVERY = 5.0

# -- realistic events ---------------------------------------------------------------------------

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
    "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
]
CAMPAIGNS = [
    "",
    "?utm_source=google&utm_medium=cpc&utm_campaign=spring_sale&utm_term=running+shoes",
    "?utm_source=facebook&utm_medium=paid_social&utm_campaign=retargeting_q2&utm_content=carousel_a",
    "?utm_source=newsletter&utm_medium=email&utm_campaign=weekly_2024_18",
    "?utm_source=instagram&utm_medium=social&utm_campaign=influencer_jane",
    "?gclid=Cj0KCQjw3tCyBhDBARIsAEY0XNlq1",
]
REFERRERS = [
    "",
    "https://www.google.com/",
    "https://www.facebook.com/",
    "https://t.co/abc",
    "https://duckduckgo.com/",
]
CATEGORIES = ["Shoes", "Apparel", "Accessories", "Outdoor", "Kids", "Sale"]
BRANDS = ["Acme", "Northwind", "Globex", "Initech", "Umbrella"]
EVENTS = [
    ("Product List Viewed", 14),
    ("Product Viewed", 40),
    ("Products Searched", 8),
    ("Product Added", 16),
    ("Cart Viewed", 8),
    ("Checkout Started", 6),
    ("Payment Info Entered", 4),
    ("Order Completed", 4),
]
TIMEZONES = [("Europe/Berlin", "de-DE"), ("America/New_York", "en-US"), ("Europe/London", "en-GB"),
             ("Asia/Tokyo", "ja-JP"), ("America/Sao_Paulo", "pt-BR")]  # fmt: skip


def _event_pool(rng: random.Random, size: int, visitors: int) -> list[dict]:
    """Message templates (everything but messageId and times), drawn once per client."""
    names = [name for name, _w in EVENTS]
    weights = [w for _n, w in EVENTS]
    pool = []
    for _ in range(size):
        visitor = rng.randrange(visitors)
        event = rng.choices(names, weights)[0]
        product = rng.randrange(5000)
        price = round(rng.uniform(4.99, 249.99), 2)
        quantity = rng.randint(1, 3)
        currency = rng.choice(["USD", "USD", "USD", "EUR", "GBP"])
        properties: dict = {
            "product_id": f"prod_{product:05d}",
            "sku": f"SKU-{product:05d}-{rng.choice('SMLX')}",
            "category": rng.choice(CATEGORIES),
            "name": f"Product {product}",
            "brand": rng.choice(BRANDS),
            "variant": rng.choice(["red", "blue", "black", "white"]),
            "price": price,
            "quantity": quantity,
            "currency": currency,
            "position": rng.randint(1, 24),
        }
        if event == "Products Searched":
            properties = {"query": rng.choice(["running shoes", "rain jacket", "socks", "backpack"])}
        elif event in ("Cart Viewed", "Checkout Started", "Payment Info Entered", "Order Completed"):
            items = [
                {"product_id": f"prod_{rng.randrange(5000):05d}", "price": round(rng.uniform(4.99, 249.99), 2),
                 "quantity": rng.randint(1, 3), "category": rng.choice(CATEGORIES)}
                for _ in range(rng.randint(1, 4))
            ]  # fmt: skip
            subtotal = round(sum(i["price"] * i["quantity"] for i in items), 2)
            properties = {
                "cart_id": f"cart_{visitor}",
                "currency": currency,
                "products": items,
                "value": subtotal,
            }
            if event == "Order Completed":
                tax = round(subtotal * 0.08, 2)
                shipping = rng.choice([0, 4.99, 9.99])
                properties.update(
                    order_id=f"ord_{rng.randrange(10**9):09d}", checkout_id=f"chk_{visitor}", subtotal=subtotal,
                    revenue=subtotal, tax=tax, shipping=shipping, total=round(subtotal + tax + shipping, 2),
                    discount=rng.choice([0, 0, 5, 10]), coupon=rng.choice([None, None, "SPRING10"]),
                )  # fmt: skip
        path = "/products/" + properties.get("product_id", "cart") if "product_id" in properties else "/cart"
        query = rng.choice(CAMPAIGNS)
        timezone, locale = rng.choice(TIMEZONES)
        message = {
            "type": "track",
            "event": event,
            "anonymousId": f"anon-{visitor:07d}-{rng.randrange(1 << 30):08x}",
            "properties": properties,
            "context": {
                "userAgent": rng.choice(USER_AGENTS),
                "page": {
                    "url": f"https://shop.example.com{path}{query}",
                    "path": path,
                    "referrer": rng.choice(REFERRERS),
                    "title": f"{event} | Example Shop",
                },
                "library": {"name": "analytics.js", "version": "4.1.0"},
                "locale": locale,
                "timezone": timezone,
                "ip": f"203.0.{rng.randrange(256)}.{rng.randrange(256)}",
                "screen": {"width": rng.choice([390, 1440, 1920]), "height": rng.choice([844, 900, 1080])},
            },
        }
        if rng.random() < 0.3 or event == "Order Completed":
            message["userId"] = f"user_{visitor:07d}"
            message["context"]["traits"] = {"email": f"user{visitor}@example.com"}
        pool.append(message)
    return pool


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the client process -------------------------------------------------------------------------


def client_main(index: int, port: int, write_key: str, nonce: str, start_at: float, stop_at: float,
                batch_size: int, progress, results) -> None:  # fmt: skip
    import orjson

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    rng = random.Random(f"{nonce}-{index}")
    pool = _event_pool(rng, 2000, visitors=20_000)
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {"Content-Type": "application/json", "Authorization": auth, "Connection": "keep-alive"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    latencies: list[float] = []
    acked = duplicates = rejected = requests = failures = 0
    statuses: dict[str, int] = {}
    seq = 0
    while time.time() < start_at:
        time.sleep(0.005)
    # Each template is a message's JSON without its closing brace: a batch is joined from bytes, so
    # the clients take ~6.5 µs of CPU per event instead of ~11 and leave the cores to the server tested.
    # The server receives the same messages (their keys in another order), each with a fresh id.
    templates = [orjson.dumps(message)[:-1] for message in pool]
    while time.time() < stop_at:
        now = datetime.now(UTC)
        stamps = [_iso(now - timedelta(milliseconds=rng.randrange(2000))).encode() for _ in range(16)]
        prefix = f"{nonce}-{index:02d}-{seq:09d}-".encode()
        batch = b",".join(
            b"".join((templates[rng.randrange(len(templates))], b',"messageId":"', prefix, b"%04d" % i,
                      b'","timestamp":"', stamps[i % 16], b'"}'))
            for i in range(batch_size)
        )  # fmt: skip
        seq += 1
        body = b"".join((b'{"batch":[', batch, b'],"sentAt":"', _iso(now).encode(),
                         b'","context":{"library":{"name":"bench"}}}'))  # fmt: skip
        started = time.perf_counter()
        try:
            conn.request("POST", "/v1/batch", body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            # The outcome is unknown: the events may or may not be stored. Counted apart.
            failures += 1
            statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            time.sleep(0.1)
            continue
        latencies.append(time.perf_counter() - started)
        requests += 1
        statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1
        if response.status == 200:
            answer = orjson.loads(data)
            acked += answer["accepted"]
            duplicates += answer["duplicates"]
            rejected += len(answer["rejected"])
            progress[index] = acked
        elif response.status == 429:
            time.sleep(0.05)
    conn.close()
    times = os.times()
    results.put({
        "index": index, "acked": acked, "duplicates": duplicates, "rejected": rejected, "requests": requests,
        "failures": failures, "statuses": statuses, "latencies": latencies,
        "cpu_seconds": times.user + times.system,
    })  # fmt: skip


# -- the server ---------------------------------------------------------------------------------

# With --profile-server the server runs under cProfile, one profiler per thread (event loop,
# masar-wal, masar-ingestor, ...); each thread's stats are dumped to PROFILE_DIR when it ends.
_PROFILED_SERVER = r"""
import cProfile, os, sys, threading
out = os.environ["MASAR_BENCH_PROFILE_DIR"]
_run = threading.Thread.run
def run(self):
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        _run(self)
    finally:
        profiler.disable()
        profiler.dump_stats(os.path.join(out, self.name.replace("/", "_") + f"-{threading.get_native_id()}.prof"))
threading.Thread.run = run
import signal
def _exit(signum, frame):  # uvicorn re-raises SIGTERM after its graceful shutdown: end normally
    raise SystemExit(0)
signal.signal(signal.SIGTERM, _exit)
sys.argv = ["masar"] + sys.argv[1:]
from masar.cli import main
profiler = cProfile.Profile()
profiler.enable()
try:
    main()
except SystemExit:
    pass
finally:
    profiler.disable()
    profiler.dump_stats(os.path.join(out, "MainThread.prof"))
"""


def _print_server_profile(directory: Path, top: int, log) -> None:
    import io
    import pstats

    groups: dict[str, list[str]] = {}
    for path in sorted(directory.glob("*.prof")):
        name = path.stem.rsplit("-", 1)[0] if path.stem != "MainThread" else "MainThread (event loop)"
        name = (
            "anyio/asyncio worker threads"
            if name.startswith(("AnyIO", "asyncio", "ThreadPoolExecutor"))
            else name
        )
        groups.setdefault(name, []).append(str(path))
    for name, files in groups.items():
        stats = pstats.Stats(files[0])
        for extra in files[1:]:
            stats.add(extra)
        total = stats.total_tt
        if total < 0.5:
            continue
        for order in ("tottime", "cumulative"):
            buffer = io.StringIO()
            stats.stream = buffer
            stats.sort_stats(order).print_stats(top)
            text = buffer.getvalue()
            text = text[text.find("   ncalls") :] if "   ncalls" in text else text
            log(
                f"\n== server profile: {name} ({len(files)} thread(s), {total:.1f} s profiled), top {top} by {order} =="
            )
            log(text.rstrip())


def _get_json(port: int, path: str, timeout: float = 10) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}: {body[:200]!r}")
        return json.loads(body)
    finally:
        conn.close()


def _wait_healthy(proc: subprocess.Popen, port: int, log_path: Path, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}):\n{log_path.read_text()[-4000:]}")
        try:
            return _get_json(port, "/health", timeout=2)
        except (OSError, RuntimeError, http.client.HTTPException, ValueError):
            time.sleep(0.1)
    raise RuntimeError(
        f"the server did not answer /health in {timeout:.0f} s:\n{log_path.read_text()[-4000:]}"
    )


def _stored_count(db: Path, source_id: int) -> int:
    """What ``store.count_events`` answers: rows of live (not retired) segments of the source."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute(
            "SELECT coalesce(sum(rows), 0) FROM segments WHERE source_id = ? AND retired_at IS NULL",
            (source_id,),
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


def _distinct_message_ids(root: Path, db: Path, source_id: int) -> tuple[int, int]:
    """(rows, distinct messageIds) over the live segment files, read with DuckDB."""
    import duckdb

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        paths = [root / r[0] for r in conn.execute(
            "SELECT path FROM segments WHERE source_id = ? AND retired_at IS NULL", (source_id,))]  # fmt: skip
    finally:
        conn.close()
    if not paths:
        return 0, 0
    duck = duckdb.connect()
    try:
        listing = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"
        rows, distinct = duck.execute(
            f"SELECT count(*), count(DISTINCT message_id) FROM read_parquet({listing})"
        ).fetchone()
        return int(rows), int(distinct)
    finally:
        duck.close()


def _lag(health: dict, wal_dir: Path) -> dict:
    """Bytes of durable log not yet applied to segments (spanning log files if needed)."""
    wal, applied = health["wal_position"], health["applied_position"]
    if wal[0] == applied[0]:
        lag = wal[1] - applied[1]
    else:
        sizes = {}
        for path in wal_dir.glob("*.wal"):
            try:
                sizes[int(path.stem)] = path.stat().st_size
            except (ValueError, OSError):
                continue
        lag = max(0, sizes.get(applied[0], applied[1]) - applied[1]) + wal[1]
        lag += sum(size for seq, size in sizes.items() if applied[0] < seq < wal[0])
    return {
        "wal_position": wal,
        "applied_position": applied,
        "lag_bytes": lag,
        "lag_files": wal[0] - applied[0],
        "ingestor_errors": health.get("ingestor_errors"),
    }


def _wal_bytes_written(wal_dir: Path, position: list[int], args: argparse.Namespace) -> int:
    """About how many bytes the log received: full files rotate near wal_segment_bytes (applied files
    are deleted, so their exact sizes are gone); plus the offset in the current one."""
    segment = int(os.environ.get("MASAR_WAL_SEGMENT_BYTES", 64 * 1024 * 1024))
    return max(0, position[0] - 1) * segment + position[1]


def _start_clients(clients: list, port: int, write_key: str, start_at: float, stop_at: float, args) -> tuple:
    """``args.clients`` client processes posting from ``start_at`` to ``stop_at``; appended to
    ``clients``. Returns (acknowledged events per client, shared; their results queue)."""
    ctx = mp.get_context("fork")
    progress = ctx.Array("q", args.clients, lock=False)
    results = ctx.Queue()
    nonce = f"{int(time.time()):x}{random.randrange(1 << 16):04x}"
    for index in range(args.clients):
        process = ctx.Process(
            target=client_main,
            args=(index, port, write_key, nonce, start_at, stop_at, args.batch, progress, results),
            daemon=True,
        )
        process.start()
        clients.append(process)
    return progress, results


def _collect(clients: list, results, seconds: float) -> list[dict]:
    outcomes = [results.get(timeout=seconds + 180) for _ in clients]
    for process in clients:
        process.join(timeout=30)
    return outcomes


# The peer: the same uvicorn (uvloop, httptools), the same clients, and a handler that only reads
# the body, parses its JSON and answers as capture does; no validation, no log, no fsync, no
# ingestor. No capture server in this stack can be faster on this machine with these clients.
_CEILING_SERVER = r"""
import sys
import orjson
import uvicorn

HEADERS = [(b"content-type", b"application/json")]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"] == "/health":
        answer = b'{"status":"ok"}'
    else:
        accepted = len(orjson.loads(body)["batch"])
        answer = orjson.dumps({"success": True, "accepted": accepted, "duplicates": 0, "rejected": []})
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": answer})


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def ceiling(args: argparse.Namespace, log) -> dict:
    """Events/s of the peer server above under the same load, for ``args.ceiling_seconds``."""
    port = _util.free_port()
    clients: list[mp.Process] = []
    with tempfile.TemporaryDirectory(prefix="masar-bench-ceiling-") as tmp:
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log_handle:
            proc = subprocess.Popen([sys.executable, "-c", _CEILING_SERVER, str(port)], stdout=log_handle,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            _wait_healthy(proc, port, log_path)
            start_at = time.time() + 1.0
            stop_at = start_at + args.ceiling_seconds
            _progress, results = _start_clients(clients, port, "unused", start_at, stop_at, args)
            while time.time() < start_at:
                time.sleep(0.01)
            cpu_start = _util.cpu_seconds(proc.pid)
            outcomes = _collect(clients, results, args.ceiling_seconds)
            seconds = time.time() - start_at
            cpu = _util.cpu_seconds(proc.pid) - cpu_start
        finally:
            for process in clients:
                if process.is_alive():
                    process.terminate()
            proc.terminate()
            proc.wait(timeout=30)
    acked = sum(o["acked"] for o in outcomes)
    figures = {
        "seconds": args.ceiling_seconds,
        "events_per_second": round(acked / seconds),
        "server_cpu_cores": round(cpu / seconds, 2),
        "client_cpu_cores": round(sum(o["cpu_seconds"] for o in outcomes) / seconds, 2),
        "server_cpu_us_per_event": round(cpu / acked * 1e6, 1) if acked else None,
    }
    log(f"peer (uvicorn + JSON parsing only): {figures['events_per_second']:,} events/s, server "
        f"{figures['server_cpu_cores']} cores ({figures['server_cpu_us_per_event']} µs per event), clients "
        f"{figures['client_cpu_cores']} cores")  # fmt: skip
    return figures


def run(args: argparse.Namespace, log) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="masar-bench-ingest-"))
    data_dir = tmp / "data"
    server_log = tmp / "server.log"
    proc: subprocess.Popen | None = None
    clients: list[mp.Process] = []
    try:
        source = _util.create_source(data_dir, "bench")
        write_key, source_id = source["write_key"], int(source["id"])
        port = _util.free_port()
        serve_args = ["serve", "--data-dir", str(data_dir), "--port", str(port)]
        env = dict(os.environ)
        if args.profile_server:
            profile_dir = tmp / "profile"
            profile_dir.mkdir()
            env["MASAR_BENCH_PROFILE_DIR"] = str(profile_dir)
            command = [sys.executable, "-c", _PROFILED_SERVER, *serve_args]
        else:
            command = _util.masar_cmd(*serve_args)
        with server_log.open("wb") as log_handle:
            proc = subprocess.Popen(
                command, stdout=log_handle, stderr=subprocess.STDOUT, cwd=_util.ROOT, start_new_session=True, env=env,
            )  # fmt: skip
        startup = time.monotonic()
        _wait_healthy(proc, port, server_log)
        log(f"server pid {proc.pid} on 127.0.0.1:{port} (ready in {time.monotonic() - startup:.1f} s); "
            f"{args.clients} client processes x batches of {args.batch} for {args.seconds:g} s")  # fmt: skip
        idle_rss = _util.tree_rss_bytes(proc.pid)

        start_at = time.time() + 1.0
        stop_at = start_at + args.seconds
        progress, results = _start_clients(clients, port, write_key, start_at, stop_at, args)

        while time.time() < start_at:
            time.sleep(0.01)
        cpu_start = _util.tree_cpu_seconds(proc.pid)
        server_cpu_start = _util.cpu_seconds(proc.pid)
        samples: list[dict] = []
        next_sample = start_at + SAMPLE_EVERY
        last_acked, last_t = 0, start_at
        while True:
            now = time.time()
            if now >= stop_at:
                break
            time.sleep(max(0.0, min(next_sample, stop_at) - now))
            if time.time() >= next_sample - 0.001:
                acked_now = sum(progress)
                t = time.time()
                sample = {
                    "t": round(t - start_at, 1),
                    "rss_mb": _util.mb(_util.tree_rss_bytes(proc.pid)),
                    "acked": acked_now,
                    "events_per_s": round((acked_now - last_acked) / (t - last_t)),
                }
                samples.append(sample)
                last_acked, last_t = acked_now, t
                log(f"  t={sample['t']:6.1f}s  rss={sample['rss_mb']:7.1f} MB  "
                    f"{sample['events_per_s']:>8,} events/s  acked={acked_now:,}")  # fmt: skip
                next_sample += SAMPLE_EVERY
            if proc.poll() is not None:
                raise RuntimeError(f"the server died ({proc.returncode}):\n{server_log.read_text()[-4000:]}")

        outcomes = _collect(clients, results, args.seconds)
        clients_done = time.time()
        load_seconds = clients_done - start_at
        cpu_load = _util.tree_cpu_seconds(proc.pid) - cpu_start

        health = _wait_healthy(proc, port, server_log, timeout=30)
        lag = _lag(health, data_dir / "wal")
        acked = sum(o["acked"] for o in outcomes)
        log(f"clients stopped: {acked:,} events acknowledged; ingestor lag {_util.mb(lag['lag_bytes'])} MB "
            f"(wal {lag['wal_position']}, applied {lag['applied_position']})")  # fmt: skip

        # Freshness: until every acknowledged event is stored (queryable).
        db = data_dir / "metadata.db"
        stored = _stored_count(db, source_id)
        drain_samples: list[dict] = []
        freshness: float | None = 0.0 if stored >= acked else None
        next_sample = time.time() + SAMPLE_EVERY
        while freshness is None:
            if time.time() - clients_done > args.freshness_timeout:
                break
            time.sleep(0.05)
            stored = _stored_count(db, source_id)
            if stored >= acked:
                freshness = time.time() - clients_done
            if time.time() >= next_sample:
                drain_samples.append({"t": round(time.time() - start_at, 1),
                                      "rss_mb": _util.mb(_util.tree_rss_bytes(proc.pid)), "stored": stored})  # fmt: skip
                log(f"  draining: t={drain_samples[-1]['t']:6.1f}s  rss={drain_samples[-1]['rss_mb']:7.1f} MB  "
                    f"stored={stored:,}/{acked:,}")  # fmt: skip
                next_sample += SAMPLE_EVERY
        # CPU per event, from the start of the load until everything is stored: the work the server
        # (HTTP, validation, log) and the ingestor (enrichment, segments) do for each event. Unlike
        # events/s, this barely moves when other jobs share the machine.
        work_cpu = _util.tree_cpu_seconds(proc.pid) - cpu_start
        server_work_cpu = _util.cpu_seconds(proc.pid) - server_cpu_start
        final_health = _get_json(port, "/health")
        after_rss = _util.tree_rss_bytes(proc.pid)
        stored = _stored_count(db, source_id)
        cli_count = _util.run_json(_util.masar_cmd("events", "count", "--source", "bench",
                                                   "--data-dir", str(data_dir), "--json"))["count"]  # fmt: skip
        seg_rows, distinct_ids = _distinct_message_ids(data_dir.resolve(), db, source_id)

        latencies = sorted(x for o in outcomes for x in o["latencies"])
        # Average log bytes per event: all log files ever written, from the final position.
        wal_total = _wal_bytes_written(data_dir / "wal", final_health["wal_position"], args)
        wal_bpe = round(wal_total / acked) if acked and wal_total else None
        statuses: dict[str, int] = {}
        for o in outcomes:
            for code, n in o["statuses"].items():
                statuses[code] = statuses.get(code, 0) + n
        rss_series = [s["rss_mb"] for s in samples]
        figures = {
            "seconds": args.seconds,
            "clients": args.clients,
            "batch": args.batch,
            "requests": sum(o["requests"] for o in outcomes),
            "failed_requests": sum(o["failures"] for o in outcomes),
            "statuses": statuses,
            "acknowledged_events": acked,
            "duplicates_reported": sum(o["duplicates"] for o in outcomes),
            "rejected_messages": sum(o["rejected"] for o in outcomes),
            "events_per_second": round(acked / load_seconds),
            "target_events_per_second": TARGET_EVENTS_PER_SECOND,
            "latency_p50_ms": round(_util.percentile(latencies, 50) * 1000, 1),
            "latency_p99_ms": round(_util.percentile(latencies, 99) * 1000, 1),
            "latency_max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
            "rss_idle_mb": _util.mb(idle_rss),
            "rss_first_mb": rss_series[0] if rss_series else None,
            "rss_last_mb": rss_series[-1] if rss_series else None,
            "rss_max_mb": max(rss_series) if rss_series else None,
            "rss_after_drain_mb": _util.mb(after_rss),
            "rss_samples_mb": rss_series,
            "events_per_second_samples": [s["events_per_s"] for s in samples],
            "server_cpu_cores": round(cpu_load / load_seconds, 2),
            "client_cpu_cores": round(sum(o["cpu_seconds"] for o in outcomes) / load_seconds, 2),
            "server_cpu_us_per_event": round(server_work_cpu / acked * 1e6, 1) if acked else None,
            "ingestor_cpu_us_per_event": round((work_cpu - server_work_cpu) / acked * 1e6, 1) if acked else None,
            "lag_at_stop": lag,
            "wal_bytes_per_event": wal_bpe,
            "lag_at_stop_events_est": round(lag["lag_bytes"] / wal_bpe) if wal_bpe else None,
            "freshness_seconds": round(freshness, 2) if freshness is not None else None,
            "stored_events": stored,
            "stored_events_cli": cli_count,
            "segment_rows": seg_rows,
            "distinct_message_ids": distinct_ids,
            "exact": stored == acked and cli_count == acked and distinct_ids == seg_rows == acked,
            "final_health": _lag(final_health, data_dir / "wal"),
        }
        return figures
    finally:
        for process in clients:
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if args.profile_server and proc is not None:
            try:
                _print_server_profile(tmp / "profile", args.profile_top, log)
            except Exception as exc:  # a profile is a bonus; never hide the figures for it
                log(f"(could not read the server profile: {exc})")
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _summary(f: dict) -> str:
    ok = "yes" if f["exact"] else "NO"
    eps = f["events_per_second"]
    rows = [
        ("acknowledged events/s (sustained)", f"{eps:,}", f">= {f['target_events_per_second']:,}"
         + ("  (met)" if eps >= f["target_events_per_second"] else f"  ({eps / f['target_events_per_second']:.1%} of it)")),
        ("acknowledged events", f"{f['acknowledged_events']:,} in {f['requests']:,} requests", ""),
        ("failed requests / statuses", f"{f['failed_requests']} / {f['statuses']}", ""),
        ("request latency p50 / p99 / max", f"{f['latency_p50_ms']} / {f['latency_p99_ms']} / {f['latency_max_ms']} ms", ""),
        ("server CPU / client CPU (cores)", f"{f['server_cpu_cores']} / {f['client_cpu_cores']}", "machine has 2"),
        ("CPU per event: server / ingestor", f"{f['server_cpu_us_per_event']} / {f['ingestor_cpu_us_per_event']} µs",
         "until stored"),
        ("server RSS idle / first / last / max", f"{f['rss_idle_mb']} / {f['rss_first_mb']} / {f['rss_last_mb']} / "
         f"{f['rss_max_mb']} MB", "flat over 5 min"),
        ("server RSS after drain", f"{f['rss_after_drain_mb']} MB", ""),
        ("ingestor lag at stop (WAL not applied)", f"{_util.mb(f['lag_at_stop']['lag_bytes'])} MB "
         f"(~{f['lag_at_stop_events_est']:,} events; {f['wal_bytes_per_event']} B/event)", ""),
        ("freshness (stored == acked after stop)", f"{f['freshness_seconds']} s", ""),
        ("stored / CLI count / distinct ids", f"{f['stored_events']:,} / {f['stored_events_cli']:,} / "
         f"{f['distinct_message_ids']:,}", ""),
        ("stored == acknowledged (exact)", ok, "yes"),
    ]  # fmt: skip
    peer = f.get("peer_json_only")
    if peer:
        rows.append(("peer: uvicorn + JSON parsing only", f"{peer['events_per_second']:,} events/s; server "
                     f"{peer['server_cpu_us_per_event']} µs per event", f"masar = {f['share_of_peer']:.1%} of it"))  # fmt: skip
    return _util.table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="load duration (default 60; the issue names 300)"
    )
    parser.add_argument("--clients", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--batch", type=int, default=100, help="events per /v1/batch request (default 100)")
    parser.add_argument("--freshness-timeout", type=float, default=600.0,
                        help="give up waiting for stored == acked after this many seconds")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temp data dir and server log")
    parser.add_argument("--ceiling-seconds", type=float, default=15.0,
                        help="seconds of load on the JSON-only peer server first (default 15; 0 skips it)")  # fmt: skip
    parser.add_argument(
        "--profile-server",
        action="store_true",
        help="run the server under cProfile (every thread) and print where its time goes; "
        "slows the server, so the figures are not comparable",
    )
    parser.add_argument("--profile-top", type=int, default=25, help="rows per profile table (default 25)")
    parser.add_argument("--json", action="store_true", help="print only one line of JSON")
    args = parser.parse_args()

    def log(message: str) -> None:
        if not args.json:
            print(message, flush=True)

    peer = ceiling(args, log) if args.ceiling_seconds > 0 else None
    figures = run(args, log)
    if peer is not None:
        figures["peer_json_only"] = peer
        figures["share_of_peer"] = round(figures["events_per_second"] / peer["events_per_second"], 3)
    if not args.json:
        print()
        print(_summary(figures))
        print()
    print(json.dumps(figures, separators=(",", ":")))


if __name__ == "__main__":
    main()
