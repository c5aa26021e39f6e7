"""The dependency locks: every install takes them, and CI refuses locks that pyproject outgrew."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

LOCKS = ("requirements.txt", "requirements-dev.txt")


def locks_copy(tmp_path: Path) -> Path:
    """The lock tool with pyproject.toml and the locks, in a folder of their own."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "locks", tmp_path / ".ci" / "locks")
    for name in ("pyproject.toml", *LOCKS):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def check(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(folder / ".ci" / "locks"), "check"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_committed_locks_match_pyproject(tmp_path: Path) -> None:
    done = check(locks_copy(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "match pyproject.toml" in done.stdout


def test_a_stale_lock_fails_and_says_how_to_refresh_it(tmp_path: Path) -> None:
    folder = locks_copy(tmp_path)
    pyproject = folder / "pyproject.toml"
    text = pyproject.read_text()
    assert '"orjson>=3.9",' in text
    pyproject.write_text(text.replace('"orjson>=3.9",', '"orjson>=3.9",\n    "attrs>=23",'))
    done = check(folder)
    assert done.returncode == 1
    assert "requirements.txt and requirements-dev.txt do not match pyproject.toml" in done.stderr
    assert ".ci/locks refresh" in done.stderr and ".ci/locks upgrade" in done.stderr


def test_only_dependency_changes_make_a_lock_stale(tmp_path: Path) -> None:
    folder = locks_copy(tmp_path)
    pyproject = folder / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("timeout = 60", "timeout = 61"))
    assert check(folder).returncode == 0


def test_a_lock_is_pinned_with_hashes_for_every_requirement() -> None:
    for name in LOCKS:
        text = (ROOT / name).read_text()
        entries = [line for line in text.splitlines() if line and line[0].isalnum()]
        assert len(entries) > 10
        for entry in entries:
            assert "==" in entry, f"{name}: {entry} is not pinned"
        blocks = text.split("\n\n")[0]
        assert blocks.count("--hash=sha256:") >= len(entries)


def test_the_dev_lock_holds_the_application_at_the_same_versions() -> None:
    def pins(name: str) -> dict[str, str]:
        found = {}
        for line in (ROOT / name).read_text().splitlines():
            if line and line[0].isalnum() and "==" in line:
                package, version = line.split(" ")[0].split("==")
                found[package] = version
        return found

    app, dev = pins("requirements.txt"), pins("requirements-dev.txt")
    assert {"aiohttp", "redis", "websockets", "orjson", "setuptools"} <= app.keys()
    assert {package: dev.get(package) for package in app} == app


def test_every_install_takes_the_locks() -> None:
    readme = (ROOT / "README.md").read_text()
    run = (ROOT / ".ci" / "run").read_text()
    test_command = next(line for line in readme.splitlines() if line.endswith(".venv/bin/pytest"))
    assert "-r requirements-dev.txt" in test_command
    assert test_command in run.splitlines(), ".ci/run calls exactly the README's test command"
    assert "python3 .ci/locks check" in run
    serve = next(line for line in readme.splitlines() if line.endswith("feed serve"))
    assert "-r requirements.txt" in serve and "--no-deps" in serve
