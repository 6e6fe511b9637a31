"""Real `logdist` processes for end-to-end tests: started as a user would, stopped by PID."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOGDIST = str(Path(sys.executable).parent / "logdist")
LISTENING = re.compile(r"event=listening daemon=\S+ url=(\S+)")


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def request(
    method: str, url: str, body: Any = None, timeout: float = 5.0, token: str | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def get(url: str, token: str | None = None) -> Any:
    status, body = request("GET", url, token=token)
    assert status == 200, (url, status, body)
    return body


def post(url: str, body: Any = None) -> Any:
    status, reply = request("POST", url, body)
    assert 200 <= status < 300, (url, status, reply)
    return reply


def clean_env() -> dict[str, str]:
    """This process's environment without the client settings a developer may have exported."""
    return {k: v for k, v in os.environ.items() if k not in ("LOGDIST_URL", "LOGDIST_TOKEN")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Proc:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes]
    url: str = ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def running(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        if self.running():
            os.kill(self.pid, signum)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM by PID and wait for the exit code."""
        self.signal(signal.SIGTERM)
        return self.popen.wait(timeout)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(10)


class Procs:
    """Every process a test starts; whatever is still running at the end is killed."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.all: list[Proc] = []

    def start(self, name: str, *args: str, listening: bool = True, timeout: float = 20.0) -> Proc:
        """Start `logdist ARGS`; with `listening`, wait for the address it logs."""
        return self.spawn(name, [LOGDIST, *args], LISTENING if listening else None, timeout)

    def spawn(
        self, name: str, argv: list[str], ready: re.Pattern[str] | None, timeout: float = 20.0
    ) -> Proc:
        """Start any program; with `ready`, wait for its output to match (group 1: its URL)."""
        log = self.workdir / f"{name}.{len(self.all)}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        proc = Proc(name, argv, log, popen)
        self.all.append(proc)
        if ready is not None:

            def bound() -> str | None:
                if not proc.running():
                    raise AssertionError(f"{name} exited {popen.returncode}:\n{proc.output()}")
                match = ready.search(proc.output())
                return match.group(1) if match else None

            proc.url = wait_for(bound, timeout, f"{name} to listen")
        return proc

    def fleets(self, size: int, rate: float, distributor: str, *names: str) -> dict[str, Proc]:
        """One `logdist emitter start --fleet SIZE` process a name, sending to `distributor`."""
        return {
            name: self.start(
                name,
                "emitter",
                "start",
                "--fleet",
                str(size),
                "--id",
                name,
                "--rate",
                str(rate),
                "--distributor",
                distributor,
                "--track-ids",  # the tests compare what was acknowledged with what arrived
                "1000",
            )
            for name in names
        }

    def run(
        self, *args: str, timeout: float = 30.0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a `logdist` command to completion (`env` adds to the environment)."""
        return subprocess.run(
            [LOGDIST, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            env={**clean_env(), **(env or {})},
        )

    def cleanup(self) -> None:
        for proc in self.all:
            if proc.running():
                proc.kill()
