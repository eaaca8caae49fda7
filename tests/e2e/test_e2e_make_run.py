"""`make run`, the README's first command, as a user runs it: four SERVING services, the addresses, the
admin token path and the mail folder printed, a clean stop on Ctrl-C (SIGINT)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.e2e.conftest import free_ports

ROOT = Path(__file__).resolve().parents[2]


def test_make_run_serves_the_suite_and_stops_cleanly_on_ctrl_c(tmp_path):
    env = dict(os.environ, RS_VAR_DIR=str(tmp_path / "var"), RS_AUTHZ_KDF_LOG2_N="12")
    *service_ports, mail_port = free_ports(5)
    ports = dict(zip(("gateway", "authz", "depot", "connections"), service_ports))
    for service, port in ports.items():
        env[f"RS_{service.upper()}_PORT"] = str(port)
        env[f"RS_{service.upper()}_ADDR"] = f"127.0.0.1:{port}"
    env.pop("RS_SMTP_HOST", None)
    env["RS_SMTP_PORT"] = str(mail_port)  # the local mail sink, beside any other on this machine
    for key in [k for k in env if k.endswith("_DATABASE_URL")]:
        del env[key]
    process = subprocess.Popen(["make", "--no-print-directory", "run"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    deadline = time.monotonic() + 120
    try:
        for line in process.stdout:
            lines.append(line)
            if "Stop with Ctrl-C" in line or time.monotonic() > deadline:
                break
        text = "".join(lines)
        assert "Remote Support Suite is SERVING" in text, text[-3000:]
        for service, port in ports.items():
            assert f"{service}" in text and f"127.0.0.1:{port}" in text
        assert str(tmp_path / "var" / "admin.token") in text
        assert oct((tmp_path / "var" / "admin.token").stat().st_mode & 0o777) == "0o600"
        assert (tmp_path / "var" / "depot.db").exists()  # SQLite under var/
        assert f"{tmp_path / 'var' / 'mail'}/" in text and f"127.0.0.1:{mail_port}" in text
        assert (tmp_path / "var" / "mail").is_dir()
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert "stopped." in rest, rest[-3000:]
    assert "Traceback" not in text + rest
