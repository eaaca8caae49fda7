"""The tracing group (issue 19): the depot's RevealLogonData with tracing off and on, side by side in one run.

`off` is the suite as `make run` starts it (no OTEL_* variable); `on` restarts authz and the depot with
OTEL_EXPORTER_OTLP_ENDPOINT pointing at a real OTLP/gRPC receiver in a process of its own (bench/otlpsink.py),
so the traced processes pay the whole cost: spans for the served RPC, the authz consultation and its client
call, every statement, the barrier, and the batch exporter's serialisation and sends. Then the two services are
restarted untraced again, for the groups that follow.

Target: the extra CPU per reveal (depot + authz) with tracing on <= 15 % (CPU on / CPU off <= 1.15)."""
from __future__ import annotations

import os
import subprocess
import sys

from bench import stats
from bench.peers import free_port, wait_port

COMPARISON = {"label": "depot reveal: tracing on vs off", "scenario": "tracing", "ours": "on",
              "ours_label": "traced", "ref_scenario": "tracing", "ref": "off", "ref_label": "untraced"}
TRACED = ("authz", "depot")  # the processes a direct reveal touches (authz first: the depot then dials it fresh)
LIMIT = 1.15
SPANS_PER_REVEAL = "tracing: spans exported per traced reveal"


def targets(comparisons: list[dict], clients: list[int]) -> list[dict]:
    """Issue 19's target per client count (none when the group did not run)."""
    out = []
    for c in clients:
        row = next((r for r in comparisons if r["comparison"] == COMPARISON["label"] and r["clients"] == c), None)
        if row is None:
            continue
        name = f"depot reveal CPU with tracing on / off, {c} client(s)"
        out.append({"name": name, "value": row["cpu_ratio"], "op": "<=", "limit": LIMIT,
                    "verdict": stats.Target(name, "<=", LIMIT).verdict(row["cpu_ratio"]), "unit": ""})
    return out


def _start_sink(workdir) -> tuple[subprocess.Popen, int, object]:
    port = free_port()
    count_file = workdir / "otlp-spans.count"
    env = dict(os.environ, BENCH_OTLP_PORT=str(port), BENCH_OTLP_COUNT_FILE=str(count_file))
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    out = open(workdir / "logs" / "otlpsink.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "bench.otlpsink"], env=env, stdout=out, stderr=out)
    wait_port(port, 60, process)
    return process, port, count_file


def _restart(ours, **env: str) -> None:
    for service in TRACED:
        ours.restart(service, **env)


async def run_group(bench, ours, fx) -> None:
    """The two sides at every client count of the run; the spans received per traced reveal as a figure."""
    sink, port, count_file = _start_sink(bench.workdir)
    bench.cleanup.append(sink.kill)
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    try:
        await bench.measure_reveal(ours, fx, scenario="tracing", side="off")
        _restart(ours, **otel)
        results = await bench.measure_reveal(ours, fx, scenario="tracing", side="on")
    finally:
        for key in otel:
            ours.supervisor.env.pop(key, None)
        _restart(ours)  # untraced again for the groups that follow (their exporters flush as they stop)
        sink.terminate()
        sink.wait(30)
    reveals = sum(r.requests for r in results)
    spans = int(count_file.read_text()) if count_file.exists() else 0
    # the warm-ups' reveals are exported too, so the figure overstates a little
    bench.scale_figures[SPANS_PER_REVEAL] = round(spans / reveals, 1) if reveals else float("nan")
