"""Pure helpers of the benchmark: percentiles, /proc parsing, ratios and target verdicts (unit-tested)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterable, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default).

    Raises ValueError on an empty sequence or q outside 0..100."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class LatencySummary:
    count: int
    p50_s: float
    p90_s: float
    p99_s: float
    max_s: float
    mean_s: float


def summarize(latencies_s: Sequence[float]) -> LatencySummary:
    """p50/p90/p99/max/mean of a list of latencies in seconds (one sort)."""
    if not latencies_s:
        return LatencySummary(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    ordered = sorted(latencies_s)
    return LatencySummary(len(ordered), percentile(ordered, 50), percentile(ordered, 90), percentile(ordered, 99),
                          ordered[-1], sum(ordered) / len(ordered))


# --- /proc -------------------------------------------------------------------------------------------------
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_proc_stat(text: str) -> tuple[int, int]:
    """(utime, stime) in clock ticks from the text of /proc/<pid>/stat.

    The command name (field 2) is in parentheses and may itself hold spaces or ')': the fields after it are
    counted from the LAST ')'. utime and stime are fields 14 and 15 (1-based) of proc(5)."""
    end = text.rindex(")")
    rest = text[end + 2:].split()
    # rest[0] is field 3 (state); field n is rest[n - 3]
    return int(rest[14 - 3]), int(rest[15 - 3])


def parse_status_kib(text: str, key: str = "VmRSS") -> int:
    """A `Key:   1234 kB` value of /proc/<pid>/status in KiB (0 when the key is absent, e.g. a zombie)."""
    for line in text.splitlines():
        if line.startswith(key + ":"):
            parts = line.split()
            return int(parts[1]) if len(parts) > 1 else 0
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
        utime, stime = parse_proc_stat(handle.read())
    return (utime + stime) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB."""
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
        return parse_status_kib(handle.read(), "VmRSS") / 1024.0


def total_cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pid in pids}


def cpu_per_request_us(before: dict[int, float], after: dict[int, float], requests: int) -> float:
    """Server CPU per request in microseconds: the summed CPU delta of the processes, over the requests."""
    if requests <= 0:
        return math.nan
    delta = sum(after[pid] - before[pid] for pid in before)
    return delta / requests * 1e6


# --- ratios and targets ------------------------------------------------------------------------------------
def ratio(ours: float, theirs: float) -> float:
    """ours / theirs; NaN when either side is missing or the denominator is zero."""
    if ours is None or theirs is None or math.isnan(ours) or math.isnan(theirs) or theirs == 0:
        return math.nan
    return ours / theirs


@dataclass(frozen=True)
class Target:
    """One target of issue 7: `value <op> limit`, op in '<=' or '>='."""

    name: str
    op: str
    limit: float

    def verdict(self, value: float | None) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "N/A"
        if self.op == "<=":
            return "PASS" if value <= self.limit else "FAIL"
        if self.op == ">=":
            return "PASS" if value >= self.limit else "FAIL"
        raise ValueError(f"unknown operator {self.op!r}")


def fmt_us(seconds: float) -> str:
    """Seconds as a short human string in µs or ms."""
    if seconds is None or math.isnan(seconds):
        return "-"
    us = seconds * 1e6
    return f"{us:.0f} µs" if us < 10_000 else f"{us / 1000:.1f} ms"


def fmt_num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


# --- py-spy's collapsed stacks --------------------------------------------------------------------------------
def parse_collapsed(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    """py-spy `--format raw` (Brendan Gregg's collapsed stacks): `frame;frame;...;leaf COUNT` per line,
    root first. Returns (frames, samples) pairs; malformed lines are skipped."""
    out = []
    for line in lines:
        line = line.rstrip("\n")
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        out.append((stack.split(";"), int(count)))
    return out


def _short(frame: str) -> str:
    """`func (path/to/module.py:123)` -> `func (module.py)`; py-spy's process/thread pseudo-frames pass."""
    name, sep, where = frame.partition(" (")
    if not sep:
        return frame
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.replace("\\", "/").split("/")
    for anchor in ("site-packages", "services", "gateway", "bench", "lib"):
        if anchor in parts:
            idx = len(parts) - 1 - parts[::-1].index(anchor)
            path = "/".join(parts[idx + 1:]) if anchor in ("site-packages", "lib") else "/".join(parts[idx:])
            break
    else:
        path = parts[-1]
    head, _, rest = path.partition("/")
    if head.startswith("python3") and rest:  # .../lib/python3.11/selectors.py -> selectors.py
        path = rest
    return f"{name} ({path})"


def thread_group(frame: str) -> str:
    """py-spy --threads pseudo-frame `thread (0x..): Name` -> a group: the event loop, SQLite workers, gRPC."""
    name = frame.split(":", 1)[-1].strip() if frame.startswith("thread ") else ""
    if name == "MainThread":
        return "event loop (MainThread)"
    if "_connection_worker_thread" in name:
        return "aiosqlite worker threads"
    if "_poll_wrapper" in name or name.startswith("asyncio_"):
        return "grpc / asyncio helper threads"
    return "other threads" if name else "unnamed"


# Frames every busy sample of an asyncio server passes through: they say nothing about where a request's time goes.
BOILERPLATE = (
    "_run_module_as_main (", "_run_code (", "<module> (", "run (runners.py)", "Runner.run (",
    "BaseEventLoop.run_until_complete (", "BaseEventLoop.run_forever (", "BaseEventLoop._run_once (",
    "Handle._run (", "main (services/kit/app.py)", "Thread._bootstrap (", "Thread._bootstrap_inner (", "Thread.run (",
)


def top_frames(stacks: list[tuple[list[str], int]], limit: int = 15, *, skip_idle: bool = True) -> dict:
    """Self and inclusive sample shares per function (line numbers dropped), highest first, and the share of
    each thread group. Shares are of all busy samples of the process.

    With skip_idle, stacks whose leaf is the event loop's selector are not counted (the loop waiting)."""
    selfs: dict[str, int] = {}
    incl: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = 0
    for frames, count in stacks:
        group = thread_group(frames[0]) if frames and frames[0].startswith("thread ") else "unnamed"
        names = [_short(f) for f in frames if not f.startswith(("process ", "thread "))]
        if not names:
            names = ["(no Python frame: C code)"]
        if skip_idle and names[-1].endswith(("select (selectors.py)", "poll (selectors.py)")):
            continue
        total += count
        threads[group] = threads.get(group, 0) + count
        selfs[names[-1]] = selfs.get(names[-1], 0) + count
        for name in set(names):
            if not name.startswith(BOILERPLATE):
                incl[name] = incl.get(name, 0) + count

    def share(table):
        return [(name, round(100.0 * n / total, 1)) for name, n in sorted(table.items(), key=lambda kv: -kv[1])[:limit]]

    return {"samples": total, "self": share(selfs) if total else [], "inclusive": share(incl) if total else [],
            "threads": share(threads) if total else []}
