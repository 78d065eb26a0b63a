"""Shared fixtures for end-to-end tests: a real ``masar serve`` subprocess on a free loopback port.

Nothing here mocks Masar: sources are created with the CLI, the server is the real uvicorn app
writing a real write-ahead log and Parquet segments, and counts are read back from the store.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
SERVER_START_TIMEOUT = 60.0


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory) -> Path:
    """The one data directory chdb runs on in this test process (chdb takes one per process):
    every ClickHouse-backed store in the tests is a database of its own inside it."""
    return tmp_path_factory.mktemp("chdb-engine")


@pytest.fixture(scope="session")
def chdb_client(chdb_dir):
    """A client on the shared chdb engine, for raw ClickHouse SQL in tests."""
    from masar.store.clickhouse.client import ChdbClient

    return ChdbClient(chdb_dir, database="default")


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASAR_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def masar_cli(*args: str | os.PathLike[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m masar.cli ARGS`` and fail loudly (with its stderr) if it exits non-zero."""
    cmd = [sys.executable, "-m", "masar.cli", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=REPO)
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done


def masar_cli_json(*args: str | os.PathLike[str], timeout: float = 60.0) -> Any:
    return json.loads(masar_cli(*args, "--json", timeout=timeout).stdout)


def make_source(data_dir: str | os.PathLike[str], name: str) -> dict[str, Any]:
    """Create a source with ``masar sources create NAME --json``: returns {"id", "name", "write_key"}."""
    created = masar_cli_json("sources", "create", name, "--data-dir", data_dir)
    assert set(created) >= {"id", "name", "write_key"}, created
    assert created["name"] == name
    return created


def cli_count(data_dir: str | os.PathLike[str], source: str, *, event: str | None = None) -> int:
    extra = ["--event", event] if event is not None else []
    return int(masar_cli_json("events", "count", "--source", source, "--data-dir", data_dir, *extra)["count"])


def cli_rejected(data_dir: str | os.PathLike[str], source: str, *, limit: int = 1000) -> list[dict[str, Any]]:
    return masar_cli_json(
        "events", "rejected", "--source", source, "--data-dir", data_dir, "--limit", str(limit)
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _source_name(source: Any) -> str:
    return source if isinstance(source, str) else source.name


def stored_count(store_or_cli: Any, source: Any, *, event: str | None = None) -> int:
    """The stored count, from an open store (``masar.open``) or, given a data directory, from the CLI."""
    if isinstance(store_or_cli, str | os.PathLike):
        return cli_count(store_or_cli, _source_name(source), event=event)
    src = store_or_cli.source(_source_name(source))
    return store_or_cli.count_events(src, event=event)


def wait_for_count(
    store_or_cli: Any,
    source: Any,
    n: int,
    timeout: float = 20,
    *,
    event: str | None = None,
    interval: float = 0.1,
) -> int:
    """Poll until the stored count of ``source`` (optionally one ``event``) reaches ``n``; returns it.

    ``store_or_cli`` is an open store or a data directory (then each poll runs ``masar events count``).
    Returns as soon as the count is >= n, so callers assert equality themselves.
    """
    deadline = time.monotonic() + timeout
    count = -1
    while True:
        count = stored_count(store_or_cli, source, event=event)
        if count >= n:
            return count
        if time.monotonic() > deadline:
            what = f"{_source_name(source)!r}" + (f" event {event!r}" if event else "")
            raise AssertionError(f"stored count of {what} stayed at {count}, expected {n} within {timeout} s")
        time.sleep(interval)


@dataclass
class MasarServer:
    """One ``masar serve`` subprocess. Iterating yields (url, proc) for ``url, proc = server``."""

    data_dir: Path
    log_path: Path
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)  # extra environment, e.g. MASAR_* settings
    proc: subprocess.Popen[bytes] | None = None
    _log: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __iter__(self) -> Iterator[Any]:
        yield self.url
        yield self.proc

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def start(self, *, port: int | None = None, timeout: float = SERVER_START_TIMEOUT) -> MasarServer:
        """Start (or restart) the server; waits until GET /health answers."""
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        for attempt in range(3):
            self.port = port if port is not None and attempt == 0 else free_port()
            self._log = self.log_path.open("ab")
            self._log.write(f"\n--- start on port {self.port} ---\n".encode())
            self._log.flush()
            cmd = [
                sys.executable,
                "-m",
                "masar.cli",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ]
            self.proc = subprocess.Popen(
                cmd,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=_env(self.env),
                cwd=REPO,
                start_new_session=True,
            )
            if self._wait_healthy(timeout):
                return self
            self.stop()
            if "address already in use" not in self.log().lower():
                break
        raise AssertionError(f"masar serve did not become healthy on port {self.port}; log:\n{self.log()}")

    def _wait_healthy(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        return False

    def health(self) -> dict[str, Any]:
        response = httpx.get(self.url + "/health", timeout=10)
        response.raise_for_status()
        return response.json()

    def wait_ingested(self, timeout: float = 20) -> dict[str, Any]:
        """Wait until the ingestor has applied everything the write-ahead log holds."""
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            if health["applied_position"] == health["wal_position"]:
                return health
            if time.monotonic() > deadline:
                raise AssertionError(f"ingestor did not catch up within {timeout} s: {health}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final flush."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._close_log()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (graceful: uvicorn runs the lifespan shutdown), then SIGKILL if it hangs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class _ServerFactory:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.started: list[MasarServer] = []

    def __call__(
        self, data_dir: str | os.PathLike[str], *, port: int | None = None, env: dict[str, str] | None = None
    ) -> MasarServer:
        index = len(self.started)
        server = MasarServer(Path(data_dir), self.log_dir / f"masar-serve-{index}.log", env=dict(env or {}))
        self.started.append(server)
        return server.start(port=port)

    def close(self) -> None:
        for server in self.started:
            server.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_ServerFactory]:
    """Factory: ``srv = server(data_dir)`` starts ``masar serve``; ``srv.url``, ``srv.proc``; stopped at teardown."""
    factory = _ServerFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_ServerFactory]:
    """Like ``server`` but lives for the whole test module (one server shared by many tests)."""
    factory = _ServerFactory(tmp_path_factory.mktemp("serve-logs"))
    yield factory
    factory.close()
