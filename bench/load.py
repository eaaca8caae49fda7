"""The one load generator for ours and theirs: a closed loop of N asyncio workers in this process, each
issuing its next request as soon as the previous one answers. A warm-up is discarded; in the measured window
it records every latency and error, and samples the CPU time (/proc/<pid>/stat) of the server processes the
request touches at the window's start and end."""
from __future__ import annotations

import asyncio
import collections
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Awaitable, Callable

from bench import stats

Operation = Callable[[int, int], Awaitable[object]]  # (worker index, request index of that worker)


@dataclass
class LoadResult:
    """One scenario at one concurrency."""

    scenario: str
    side: str          # "ours", "peer", "floor", ...
    clients: int
    requests: int
    errors: int
    window_s: float
    throughput_rps: float
    p50_s: float
    p90_s: float
    p99_s: float
    max_s: float
    mean_s: float
    cpu_us_per_request: float                          # summed over the touched server processes
    cpu_us_by_process: dict[str, float] = field(default_factory=dict)
    client_cpu_us_per_request: float = math.nan        # the generator's own CPU (this process), for context
    error_samples: dict[str, int] = field(default_factory=dict)
    touched: list[str] = field(default_factory=list)
    loadavg_1m: float = math.nan                       # the machine's load when the window opened (noise hint)
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _error_key(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            return f"{type(exc).__name__}:{code().name}"
        except Exception:  # noqa: BLE001 - a best-effort label only
            pass
    return f"{type(exc).__name__}:{str(exc)[:80]}"


async def closed_loop(operation: Operation, *, scenario: str, side: str, clients: int, duration_s: float,
                      warmup_s: float, processes: dict[str, int], touched: tuple[str, ...] | None = None,
                      note: str = "") -> LoadResult:
    """Run `operation` from `clients` workers for warmup_s + duration_s; measure only the window.
    CPU is sampled for every process in `processes`; the per-request figure sums those in `touched` (all by
    default), the others are reported beside it (they should stay near zero)."""
    state = {"stop": False, "start": math.inf, "end": math.inf}
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    perf = time.perf_counter

    async def worker(index: int) -> None:
        seq = 0
        while not state["stop"]:
            started = perf()
            ok = True
            try:
                await operation(index, seq)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is counted as an error of the scenario
                ok = False
                failure = _error_key(exc)
            ended = perf()
            if started >= state["start"] and ended <= state["end"]:
                if ok:
                    latencies.append(ended - started)
                else:
                    errors[failure] += 1
            seq += 1

    tasks = [asyncio.create_task(worker(i)) for i in range(clients)]
    try:
        await asyncio.sleep(warmup_s)
        for task in tasks:  # a worker that died in the warm-up is a broken scenario, not a slow one
            if task.done() and task.exception() is not None:
                raise task.exception()
        me = os.getpid()
        cpu_before = stats.total_cpu_seconds([*processes.values(), me])
        state["start"] = perf()
        loadavg = os.getloadavg()[0]
        await asyncio.sleep(duration_s)
        state["end"] = perf()
        cpu_after = stats.total_cpu_seconds([*processes.values(), me])
    finally:
        state["stop"] = True
        done, pending = await asyncio.wait(tasks, timeout=30)
        for task in pending:
            task.cancel()
    window = state["end"] - state["start"]
    summary = stats.summarize(latencies)
    count = summary.count
    by_process = {name: (cpu_after[pid] - cpu_before[pid]) / count * 1e6 if count else math.nan
                  for name, pid in processes.items()}
    touched = tuple(processes) if touched is None else touched
    total = sum(by_process[name] for name in touched) if touched else math.nan
    client = (cpu_after[me] - cpu_before[me]) / count * 1e6 if count else math.nan
    return LoadResult(
        scenario=scenario, side=side, clients=clients, requests=count, errors=sum(errors.values()),
        window_s=window, throughput_rps=count / window if window > 0 else math.nan,
        p50_s=summary.p50_s, p90_s=summary.p90_s, p99_s=summary.p99_s, max_s=summary.max_s, mean_s=summary.mean_s,
        cpu_us_per_request=total, cpu_us_by_process=by_process, client_cpu_us_per_request=client,
        touched=list(touched), loadavg_1m=loadavg,
        error_samples=dict(errors.most_common(5)), note=note,
    )


async def timed(coro: Awaitable[object]) -> tuple[float, object]:
    """Wall time of one awaited call (for the scale scenarios that run once)."""
    started = time.perf_counter()
    result = await coro
    return time.perf_counter() - started, result
