"""Small helpers shared by the benchmark scripts (no third-party dependencies)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def masar_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "masar.cli", *args]


def run_json(args: list[str], *, timeout: float = 600) -> dict:
    """Run a CLI command that prints JSON; raise with its stderr if it fails."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout)


def create_source(data_dir: Path, name: str) -> dict:
    return run_json(masar_cmd("sources", "create", name, "--data-dir", str(data_dir), "--json"))


def children_of(pid: int) -> list[int]:
    """All descendants of ``pid`` (reads /proc/*/stat)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rss_bytes(pid: int) -> int:
    """VmRSS of one process in bytes (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss_bytes(pid: int | str = "self") -> int:
    """VmHWM (peak RSS of the current program image, reset by exec) in bytes; 0 if gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def tree_rss_bytes(pid: int) -> int:
    """RSS of ``pid`` plus its descendants (e.g. a uvicorn worker child)."""
    return rss_bytes(pid) + sum(rss_bytes(child) for child in children_of(pid))


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds(pid: int) -> float:
    return cpu_seconds(pid) + sum(cpu_seconds(child) for child in children_of(pid))


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[rank]


def mb(value: float) -> float:
    return round(value / (1024 * 1024), 1)


def table(
    rows: list[tuple[str, str, str]], headers: tuple[str, str, str] = ("measure", "value", "target")
) -> str:
    """A plain fixed-width table."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(3)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)), line]
    for row in rows:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(out)
