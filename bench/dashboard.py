"""Dashboard speed: how long each page takes until its data has arrived, on the demo store.

Builds the default demo store (``masar demo --no-serve``), starts a real ``masar serve`` on it,
signs in with Debian's Chromium (Playwright) and loads every page ``--repeat`` times. A page's
time is from navigation start to the moment its script marks ``body[data-loaded=PAGE]`` (all
its queries answered and drawn). The first load of the run builds the caches (event frame, sales
facts) and is reported apart as "cold"; the p50 and p95 are over the warm loads. The issue's bar:
each page's data in ≤ 300 ms at p95.

Beside each page, the same page's queries sent straight to ``POST /api/v1/query`` (no browser):
the server's share of the time.

    .venv/bin/python bench/dashboard.py
    .venv/bin/python bench/dashboard.py --data-dir /tmp/demo --repeat 30 --pages overview,cohorts
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
EMAIL, PASSWORD = "bench@example.com", "bench password 1"
PAGES = ("overview", "funnels", "leaks", "journeys", "customers", "cohorts", "channels", "settings")


def masar(*args: str, timeout: float = 600) -> str:
    done = subprocess.run([sys.executable, "-m", "masar.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"masar {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (k - low) * (ordered[high] - ordered[low])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, help="an existing demo store (default: build one)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--pages", default=",".join(PAGES))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="masar-dash-"))
    data = args.data_dir
    try:
        if data is None:
            data = work / "data"
            started = time.perf_counter()
            masar("demo", "--no-serve", "--data-dir", str(data))
            print(f"demo store built in {time.perf_counter() - started:.1f} s")
        users = masar("users", "list", "--json", "--data-dir", str(data))
        if EMAIL not in users:
            masar("users", "create", "--email", EMAIL, "--role", "owner", "--password", PASSWORD, "--data-dir", str(data))
        port = free_port()
        log = (work / "serve.log").open("wb")
        server = subprocess.Popen([sys.executable, "-m", "masar.cli", "serve", "--data-dir", str(data), "--port",
                                   str(port)], stdout=log, stderr=subprocess.STDOUT, cwd=REPO)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("masar serve did not start:\n" + (work / "serve.log").read_text()[-3000:])
                time.sleep(0.1)
            run(url, [p for p in args.pages.split(",") if p], args.repeat)
        finally:
            server.terminate()
            server.wait(timeout=60)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(url: str, pages: list[str], repeat: int) -> None:
    from playwright.sync_api import sync_playwright

    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {repeat} warm loads a page")
    print("data: navigation start to the last query's response; drawn: to body[data-loaded] (all drawn)")
    print(f"{'page':<11} {'cold ms':>9} {'data p50':>9} {'data p95':>9} {'drawn p50':>8} {'drawn p95':>8} "
          f"{'queries':>8} {'API p95 ms':>11}")  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.goto(url + "/login")
        page.fill("#email", EMAIL)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/overview**")
        cookies = {c["name"]: c["value"] for c in context.cookies()}
        for name in pages:
            bodies: list[bytes] = []

            def record(request, bodies=bodies) -> None:
                if request.url.endswith("/api/v1/query") and request.method == "POST":
                    bodies.append(request.post_data_buffer or b"")

            page.on("request", record)
            times: list[float] = []
            arrived: list[float] = []
            response = page.goto(f"{url}/{name}")
            if response is None or response.status != 200:
                print(f"{name:<11} (no such page: {response.status if response else 'no answer'})")
                page.remove_listener("request", record)
                continue
            for i in range(repeat + 1):
                started = time.perf_counter()
                page.goto(f"{url}/{name}") if i else None
                page.wait_for_selector(f"body[data-loaded^={name}]", timeout=300_000)
                # Navigation start to data-loaded, as the browser measured it (app.js notes it),
                # and to the end of the last query's response (the data has arrived).
                elapsed = page.evaluate("window.__masarLoadedAt")
                times.append(elapsed if i else max(elapsed, (time.perf_counter() - started) * 1000))
                arrived.append(page.evaluate(
                    "Math.max(0, ...performance.getEntriesByType('resource')"
                    ".filter(e => e.name.includes('/api/v1/')).map(e => e.responseEnd))"
                ))  # fmt: skip
            page.remove_listener("request", record)
            cold, warm, data = times[0], times[1:], arrived[1:]
            api = api_times(url, cookies, page.content(), bodies[-max(1, len(bodies) // (repeat + 1)):], repeat)
            print(f"{name:<11} {cold:>9,.0f} {percentile(data, 0.5):>9,.0f} {percentile(data, 0.95):>9,.0f} "
                  f"{statistics.median(warm):>8,.0f} {percentile(warm, 0.95):>8,.0f} "
                  f"{len(bodies) // (repeat + 1):>8} {api:>11,.0f}")  # fmt: skip
        browser.close()


def api_times(url: str, cookies: dict[str, str], html: str, bodies: list[bytes], repeat: int) -> float:
    """p95 over ``repeat`` rounds of the page's queries sent one after another (the page sends
    some at once; this is the server's total)."""
    token = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    client = httpx.Client(base_url=url, cookies=cookies, timeout=120,
                          headers={"X-CSRF-Token": token, "Content-Type": "application/json"})  # fmt: skip
    rounds = []
    for _ in range(repeat):
        started = time.perf_counter()
        for body in bodies:
            client.post("/api/v1/query", content=body).raise_for_status()
        rounds.append((time.perf_counter() - started) * 1000)
    return percentile(rounds, 0.95) if rounds else 0.0


if __name__ == "__main__":
    main()
