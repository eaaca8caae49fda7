"""Where the time goes: py-spy samples a server process while the load generator drives one scenario."""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

from bench import load, stats


def py_spy() -> str:
    exe = Path(sys.executable).with_name("py-spy")
    found = str(exe) if exe.exists() else shutil.which("py-spy")
    if not found:
        raise RuntimeError("py-spy is not installed (it is in the bench extra)")
    return found


async def during(operation, clients: int, duration: float, targets: dict[str, int], out_dir: Path,
                 rate: int = 100) -> dict[str, dict]:
    """Run `operation` from `clients` workers while py-spy records each target process; top frames per target."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spies = {}
    for name, pid in targets.items():
        path = out_dir / (name.replace(" ", "_") + ".txt")
        spies[name] = (path, subprocess.Popen(
            [py_spy(), "record", "--pid", str(pid), "--duration", str(int(duration)), "--rate", str(rate),
             "--format", "raw", "--threads", "--output", str(path)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    await load.closed_loop(operation, scenario="profile", side="ours", clients=clients, duration_s=duration + 1.5,
                           warmup_s=0.5, processes=targets)
    out = {}
    for name, (path, spy) in spies.items():
        try:
            output, _ = await asyncio.to_thread(spy.communicate, timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            output = b"timed out"
        if spy.returncode != 0 or not path.exists():
            out[name] = {"error": output.decode(errors="replace")[-400:]}
            continue
        with open(path) as handle:
            out[name] = stats.top_frames(stats.parse_collapsed(handle), limit=15)
        out[name]["file"] = str(path.relative_to(path.parents[1]))  # inside the run's work dir (BENCH_KEEP=1 keeps it)
    return out
