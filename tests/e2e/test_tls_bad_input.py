"""Bad input at a TLS door, against a real distributor with mutual TLS on its HTTP port and
RFC 5425 on its syslog port: random bytes, ClientHellos cut short, stalled handshakes, plain
HTTP, certificates from a stranger or expired. Each is refused and logged once a reason;
the daemon stays up, small, and serves a good client at once throughout."""

from __future__ import annotations

import contextlib
import datetime
import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.procs import Proc, Procs, free_port, wait_for
from tests.support.tls import Certs, Pair, https_get

pytestmark = pytest.mark.e2e


class Door:
    def __init__(self, proc: Proc, certs: Certs, person: Pair, syslog: int) -> None:
        self.proc, self.certs, self.person, self.syslog = proc, certs, person, syslog

    def healthy(self) -> bool:
        """A good client is answered at once."""
        started = time.monotonic()
        ok = https_get(f"{self.proc.url}/health", self.certs.context(self.person))
        return bool(ok["status"] == "ok" and time.monotonic() - started < 2)


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    folder = tmp_path_factory.mktemp("tls-bad")
    procs = Procs(folder)
    certs = Certs(folder / "certs")
    server, person = certs.issue("server"), certs.issue("person")
    syslog = free_port()
    try:
        proc = procs.start(
            "distributor", "distributor", "serve", "--port", "0", *server.flags("tls"),
            "--tls-client-ca", certs.ca, "--syslog-tls", str(syslog),
        )  # fmt: skip
        yield Door(proc, certs, person, syslog)
        assert proc.running(), f"the distributor died under bad TLS input:\n{proc.output()}"
    finally:
        procs.cleanup()


def client_hello() -> bytes:
    """The first flight of a real TLS client (what a handshake starts with)."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


HELLO = client_hello()


def send(port: int, data: bytes, linger: float = 0.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        if linger:
            time.sleep(linger)
        s.shutdown(socket.SHUT_WR)
        try:
            return s.recv(4096)
        except OSError:
            return b""


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.one_of(
        st.binary(min_size=1, max_size=3000),
        st.integers(1, len(HELLO) - 1).map(lambda n: HELLO[:n]),  # a ClientHello cut short
        st.binary(min_size=1, max_size=200).map(lambda junk: HELLO[:5] + junk),
    ),
    which=st.sampled_from(["http", "syslog"]),
)
def test_random_bytes_and_cut_handshakes_are_refused(door: Door, data: bytes, which: str) -> None:
    port = door.proc.port if which == "http" else door.syslog
    answer = send(port, data)
    # Nothing but a TLS alert, or the plain-HTTP 400, comes back; never a crash.
    assert answer == b"" or answer[:1] == b"\x15" or answer.startswith(b"HTTP/1.1 400 ")


def test_stalled_handshakes_hold_nobody_up(door: Door) -> None:
    stalled = []
    for i in range(200):
        s = socket.create_connection(("127.0.0.1", door.proc.port if i % 2 else door.syslog))
        s.sendall(HELLO[: 1 + i % 40])  # some say nothing more, some half a hello
        stalled.append(s)
    try:
        assert door.healthy()
    finally:
        for s in stalled:
            s.close()
    assert door.healthy()


def test_strangers_and_expired_certificates_are_refused_in_the_handshake(door: Door) -> None:
    stranger = trustme.CA().issue_cert("x", common_name="stranger")
    expired = door.certs.authority.issue_cert(
        "x",
        common_name="expired",
        not_before=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30),
        not_after=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1),
    )
    for cert in (stranger, expired):
        ctx = door.certs.context()
        cert.configure_cert(ctx)
        assert answered(door.proc.port, ctx) == b""
    assert answered(door.proc.port, door.certs.context(door.person)).startswith(b"HTTP/1.1 200")
    assert door.healthy()


def answered(port: int, ctx: ssl.SSLContext) -> bytes:
    """What a GET over TLS with `ctx` gets back (nothing when the handshake is refused)."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            return tls.recv(100)
    except (ssl.SSLError, OSError):
        return b""


def test_plain_http_is_told_to_use_https(door: Door) -> None:
    answer = send(door.proc.port, b"POST /log-packet HTTP/1.1\r\nHost: x\r\n\r\n{}")
    assert answer.startswith(b"HTTP/1.1 400 ") and b"use https://" in answer


def test_each_reason_was_logged_once_and_the_daemon_stayed_small(door: Door) -> None:
    log = door.proc.output()
    reasons = re.findall(r"event=tls_refused daemon=distributor reason=(\w+)", log)
    assert len(reasons) == len(set(reasons)), reasons
    assert {"not_tls", "client_certificate_refused"} <= set(reasons), reasons
    assert "Traceback" not in log
    rss = int(
        next(
            line.split()[1]
            for line in Path(f"/proc/{door.proc.pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
    )
    assert rss < 300 * 1024, f"{rss} KiB"
    wait_for(door.healthy, 5, "a good client served")
