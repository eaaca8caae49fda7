"""The README's walk-throughs, run as a user runs them: the shell blocks of a section marked
<!-- readme-test: name --> ... <!-- /readme-test -->, in a folder whose var/ is the running suite's."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def readme_script(name: str) -> str:
    """The shell blocks of the README section marked <!-- readme-test: name --> ... <!-- /readme-test -->."""
    text = README.read_text()
    section = re.search(rf"<!-- readme-test: {name} -->(.*?)<!-- /readme-test -->", text, re.S)
    assert section, f"README has no readme-test section {name!r}"
    blocks = re.findall(r"```sh\n(.*?)```", section.group(1), re.S)
    assert blocks, f"README section {name!r} has no sh blocks"
    return "\n".join(blocks)


def run_readme(e2e, name: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a README section as a user would in the project folder after `make run`: `var/` is the suite's."""
    work = tmp_path / name
    work.mkdir()
    (work / "var").symlink_to(e2e.var)
    script = readme_script(name)
    for service in ("gateway", "authz", "depot", "connections"):
        default = {"gateway": 50051, "authz": 50052, "depot": 50053, "connections": 50054}[service]
        script = script.replace(f"127.0.0.1:{default}", e2e.supervisor.address(service))
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env["RSCTL_CONFIG_DIR"] = str(work / "rsctl-config")
    env["RSCTL_ADDRESS"] = e2e.gateway
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, f"README {name} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    return result
