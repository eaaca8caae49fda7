"""The tracing group (issue 19): the depot's RevealLogonData with tracing off and on, side by side in one run.

`off` is the suite as `make run` starts it (no OTEL_* variable); `on` restarts authz and the depot with
OTEL_EXPORTER_OTLP_ENDPOINT pointing at a real OTLP/gRPC receiver in a process of its own (bench/otlpsink.py),
so the traced processes pay the whole cost: spans for the served RPC, the authz consultation and its client
call, every statement, the barrier, and the batch exporter's serialisation and sends. This machine's CPU per
request drifts by tens of percent between runs a minute apart, so the two sides are measured back to back in
ROUNDS rounds (BENCH_TRACING_ROUNDS, default 3) and the verdict is the median of the rounds' ratios. Then the two
services are restarted untraced again, for the groups that follow.

Target: the extra CPU per reveal (depot + authz) with tracing on <= 15 % (CPU on / CPU off <= 1.15)."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from bench import stats
from bench.peers import free_port, wait_port

TRACED = ("authz", "depot")  # the processes a direct reveal touches (authz first: the depot then dials it fresh)
LIMIT = 1.15
ROUNDS = int(os.environ.get("BENCH_TRACING_ROUNDS", "3"))
SAMPLED = 0.1  # the sampled side's OTEL_TRACES_SAMPLER_ARG (parentbased_traceidratio)
SPANS_PER_REVEAL = "tracing: spans in one traced reveal's trace"
SPAN_COST = "tracing: CPU per span, SDK + OTLP export, in a process of its own (µs)"


def ratio_figure(clients: int) -> str:
    return f"tracing: at {clients} client(s), reveal CPU on / off, median of the rounds"


def bound_figure(clients: int) -> str:
    return (f"tracing: at {clients} client(s), the least on / off the reveal's spans allow "
            "(1 + spans x CPU per span / untraced CPU)")


def sampled_figure(clients: int) -> str:
    return f"tracing: at {clients} client(s), reveal CPU on / off with {SAMPLED:.0%} of traces sampled"


def median_ratios(results: list, clients: list[int]) -> dict[int, float]:
    """Per client count, the median over rounds of (CPU per reveal traced ÷ untraced in the same round): each
    round measures both sides back to back, so a slower or busier stretch of the machine weighs on both."""
    out = {}
    for c in clients:
        ratios = []
        for r in range(1, ROUNDS + 1):
            on = next((x for x in results if x.side == f"on {r}" and x.clients == c), None)
            off = next((x for x in results if x.side == f"off {r}" and x.clients == c), None)
            if on is not None and off is not None and off.cpu_us_per_request > 0:
                ratios.append(on.cpu_us_per_request / off.cpu_us_per_request)
        if ratios:
            out[c] = round(statistics.median(ratios), 2)
    return out


def targets(figures: dict, clients: list[int]) -> list[dict]:
    """Issue 19's target per client count (none when the group did not run)."""
    out = []
    for c in clients:
        value = figures.get(ratio_figure(c))
        if value is None:
            continue
        name = f"depot reveal CPU with tracing on / off, {c} client(s) (median of {ROUNDS} rounds)"
        out.append({"name": name, "value": value, "op": "<=", "limit": LIMIT,
                    "verdict": stats.Target(name, "<=", LIMIT).verdict(value), "unit": ""})
    return out


def _start_sink(workdir, name: str = "otlp-spans") -> tuple[subprocess.Popen, int, object]:
    port = free_port()
    count_file = workdir / f"{name}.count"
    env = dict(os.environ, BENCH_OTLP_PORT=str(port), BENCH_OTLP_COUNT_FILE=str(count_file))
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    out = open(workdir / "logs" / f"{name}.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "bench.otlpsink"], env=env, stdout=out, stderr=out)
    wait_port(port, 60, process)
    return process, port, count_file


def _stop_sink(sink: subprocess.Popen, count_file) -> tuple[int, dict]:
    """Stop a sink; the spans it received and the summary of the reveals' traces."""
    sink.terminate()
    sink.wait(30)
    summary_file = count_file.with_name(count_file.name + ".json")
    spans = int(count_file.read_text()) if count_file.exists() else 0
    return spans, json.loads(summary_file.read_text()) if summary_file.exists() else {}


def _restart(ours, **env: str) -> None:
    """Restart the traced services with `env` added, or untraced (no OTEL_* variable) when it is empty."""
    if not env:
        for key in [k for k in ours.supervisor.env if k.startswith("OTEL_")]:
            ours.supervisor.env.pop(key)
    for service in TRACED:
        ours.restart(service, **env)


def span_cost_us(workdir) -> float:
    """CPU µs per span of the kit's tracing in a process of its own (bench/spancost.py), exporting to a sink."""
    sink, port, count_file = _start_sink(workdir, "spancost")
    try:
        done = subprocess.run([sys.executable, "-m", "bench.spancost", str(port)], capture_output=True, text=True,
                              timeout=300, check=True)
    finally:
        received, _ = _stop_sink(sink, count_file)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    counted = min(measured["spans"], received - measured["warmup_spans"])  # a dropped span does not flatter it
    return measured["cpu_s"] / counted * 1e6 if counted > 0 else float("nan")


async def run_group(bench, ours, fx) -> None:
    """ROUNDS rounds of the two sides (untraced, then traced) at every client count of the run, then one traced
    side sampled at SAMPLED; the median ratio per client count, the spans of one traced reveal, what one span costs
    and the least the reveal's spans can add, as figures."""
    sink, port, count_file = _start_sink(bench.workdir)
    bench.cleanup.append(sink.kill)
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    results, sampled = [], []
    try:
        for r in range(1, ROUNDS + 1):
            if r > 1:
                _restart(ours)
            results += await bench.measure_reveal(ours, fx, scenario="tracing", side=f"off {r}")
            _restart(ours, **otel)
            results += await bench.measure_reveal(ours, fx, scenario="tracing", side=f"on {r}")
        _restart(ours, OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG=str(SAMPLED))
        sampled = await bench.measure_reveal(ours, fx, scenario="tracing", side=f"on, {SAMPLED:.0%} sampled")
    finally:
        _restart(ours)  # untraced again for the groups that follow (their exporters flush as they stop)
        _, summary = _stop_sink(sink, count_file)
    per_span = span_cost_us(bench.workdir)
    bench.scale_figures[SPAN_COST] = round(per_span, 1)
    traces = summary.get("traces", 0)
    spans_per_reveal = summary.get("spans", 0) / traces if traces else float("nan")
    bench.scale_figures[SPANS_PER_REVEAL] = round(spans_per_reveal, 2)
    for name, n in summary.get("names", {}).items():
        bench.scale_figures[f"tracing: {name} spans per reveal"] = round(n / traces, 2)
    for c, value in median_ratios(results, bench.clients).items():
        bench.scale_figures[ratio_figure(c)] = value
        off = statistics.median(x.cpu_us_per_request for x in results if x.clients == c and x.side.startswith("off "))
        bench.scale_figures[bound_figure(c)] = round(1 + spans_per_reveal * per_span / off, 2)
        thinned = next((x for x in sampled if x.clients == c), None)
        if thinned is not None:
            bench.scale_figures[sampled_figure(c)] = round(thinned.cpu_us_per_request / off, 2)
