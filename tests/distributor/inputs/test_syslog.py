"""Syslog in: messages gathered into packets and owned; a full queue stops TCP reading and
counts what UDP brings; util-linux `logger` as the client (the e2e tests add rsyslog)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import socket
import threading
from typing import Any

import pytest

from logdist.config import SyslogConfig
from logdist.distributor.inputs.syslog import SyslogListener
from logdist.distributor.web.keys import PARSE, SYSLOG
from tests.distributor.conftest import Client, MakeDistributor, service
from tests.support.fakes import eventually, start_analyzer

# util-linux's logger and parse processes: real processes.
pytestmark = pytest.mark.e2e

LOOPBACK = SyslogConfig(tcp=0, udp=0)


@pytest.fixture(params=[0, 1], ids=["in-process", "parse-process"])
def workers(request: pytest.FixtureRequest) -> int:
    """TCP streams read in the distributor, or in a parse process."""
    n: int = request.param
    return n


LOGGER = shutil.which("logger")  # util-linux's; scripts/test installs it


def listener(client: Client) -> SyslogListener:
    assert client.app is not None
    syslog: SyslogListener = client.app[SYSLOG]
    return syslog


async def logger(port: str, *args: str) -> None:
    assert LOGGER is not None
    proc = await asyncio.create_subprocess_exec(LOGGER, "-n", "127.0.0.1", "-P", port, *args)
    assert await proc.wait() == 0


async def test_logger_over_tcp_and_udp_in_both_formats(
    aiohttp_server: Any, make_distributor: MakeDistributor, workers: int
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1)}, syslog=LOOPBACK, parse_workers=workers)
    s = listener(client)
    assert s.tcp_port and s.udp_port
    tcp, udp = str(s.tcp_port), str(s.udp_port)
    sd = ("--sd-id", "order@32473", "--sd-param", 'id="o-17"')
    await logger(tcp, "--tcp", "--rfc5424", "--octet-count", "-t", "pay", "-p", "local0.err",
                 "--msgid", "CHARGE", *sd, "octet-counted 5424")  # fmt: skip
    await logger(tcp, "--tcp", "--rfc5424", "-t", "pay", "-p", "user.warning", "newline 5424")
    await logger(tcp, "--tcp", "--rfc3164", "-t", "cron", "-p", "cron.info", "newline 3164")
    await logger(tcp, "--tcp", "--rfc3164", "--octet-count", "-t", "cron", "-p", "cron.debug",
                 "octet-counted 3164")  # fmt: skip
    await logger(udp, "--udp", "--rfc5424", "-t", "dns", "-p", "daemon.crit", "udp 5424")
    await logger(udp, "--udp", "--rfc3164", "-t", "dns", "-p", "daemon.notice", "udp 3164")
    await eventually(lambda: fake.messages == 6, what="6 messages")
    got = {m["message"]: m for p in fake.received for m in p["messages"]}
    host = socket.gethostname()
    assert {k: (m["service"], m["level"], m["syslog"]) for k, m in got.items()} == {
        "octet-counted 5424": ("pay", "ERROR", "rfc5424"),
        "newline 5424": ("pay", "WARN", "rfc5424"),
        "newline 3164": ("cron", "INFO", "rfc3164"),
        "octet-counted 3164": ("cron", "DEBUG", "rfc3164"),
        "udp 5424": ("dns", "FATAL", "rfc5424"),
        "udp 3164": ("dns", "INFO", "rfc3164"),
    }
    charge = got["octet-counted 5424"]
    assert charge["facility"] == "local0" and charge["msgid"] == "CHARGE"
    assert charge["structured_data"]["order@32473"] == {"id": "o-17"}
    assert all(m["host"] == host.split(".")[0] or m["host"] == host for m in got.values())
    assert all(p["emitter"] == "syslog" for p in fake.received)
    assert service(client).counters.input("syslog").messages == 6
    metrics = await (await client.get("/metrics")).text()
    assert 'logdist_received_messages_total{input="syslog"} 6.0' in metrics


async def test_messages_of_a_connection_travel_together(
    aiohttp_server: Any, make_distributor: MakeDistributor, workers: int
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1)}, syslog=LOOPBACK, parse_workers=workers)
    _, writer = await asyncio.open_connection("127.0.0.1", listener(client).tcp_port)
    writer.write(b"".join(b"<14>1 - h app - - - m%d\n" % i for i in range(1200)))
    await writer.drain()
    await eventually(lambda: fake.messages == 1200, what="1200 messages")
    # 500 a packet at most; the rest within GATHER_SECONDS as one more.
    assert sorted(len(p["messages"]) for p in fake.received) == [200, 500, 500]
    order = [m["message"] for p in fake.received for m in p["messages"]]
    assert order == [f"m{i}" for i in range(1200)]
    # Ids carry a token of this start: a restarted distributor's cannot repeat an earlier
    # run's, which an analyzer would drop as duplicates.
    assert re.fullmatch(r"syslog-[0-9a-f]{12}", listener(client).prefix)
    assert all(p["packetId"].startswith(listener(client).prefix + "-") for p in fake.received)
    assert len({p["packetId"] for p in fake.received}) == 3
    writer.close()


def blast(port: int, total: int, sent: list[int], done: threading.Event) -> None:
    """Write `total` messages on one connection, counting the bytes the kernel took."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
        line = b"<14>1 - h app - - - %s\n" % (b"x" * 80)
        chunk = line * 1000
        try:
            for _ in range(total // 1000):
                sock.sendall(chunk)
                sent[0] += len(chunk)
        except OSError:  # the test failed and the distributor stopped
            return
    done.set()


async def test_a_full_queue_stops_tcp_reading_and_loses_nothing(
    aiohttp_server: Any, make_distributor: MakeDistributor, workers: int
) -> None:
    fake, url = await start_analyzer(aiohttp_server, status=503, healthy=False)
    client = await make_distributor(
        {"a1": (url, 1)},
        syslog=LOOPBACK,
        parse_workers=workers,
        queue_capacity=2,
        queue_wait=0,
    )
    s = listener(client)
    total = 300_000  # 30 MB: more than loopback's socket buffers hold
    sent, done = [0], threading.Event()
    thread = threading.Thread(target=blast, args=(s.tcp_port, total, sent, done), daemon=True)
    thread.start()
    await eventually(lambda: bool(s.waiting), 10, "a connection waiting for room")
    await asyncio.sleep(1.0)
    # The sender is blocked in TCP: the distributor took a queue's worth, holds one read's
    # worth, and reads no more.
    assert not done.is_set()
    owned = service(client).counters.input("syslog").messages
    held = sum(p.messages for c in s.waiting for p in c.held)
    assert owned + held < total // 10
    assert service(client).counters.input("syslog").rejected == {}
    fake.status, fake.healthy = 200, True
    await eventually(lambda: fake.messages == total, 60, "every message delivered")
    assert done.is_set()
    thread.join(5)


async def test_udp_while_full_is_dropped_counted_and_logged(
    aiohttp_server: Any, make_distributor: MakeDistributor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="logdist.distributor")
    fake, url = await start_analyzer(aiohttp_server, status=503, healthy=False)
    client = await make_distributor(
        {"a1": (url, 1)}, syslog=LOOPBACK, queue_capacity=1, queue_wait=0
    )
    s = listener(client)
    d = service(client)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for burst in range(3):
            for i in range(100):
                sock.sendto(b"<14>1 - h app - - - b%d-%d" % (burst, i), ("127.0.0.1", s.udp_port))
            await asyncio.sleep(0.4)  # each burst its own packet
    counts = d.counters.input("syslog")

    def dropped() -> int:
        return counts.rejected["backpressure"]

    # Every message either taken or dropped; the first packet (the first burst, or its start
    # when a slow machine gathered it in two) fit, and the two later bursts did not.
    await eventually(lambda: dropped() + counts.messages == 300, 5, "every message counted")
    assert dropped() >= 200 and counts.messages >= 1

    # Said once a second at most, with how many since the last time.
    def reported() -> int:
        return sum(map(int, re.findall(r"syslog_udp_dropped messages=(\d+)", caplog.text)))

    await eventually(lambda: reported() == dropped(), 3, "the drops logged")
    metrics = await (await client.get("/metrics")).text()
    assert (
        f'logdist_rejected_total{{input="syslog",reason="backpressure"}} {dropped()}.0' in metrics
    )
    fake.status, fake.healthy = 200, True
    taken = counts.messages
    await eventually(lambda: fake.messages == taken, 10, "what fit delivered")


async def test_an_oversize_message_is_skipped_and_counted(
    aiohttp_server: Any, make_distributor: MakeDistributor, workers: int
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor(
        {"a1": (url, 1)}, syslog=SyslogConfig(tcp=0, max_message_bytes=1000), parse_workers=workers
    )
    _, writer = await asyncio.open_connection("127.0.0.1", listener(client).tcp_port)
    big = b"<14>1 - h app - - - " + b"x" * 5000
    writer.write(b"5 small%d %s<14>after\n" % (len(big), big))
    await writer.drain()
    await eventually(lambda: fake.messages == 2, what="the two that fit")
    assert [m["message"] for p in fake.received for m in p["messages"]] == ["small", "after"]
    rejected = service(client).counters.input("syslog").rejected
    assert rejected == {"payload_too_large": 1}
    writer.close()


async def test_a_dead_parse_process_is_replaced_and_its_connection_closed(
    aiohttp_server: Any, make_distributor: MakeDistributor, caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1)}, syslog=LOOPBACK, parse_workers=1)
    assert client.app is not None
    s = listener(client)
    reader, writer = await asyncio.open_connection("127.0.0.1", s.tcp_port)
    writer.write(b"<14>1 - h app - - - before\n")
    await eventually(lambda: fake.messages == 1, what="the first message")
    pool = client.app[PARSE].pools[0]
    assert pool is not None
    for pid in list(pool._processes):  # the parse process dies
        os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0.5)
    writer.write(b"<14>1 - h app - - - lost with it\n")
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the distributor closed it
    assert "event=syslog_parser_failed" in caplog.text
    # A new connection is read by a new parse process.
    _, again = await asyncio.open_connection("127.0.0.1", s.tcp_port)
    again.write(b"<14>1 - h app - - - after\n")
    await eventually(lambda: fake.messages == 2, 10, "a message through a new process")
    assert [m["message"] for p in fake.received for m in p["messages"]] == ["before", "after"]
    writer.close()
    again.close()
