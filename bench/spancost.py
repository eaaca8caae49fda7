"""What one span costs this process with the suite's tracing on (`services.kit.tracing`, OTLP/gRPC to a real receiver):
the SDK's creation and end on the caller's thread plus the batch exporter's encoding and sending on its own,
in CPU µs per span. It bounds what tracing can add to a call: spans per call x this.

Run: python -m bench.spancost <OTLP port> (prints one JSON object). A served call with one statement span inside
is the unit, as on the suite's hot paths; the receiver must count what it got, so dropped spans do not flatter it."""
from __future__ import annotations

import asyncio
import json
import os
import resource
import sys

CALLS = 20_000
WARMUP = 2_000
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
STATEMENT = "SELECT entries.id, entries.customer, entries.system FROM entries WHERE entries.id = ?"


class _Context:
    """The parts of a servicer context a served span reads."""

    def invocation_metadata(self):
        return (("authorization", "Bearer not-a-token"), ("traceparent", TRACEPARENT))

    def code(self):
        return None


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread: the exporter's too
    return usage.ru_utime + usage.ru_stime


async def _measure(tracing) -> float:
    async def behavior(_request, _context):
        with tracing.leaf("SELECT", {"db.system": "sqlite", "db.statement": STATEMENT}):
            return None
    served = tracing.served("/remotesupport.depot.v1.LogonDepotService/RevealLogonData", behavior)
    context = _Context()
    for _ in range(WARMUP):
        await served(None, context)
    tracing._provider.force_flush()  # noqa: SLF001 - the bench's own process
    start = _cpu()
    for i in range(CALLS):
        await served(None, context)
        if i % 100 == 0:
            await asyncio.sleep(0.0005)  # the exporter keeps up, as between a service's calls
    tracing._provider.force_flush()  # noqa: SLF001
    return _cpu() - start


def main() -> None:
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{int(sys.argv[1])}"
    from services.kit import tracing
    assert tracing.configure("bench")
    seconds = asyncio.run(_measure(tracing))
    tracing.shutdown()
    print(json.dumps({"spans": 2 * CALLS, "warmup_spans": 2 * WARMUP, "cpu_s": seconds}))


if __name__ == "__main__":
    main()
