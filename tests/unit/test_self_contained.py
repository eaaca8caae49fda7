"""The repository stands alone: cloned into an empty folder, no file refers outside it (no path of a machine,
no folder beside the clone) and every relative link of its Markdown resolves inside the clone."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# A folder beside the repository, or a path that exists only on some machine (a home, a checkout, the temporary
# folder of a test or benchmark run).
OUTSIDE = re.compile(r"\.\./shared\b|(?<![\w.])/(?:work|root|home|Users)/[\w.-]|/tmp/(?:pytest-of-|rs-)")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
THIS_FILE = "tests/unit/test_self_contained.py"


def outside_references(tree: Path, files: list[str]) -> list[str]:
    """Every line (file:line: text) that names a place outside the tree, and every Markdown link that does not
    resolve inside it."""
    found = []
    for name in files:
        path = tree / name
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue  # binary data, or deleted in the working tree
        for number, line in enumerate(text.splitlines(), 1):
            if name != THIS_FILE and OUTSIDE.search(line):
                found.append(f"{name}:{number}: {line.strip()[:120]}")
            if name.endswith(".md"):
                for target in MARKDOWN_LINK.findall(line):
                    if re.match(r"[a-z][a-z0-9+.-]*:", target):
                        continue  # a URL (https:, mailto:) names no file
                    resolved = (path.parent / target).resolve()
                    if not resolved.is_relative_to(tree.resolve()) or not resolved.exists():
                        found.append(f"{name}:{number}: link {target} does not resolve inside the repository")
    return found


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> tuple[Path, list[str]]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.fail("this test needs the repository as a git checkout (git clone it)")
    target = tmp_path_factory.mktemp("alone") / "repo"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(target)], check=True)
    # what the working tree would commit: the clone's files plus tracked changes not yet committed
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.split()
    for name in files:  # the working tree's version, so the test checks what is about to be committed too
        source, copy = ROOT / name, target / name
        if source.is_file():
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, copy)
    return target, files


def test_nothing_refers_outside_the_repository(clone):
    tree, files = clone
    assert outside_references(tree, files) == []


def test_the_check_finds_what_it_looks_for(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("See [design](../../shared/DESIGN.md) and [b](b.md), [ok](a.md).\n")
    (tmp_path / "x.py").write_text('SEED = "../shared/seed/x.txt"\nPATH = "/work/main/var"\nOK = "/var/lib/rs"\n'
                                   'RUN = "/tmp/rs-bench-mq0pjwkm/profiles"\n')
    assert outside_references(tmp_path, ["docs/a.md", "x.py"]) == [
        "docs/a.md:1: See [design](../../shared/DESIGN.md) and [b](b.md), [ok](a.md).",
        "docs/a.md:1: link ../../shared/DESIGN.md does not resolve inside the repository",
        "docs/a.md:1: link b.md does not resolve inside the repository",
        'x.py:1: SEED = "../shared/seed/x.txt"',
        'x.py:2: PATH = "/work/main/var"',
        'x.py:4: RUN = "/tmp/rs-bench-mq0pjwkm/profiles"',
    ]
