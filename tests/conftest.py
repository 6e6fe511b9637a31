"""The markers that keep `pytest -m "not e2e and not chaos"` process-free, and the fixtures
of every suite that starts real processes (e2e, chaos)."""

from __future__ import annotations

import multiprocessing.util
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import Procs

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e is e2e and everything under tests/chaos is chaos."""
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0]
        if folder in ("e2e", "chaos"):
            item.add_marker(getattr(pytest.mark, folder))


@pytest.fixture(autouse=True)
def _processes_only_when_marked(request: pytest.FixtureRequest, monkeypatch: Any) -> None:
    """A test that starts a process (a subprocess, a spawned parse process) must say so with
    the e2e or chaos marker, so that the fast subset stays process-free."""
    if any(request.node.get_closest_marker(name) for name in ("e2e", "chaos")):
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{request.node.nodeid} starts a process: mark it e2e")

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)
    monkeypatch.setattr(multiprocessing.util, "spawnv_passfds", refuse)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    owner = Procs(tmp_path)
    try:
        yield owner
    finally:
        owner.cleanup()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """Mount a tmpfs of the given size (bytes) for the test: a disk that really fills.

    Needs the right to mount (root, as CI and scripts/test on a fresh machine run): without
    it the test fails, saying why, rather than passing unrun."""
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.fail(
                f"the full-disk tests mount a tmpfs and need root: {done.stderr.strip()}",
                pytrace=False,
            )
        mounted.append(where)
        return where

    try:
        yield mount
    finally:
        for where in mounted:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)
