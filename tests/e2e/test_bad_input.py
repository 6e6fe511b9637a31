"""Bad input against a real distributor: never a 500, never a crash, nothing unbounded."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.rpc.status_pb2 import Status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.procs import Procs, get, wait_for

pytestmark = pytest.mark.e2e

# (daemon, method, path): every ingest, admin and control route of the three daemons.
ROUTES = [
    ("distributor", "POST", "/log-packet"),
    ("distributor", "POST", "/log-packets"),
    ("distributor", "POST", "/log-records"),
    ("distributor", "POST", "/v1/logs"),
    ("distributor", "POST", "/registry/add"),
    ("distributor", "POST", "/analyzer/a1/weight"),
    ("distributor", "POST", "/analyzer/a1/enable"),
    ("distributor", "POST", "/analyzer/a1/disable"),
    ("distributor", "POST", "/analyzer/zz/drain"),
    ("distributor", "DELETE", "/registry/zz"),
    ("distributor", "POST", "/emitters/register"),
    ("distributor", "POST", "/emitter/e1/rate"),
    ("distributor", "POST", "/emitter/e1/pause"),
    ("distributor", "GET", "/emitter/e1/metrics"),
    ("distributor", "GET", "/logs"),
    ("distributor", "GET", "/ws/logs"),
    ("distributor", "GET", "/status"),
    ("distributor", "PUT", "/log-packet"),
    ("distributor", "POST", "/nowhere"),
    ("analyzer", "POST", "/ingest"),
    ("analyzer", "GET", "/stats"),
    ("emitter", "POST", "/rate"),
    ("emitter", "POST", "/pause"),
    ("emitter", "GET", "/sent"),
]
CONTENT_TYPES = [
    "application/json",
    "application/x-protobuf",
    "application/x-ndjson",
    "text/plain",
    "application/json; charset=latin-1",
    "multipart/form-data; boundary=x",
    "",
    "application/+json",
    "\x00bad",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=10), c, max_size=5),
    max_leaves=30,
)
bodies = st.one_of(
    st.binary(max_size=2000),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from(["messages", "packetId", "id", "url", "weight", "rps", "emitter"]),
        json_values,
        max_size=4,
    ).map(lambda v: json.dumps(v).encode()),
    st.lists(json_values, max_size=5).map(lambda v: b"\n".join(json.dumps(x).encode() for x in v)),
)


@pytest.fixture(scope="module")
def bad_procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Procs]:
    procs = Procs(tmp_path_factory.mktemp("bad"))
    try:
        analyzer = procs.start("analyzer", "analyzer", "serve", "--port", "0")
        proc = procs.start(
            "distributor",
            "distributor",
            "serve",
            "--port",
            "0",
            "--analyzer",
            f"a1={analyzer.url}/ingest",
            "--max-pending",
            "64",
            "--syslog-tcp",
            "0",
            "--syslog-udp",
            "0",
        )
        procs.start(
            "emitter",
            "emitter",
            "start",
            "--id",
            "e1",
            "--distributor",
            proc.url,
            "--rate",
            "0",
            "--port",
            "0",
        )
        yield procs
        for p in procs.all:
            assert p.running(), f"{p.name} died under bad input"
    finally:
        procs.cleanup()


@pytest.fixture(scope="module")
def daemons(bad_procs: Procs) -> dict[str, tuple[str, int]]:
    return {p.name: (p.url, p.pid) for p in bad_procs.all}


@pytest.fixture(scope="module")
def syslog_ports(bad_procs: Procs) -> tuple[int, int]:
    log = next(p for p in bad_procs.all if p.name == "distributor").output()
    match = re.search(r"event=syslog_listening host=\S+ tcp=(\d+) udp=(\d+)", log)
    assert match is not None, log
    return int(match.group(1)), int(match.group(2))


@pytest.fixture(scope="module")
def distributor(daemons: dict[str, tuple[str, int]]) -> tuple[str, int]:
    return daemons["distributor"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    route=st.sampled_from(ROUTES),
    ctype=st.sampled_from(CONTENT_TYPES),
    body=bodies,
    extra=st.dictionaries(
        st.sampled_from(["X-Junk", "Authorization", "Content-Encoding", "Accept"]),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
        max_size=2,
    ),
)
def test_no_route_answers_500_to_anything(
    daemons: dict[str, tuple[str, int]],
    route: tuple[str, str, str],
    ctype: str,
    body: bytes,
    extra: dict[str, str],
) -> None:
    url, _ = daemons[route[0]]
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = dict(extra)
    if ctype:
        headers["Content-Type"] = ctype
    try:
        conn.request(route[1], route[2], body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    except http.client.HTTPException:
        return  # the server closed a request it could not parse: refused, not crashed
    finally:
        conn.close()
    assert resp.status < 500 or resp.status == 503, (
        route,
        ctype,
        body[:100],
        resp.status,
        data[:200],
    )
    if resp.status == 400 and resp.getheader("Content-Type", "").startswith("text/plain"):
        return  # not valid HTTP at all (a NUL in a header): aiohttp's parser refuses it first
    if resp.status >= 400 and route[2] == "/v1/logs" and resp.status != 401:
        # OTLP's answer: a google.rpc.Status in the request's encoding.
        if resp.getheader("Content-Type", "").startswith("application/x-protobuf"):
            assert Status.FromString(data).message
        else:  # OTLP/JSON's Status, or (a request refused before the route) logdist's error
            reply = json.loads(data)
            assert reply.get("message") or reply.get("error")
    elif resp.status >= 400:
        reply = json.loads(data)
        assert isinstance(reply["error"], str) and reply["error"]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(stream=st.lists(st.binary(max_size=3000), max_size=4), datagram=st.binary(max_size=1500))
def test_random_bytes_on_the_syslog_sockets(
    syslog_ports: tuple[int, int], stream: list[bytes], datagram: bytes
) -> None:
    tcp, udp = syslog_ports
    with socket.create_connection(("127.0.0.1", tcp), timeout=5) as s:
        for chunk in stream:
            s.sendall(chunk)
    if datagram:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(datagram, ("127.0.0.1", udp))


def test_syslog_still_flows_after_random_bytes(
    distributor: tuple[str, int], syslog_ports: tuple[int, int]
) -> None:
    url, _ = distributor

    def syslog_in() -> int:
        return int(get(f"{url}/status")["counters"]["inputs"]["syslog"]["received_messages"])

    before = syslog_in()
    with socket.create_connection(("127.0.0.1", syslog_ports[0]), timeout=5) as s:
        message = b"<14>1 - h app - - - ok"
        s.sendall(b"\n%d %s" % (len(message), message))
    wait_for(lambda: syslog_in() > before, 10, "a well-formed message taken")


def test_bad_input_left_every_daemon_well_and_small(daemons: dict[str, tuple[str, int]]) -> None:
    for url, pid in daemons.values():
        assert get(f"{url}/health")["status"] == "ok"
        assert rss_mb(pid) < 200


def test_a_huge_declared_body_is_413_before_it_is_sent(distributor: tuple[str, int]) -> None:
    url, pid = distributor
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(
            b"POST /log-packet HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: 10000000000\r\n\r\n"
        )
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")
    assert b"exceeds the limit" in reply
    assert rss_mb(pid) < 200


def test_stalled_clients_do_not_hold_up_others(distributor: tuple[str, int]) -> None:
    url, _ = distributor
    host, port = url.removeprefix("http://").split(":")
    stalled = []
    for i in range(200):  # half of them stop inside their headers, half inside their body
        s = socket.create_connection((host, int(port)), timeout=5)
        if i % 2:
            s.sendall(b"POST /log-packet HTTP/1.1\r\nHost: localhost\r\nContent-Ty")
        else:
            s.sendall(
                b"POST /log-packet HTTP/1.1\r\nHost: localhost\r\n"
                b"Content-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"messages": ['
            )
        stalled.append(s)
    try:
        started = time.monotonic()
        for _ in range(20):
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
            conn.request(
                "POST",
                "/log-packet",
                body=b'{"messages": [{"m": 1}]}',
                headers={"Content-Type": "application/json"},
            )
            assert conn.getresponse().status == 202
            conn.close()
        print(f"20 requests beside 200 stalled clients took {time.monotonic() - started:.3f}s")
    finally:
        for s in stalled:
            s.close()
    wait_for(lambda: get(f"{url}/health"), 5, "still healthy")
