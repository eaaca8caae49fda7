"""The live event feed on the real processes (`python -m bench.events`, about 2 minutes on 2 cores).

The suite is started and its data made as `bench.run` does (`suite.OurSuite`), then two things are measured:

1. **Delivery latency, commit -> feed.** One watcher on the depot's WatchEvents (its own port, types =
   LOGON_DATA_REVEALED) and one on the gateway's merged WatchEvents (no type filter: the depot's and the
   connections service's feeds) are opened, then reveals are sent open-loop at BENCH_EVENTS_RATE (100) per
   second, 2 s of warm-up and BENCH_EVENTS_LATENCY_S (10) measured. A reveal's event is matched by the sequence
   in its response's `log_event` ("customers/{c}/logEvents/{n}" = the event's `log_sequence`); its latency is
   (the event's arrival at the watcher - the reveal response's arrival), both `perf_counter` in this process (the
   commit happened before the response was sent, so this is at most commit -> feed). An event that never
   arrives (watched 3 s past the window) is missed; one that arrives twice is duplicated: both must be 0. A webhook
   of the customer for its reveals, registered for this part only, posts to an HTTP server in this process: commit
   -> webhook received is measured the same way (a repeat is a delivery id seen before).
2. **CPU per reveal a watcher adds.** `load.closed_loop` reveals (the depot directly, BENCH_CLIENTS "1,32"
   clients, BENCH_EVENTS_CPU_S (4) s after 1 s of warm-up) with 0, 1 and 10 watchers open on the depot feed of
   the reveals' customer; CPU of the depot + authz from /proc per reveal. The three are measured back to back in
   BENCH_EVENTS_ROUNDS (3) rounds and the ratio with/without is the median of the rounds' ratios (this machine
   drifts by tens of percent between minutes). The log is the outbox, so the no-watcher run already pays the
   outbox; what a watcher adds is the feed: a read of the new events and a CheckBulk to authz per batch.

Target (issue): the outbox and the feed add <= 10 % of a reveal's CPU (1 watcher / none <= 1.10).
Writes bench/results/events.md and prints it."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench import load, stats, suite
from bench.run import N_SECRETS, RESULTS, Bench, git_revision, log
from remotesupport.authz.v1 import authz_pb2, authz_pb2_grpc
from remotesupport.common.v1 import events_pb2
from remotesupport.depot.v1 import depot_pb2, depot_pb2_grpc
from remotesupport.gateway.v1 import gateway_pb2, gateway_pb2_grpc

RATE = float(os.environ.get("BENCH_EVENTS_RATE", "100"))
LATENCY_S = float(os.environ.get("BENCH_EVENTS_LATENCY_S", "10"))
LATENCY_WARMUP_S = 2.0
GRACE_S = 3.0  # how long past the window a missing event is waited for
CPU_S = float(os.environ.get("BENCH_EVENTS_CPU_S", "4"))
CPU_WARMUP_S = 1.0
ROUNDS = int(os.environ.get("BENCH_EVENTS_ROUNDS", "3"))
CLIENTS = [int(c) for c in os.environ.get("BENCH_CLIENTS", "1,32").split(",")]
WATCHERS = (0, 1, 10)
LIMIT = 1.10
REVEALED = events_pb2.EVENT_TYPE_LOGON_DATA_REVEALED


class Watcher:
    """One open WatchEvents stream: the first arrival time of every depot log sequence, and the repeats."""

    def __init__(self, call) -> None:
        self.call = call
        self.arrivals: dict[int, float] = {}
        self.duplicates = 0
        self.opened = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for response in self.call:
            now = time.perf_counter()
            self.opened.set()
            for event in response.events:
                if event.source != "depot":
                    continue
                if event.log_sequence in self.arrivals:
                    self.duplicates += 1
                else:
                    self.arrivals[event.log_sequence] = now

    async def open(self) -> "Watcher":
        """Wait for the first response (the watch is open), or fail with the stream's error."""
        opened = asyncio.create_task(self.opened.wait())
        await asyncio.wait({opened, self.task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        opened.cancel()
        if not self.opened.is_set():
            raise RuntimeError(f"the watch did not open: {self.task.exception() if self.task.done() else 'timeout'}")
        return self

    async def close(self) -> None:
        self.call.cancel()
        result, = await asyncio.gather(self.task, return_exceptions=True)
        if isinstance(result, Exception) and not isinstance(result, grpc.RpcError):
            raise result


class HookReceiver:
    """The bench's webhook endpoint: a minimal HTTP server on loopback in this process, answering every POST 200;
    the first arrival time of every depot log sequence, and the repeats (by delivery id)."""

    def __init__(self) -> None:
        self.arrivals: dict[int, float] = {}
        self.duplicates = 0
        self._ids: set[str] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> "HookReceiver":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hook"
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                now = time.perf_counter()
                headers = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ": " in line)
                lower = {k.lower(): v for k, v in headers.items()}
                body = await reader.readexactly(int(lower.get("content-length", "0")))
                delivery = lower.get("remotesupport-delivery", "")
                if delivery in self._ids:
                    self.duplicates += 1
                else:
                    self._ids.add(delivery)
                    self.arrivals.setdefault(int(json.loads(body).get("log_sequence", 0)), now)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def register_hook(channel: grpc.aio.Channel, ours: suite.OurSuite, fx: suite.Fixture,
                        url: str) -> tuple[str, str]:
    """A webhook of the fixture's customer for its reveals, registered by its user administrator: its name, and
    the administrator's token."""
    admin_id = f"S{int(fx.customer) + 2:010d}"  # bench.suite's customer_with_user: the customer's first admin
    async with grpc.aio.insecure_channel(ours.address("authz")) as authz_channel:
        login = await authz_pb2_grpc.AuthzServiceStub(authz_channel).Login(authz_pb2.LoginRequest(
            user_id=admin_id, password=suite.PASSWORD))
    response = await depot_pb2_grpc.LogonDepotServiceStub(channel).CreateWebhook(depot_pb2.CreateWebhookRequest(
        parent=f"customers/{fx.customer}", webhook=depot_pb2.Webhook(url=url, event_types=[REVEALED])),
        metadata=suite.md(login.access_token))
    return response.webhook.name, login.access_token


def depot_watcher(channel: grpc.aio.Channel, fx: suite.Fixture) -> Watcher:
    request = depot_pb2.WatchEventsRequest(parent=f"customers/{fx.customer}", types=[REVEALED])
    return Watcher(depot_pb2_grpc.LogonDepotServiceStub(channel).WatchEvents(request, metadata=suite.md(fx.token)))


def gateway_watcher(channel: grpc.aio.Channel, fx: suite.Fixture) -> Watcher:
    request = gateway_pb2.WatchEventsRequest(parent=f"customers/{fx.customer}")
    return Watcher(gateway_pb2_grpc.RemoteSupportServiceStub(channel).WatchEvents(request,
                                                                                  metadata=suite.md(fx.token)))


async def wait_delivered(watchers: list[Watcher], sequences, timeout: float = GRACE_S) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline and not all(s in w.arrivals for w in watchers for s in sequences):
        await asyncio.sleep(0.05)


# --- 1. delivery latency ------------------------------------------------------------------------------------
async def open_loop_reveals(stub, fx: suite.Fixture, rate: float, duration_s: float) -> tuple[dict, int, float]:
    """Reveals started every 1/rate s whatever the previous ones do: {log sequence: response arrival time},
    the failures, and the worst lag of a start behind its schedule (s)."""
    responses: dict[int, float] = {}
    failures = 0
    metadata = suite.md(fx.token)

    async def one(i: int) -> None:
        nonlocal failures
        try:
            response = await stub.RevealLogonData(depot_pb2.RevealLogonDataRequest(
                name=fx.entries[i % len(fx.entries)], reason="benchmark"), metadata=metadata, timeout=10)
        except grpc.RpcError:
            failures += 1
            return
        responses[int(response.log_event.rsplit("/", 1)[-1])] = time.perf_counter()

    tasks, lag, start = [], 0.0, time.perf_counter()
    for i in range(int(rate * duration_s)):
        due = start + i / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        lag = max(lag, time.perf_counter() - due)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return responses, failures, lag


@dataclass
class Delivery:
    watcher: str
    expected: int
    missed: int
    duplicated: int
    latencies_s: list[float] = field(default_factory=list)  # in sequence order


async def delivery_latency(ours: suite.OurSuite, fx: suite.Fixture) -> tuple[list[Delivery], dict]:
    async with grpc.aio.insecure_channel(ours.address("depot")) as depot, \
            grpc.aio.insecure_channel(ours.address("depot")) as watch_depot, \
            grpc.aio.insecure_channel(ours.address("gateway")) as watch_gateway:
        hook = await HookReceiver().start()
        hook_name, hook_admin = await register_hook(depot, ours, fx, hook.url)
        watchers = {"depot WatchEvents (direct)": await depot_watcher(watch_depot, fx).open(),
                    "gateway WatchEvents (merged)": await gateway_watcher(watch_gateway, fx).open(),
                    "webhook (POST received)": hook}
        stub = depot_pb2_grpc.LogonDepotServiceStub(depot)
        await open_loop_reveals(stub, fx, RATE, LATENCY_WARMUP_S)
        for w in watchers.values():
            w.duplicates = 0  # count repeats of the measured window only
        loadavg = os.getloadavg()[0]
        responses, failures, lag = await open_loop_reveals(stub, fx, RATE, LATENCY_S)
        await wait_delivered(list(watchers.values()), responses)
        out = []
        for name, w in watchers.items():
            got = sorted(s for s in responses if s in w.arrivals)
            out.append(Delivery(name, len(responses), len(responses) - len(got), w.duplicates,
                                [w.arrivals[s] - responses[s] for s in got]))
            await w.close()
        # the CPU runs below measure reveals without a webhook
        await stub.DeleteWebhook(depot_pb2.DeleteWebhookRequest(name=hook_name), metadata=suite.md(hook_admin))
    return out, {"failures": failures, "lag_s": lag, "loadavg": loadavg, "sent": int(RATE * LATENCY_S)}


# --- 2. CPU per reveal with watchers --------------------------------------------------------------------------
async def cpu_with_watchers(ours: suite.OurSuite, fx: suite.Fixture, clients: int, watchers: int,
                            round_no: int) -> tuple[load.LoadResult, int, int]:
    """One closed-loop reveal run with `watchers` depot watchers open; the result, and the events the watchers
    missed or got twice (summed over them)."""
    issued = 0  # reveals answered, warm-up included: every one must reach every watcher
    async with grpc.aio.insecure_channel(ours.address("depot")) as channel, \
            grpc.aio.insecure_channel(ours.address("depot")) as watch_channel:
        open_ = [await depot_watcher(watch_channel, fx).open() for _ in range(watchers)]
        reveal = Bench.reveal_operation(depot_pb2_grpc.LogonDepotServiceStub(channel), fx)

        async def counted(w, i):
            nonlocal issued
            await reveal(w, i)
            issued += 1

        result = await load.closed_loop(counted, scenario="reveal", side=f"{watchers} watchers r{round_no}",
                                        clients=clients, duration_s=CPU_S, warmup_s=CPU_WARMUP_S,
                                        processes=ours.pids("depot", "authz", "connections", "gateway"),
                                        touched=("depot", "authz"))
        deadline = time.perf_counter() + GRACE_S
        while time.perf_counter() < deadline and any(len(w.arrivals) < issued for w in open_):
            await asyncio.sleep(0.05)
        missed = sum(max(0, issued - len(w.arrivals)) for w in open_)
        duplicated = sum(w.duplicates for w in open_)
        for w in open_:
            await w.close()
    log(f"reveal c={clients:<3} watchers={watchers:<3} {result.throughput_rps:6.0f} rps  CPU "
        f"{result.cpu_us_per_request:6.0f} µs/reveal (depot {result.cpu_us_by_process['depot']:.0f}, authz "
        f"{result.cpu_us_by_process['authz']:.0f})  errors {result.errors}  missed {missed}  dup {duplicated}")
    return result, missed, duplicated


# --- report ----------------------------------------------------------------------------------------------------
def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1e3:.1f}"


def render(deliveries: list[Delivery], info: dict, cpu: dict, meta: dict) -> str:
    lines = [f"# Event feed: delivery latency and CPU per reveal ({meta['started']})", "",
             f"`python -m bench.events`; commit {meta['git']}; {os.cpu_count()} cores; load 1m "
             f"{meta['loadavg_start']:.1f} at start; total {meta['total_s']:.0f} s.", "",
             f"## 1. Reveal committed -> event at the watcher ({RATE:.0f} reveals/s open-loop, {LATENCY_S:.0f} s "
             f"after {LATENCY_WARMUP_S:.0f} s warm-up)", "",
             "Latency = the event's arrival at the watcher - the reveal response's arrival (the commit came before "
             "the response), both in the generator process.", "",
             "| watcher | reveals | missed | duplicated | p50 ms | p99 ms | max ms | min ms | > 50 ms "
             "| last reveal ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for d in deliveries:
        s = stats.summarize(d.latencies_s)
        late = sum(1 for x in d.latencies_s if x > 0.05)
        lines.append(f"| {d.watcher} | {d.expected} | {d.missed} | {d.duplicated} | {ms(s.p50_s)} | {ms(s.p99_s)} | "
                     f"{ms(s.max_s)} | {ms(min(d.latencies_s, default=math.nan))} | {late} | "
                     f"{ms(d.latencies_s[-1] if d.latencies_s else math.nan)} |")
    lines += ["", f"{info['sent']} reveals sent, {info['failures']} failed; worst start lag behind the schedule "
                  f"{info['lag_s'] * 1e3:.1f} ms; load 1m {info['loadavg']:.1f}. \"last reveal\": the window's last "
                  "event, which no later commit can wake a watcher for (the feed polls every 0.25 s).", "",
              f"## 2. Depot + authz CPU per reveal with watchers on the depot feed (closed loop, {CPU_S:.0f} s after "
              f"{CPU_WARMUP_S:.0f} s warm-up, median of {ROUNDS} interleaved rounds)", "",
              "| clients | watchers | reveals/s | depot µs | authz µs | depot+authz µs/reveal | with / without "
              f"(≤ {LIMIT:.2f}) | per round | extra µs/reveal per watcher | errors | missed | duplicated |",
              "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for c in CLIENTS:
        base = [r for r, _, _ in cpu[(c, 0)]]
        for n in WATCHERS:
            runs = [r for r, _, _ in cpu[(c, n)]]
            med = lambda f: statistics.median(map(f, runs))  # noqa: E731
            total = med(lambda r: r.cpu_us_per_request)
            ratios = [r.cpu_us_per_request / b.cpu_us_per_request for r, b in zip(runs, base)]
            ratio = statistics.median(ratios)
            verdict = "" if n == 0 else (" PASS" if ratio <= LIMIT else " FAIL")
            extra = "-" if n == 0 else f"{(total - statistics.median(b.cpu_us_per_request for b in base)) / n:.0f}"
            lines.append(
                f"| {c} | {n} | {med(lambda r: r.throughput_rps):.0f} | "
                f"{med(lambda r: r.cpu_us_by_process['depot']):.0f} | {med(lambda r: r.cpu_us_by_process['authz']):.0f} | {total:.0f} | {ratio:.3f}{verdict} | "
                f"{', '.join(f'{x:.3f}' for x in ratios)} | {extra} | {sum(r.errors for r in runs)} | "
                f"{sum(m for _, m, _ in cpu[(c, n)])} | {sum(d for _, _, d in cpu[(c, n)])} |")
    loads = [r.loadavg_1m for runs in cpu.values() for r, _, _ in runs]
    lines += ["", f"Load 1m during the CPU runs: {min(loads):.1f}–{max(loads):.1f}. The log is the outbox: the "
                  "0-watcher runs already append the reveal's event in its transaction and wake the (absent) "
                  "watchers; the ratio is what open feeds add. Missed/duplicated count every reveal of the run "
                  "(warm-up included) at every watcher."]
    return "\n".join(lines) + "\n"


async def main_async() -> str:
    t0 = time.perf_counter()
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    loadavg_start = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="rs-bench-events-"))
    # the watchers are one user's: let it hold them all (and the latency run's) beside the default limit of 8
    os.environ.setdefault("RS_EVENTS_MAX_WATCHES_PER_USER", str(max(WATCHERS) + 4))
    ours = suite.OurSuite(workdir / "suite")
    try:
        log(f"work dir {workdir}; starting the suite ...")
        ours.start()
        fx = await ours.setup(N_SECRETS)
        log(f"setup: customer {fx.customer}, {len(fx.entries)} entries; delivery latency at {RATE:.0f}/s ...")
        deliveries, info = await delivery_latency(ours, fx)
        for d in deliveries:
            s = stats.summarize(d.latencies_s)
            log(f"{d.watcher}: p50 {ms(s.p50_s)} ms p99 {ms(s.p99_s)} ms max {ms(s.max_s)} ms; missed {d.missed}, "
                f"duplicated {d.duplicated} of {d.expected}")
        cpu: dict[tuple[int, int], list] = {(c, n): [] for c in CLIENTS for n in WATCHERS}
        for r in range(1, ROUNDS + 1):
            for c in CLIENTS:
                for n in (WATCHERS if r % 2 else WATCHERS[::-1]):  # alternate the order: drift weighs on all
                    cpu[(c, n)].append(await cpu_with_watchers(ours, fx, c, n, r))
    finally:
        ours.stop()
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(workdir, ignore_errors=True)
    return render(deliveries, info, cpu, {"started": started, "git": git_revision(), "loadavg_start": loadavg_start,
                                          "total_s": time.perf_counter() - t0})


def main() -> None:
    md = asyncio.run(main_async())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "events.md").write_text(md)
    print()
    print(md)
    print(f"written: {RESULTS / 'events.md'}")


if __name__ == "__main__":
    main()
