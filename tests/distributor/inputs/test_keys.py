"""Every input takes part in fair admission, dispatch and limits: who its packets are from.
Packets name their emitter; OTLP requests are from `otlp:SERVICE` (their resource's
service.name, or a configured attribute), records from the emitter a request names (else
`records:HOST`), syslog from `syslog:HOST`, the sending host."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from logdist.config import SyslogConfig
from logdist.distributor.web.keys import SYSLOG
from tests.distributor.conftest import Client, MakeDistributor, service
from tests.support.fakes import eventually, start_analyzer

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def export(service_name: str, text: str, host: str = "web-4") -> bytes:
    attrs = [
        KeyValue(key="service.name", value=AnyValue(string_value=service_name)),
        KeyValue(key="host.name", value=AnyValue(string_value=host)),
    ]
    record = LogRecord(body=AnyValue(string_value=text))
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=attrs), scope_logs=[ScopeLogs(log_records=[record])]
            )
        ]
    ).SerializeToString()


async def limit(client: Client, emitter: str) -> None:
    """Let `emitter` send one message now and the next in 1,000 s."""
    resp = await client.put(f"/limits/{emitter}", json={"rate": 0.001, "burst": 1})
    assert resp.status == 200, await resp.text()


async def test_otlp_requests_are_from_their_service(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1)})
    await limit(client, "otlp:checkout")
    statuses = [
        (await client.post("/v1/logs", data=export(name, f"m{i}"), headers=PROTOBUF)).status
        for i, name in enumerate(["checkout", "checkout", "billing", "billing"])
    ]
    assert statuses == [200, 429, 200, 200]  # billing is not checkout
    assert service(client).dispatcher.shares.throttled == {"otlp:checkout": 1}
    await eventually(lambda: fake.messages == 3, what="three delivered")


async def test_otlp_by_a_configured_attribute(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    _, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1)}, otlp_emitter_attribute="host.name")
    await limit(client, "otlp:web-4")
    statuses = [
        (await client.post("/v1/logs", data=export(f"s{i}", "m", host), headers=PROTOBUF)).status
        for i, host in enumerate(["web-4", "web-4", "web-5"])
    ]
    assert statuses == [200, 429, 200]


async def test_records_are_from_the_emitter_the_request_names_else_its_host(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1)})
    await limit(client, "web-1")
    await limit(client, "records:*")

    async def post(
        i: int, path: str = "/log-records", headers: dict[str, str] | None = None
    ) -> int:
        body = orjson.dumps({"log": f"r{i}"})
        ctype = {"Content-Type": "application/json"}
        return (await client.post(path, data=body, headers={**ctype, **(headers or {})})).status

    assert [
        await post(0, "/log-records?emitter=web-1"),
        await post(1, "/log-records?emitter=web-1"),
    ] == [202, 429]
    assert await post(2, headers={"X-Logdist-Emitter": "web-2"}) == 202
    assert [await post(3), await post(4)] == [202, 429]  # records:127.0.0.1
    bad = await client.post(
        "/log-records?emitter=no%20spaces", data=b"{}", headers={"Content-Type": "application/json"}
    )
    assert bad.status == 422 and "emitter id must be" in (await bad.json())["error"]
    assert dict(service(client).dispatcher.shares.throttled) == {
        "web-1": 1,
        "records:127.0.0.1": 1,
    }
    await eventually(lambda: fake.messages == 3, what="three delivered")
    assert sorted(p["emitter"] for p in fake.received) == ["records", "web-1", "web-2"]


async def test_syslog_is_from_the_sending_host_and_a_throttled_one_waits_losing_nothing(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1)}, syslog=SyslogConfig(tcp=0), parse_workers=0)
    resp = await client.put("/limits/syslog:127.0.0.1", json={"rate": 1000, "burst": 500})
    assert resp.status == 200
    assert client.app is not None
    _, writer = await asyncio.open_connection("127.0.0.1", client.app[SYSLOG].tcp_port)
    writer.write(b"".join(b"<14>1 - h app - - - m%d\n" % i for i in range(2000)))
    await writer.drain()
    await eventually(lambda: fake.messages == 2000, 20, "every message delivered")
    order = [m["message"] for p in fake.received for m in p["messages"]]
    assert order == [f"m{i}" for i in range(2000)]
    # The limit applied to the sending host, and was felt (the next test counts how often a
    # throttled host is offered again).
    throttled = service(client).dispatcher.shares.throttled
    assert set(throttled) == {"syslog:127.0.0.1"} and throttled["syslog:127.0.0.1"] >= 1
    writer.close()


async def test_a_throttled_syslog_host_is_offered_again_after_its_retry_after_not_each_route(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor(
        {"a1": (url, 1)}, syslog=SyslogConfig(tcp=0), parse_workers=0, retry_after=1
    )
    await client.put("/limits/syslog:127.0.0.1", json={"rate": 1, "burst": 1})
    assert client.app is not None
    _, writer = await asyncio.open_connection("127.0.0.1", client.app[SYSLOG].tcp_port)
    for i in range(3):  # three packets' worth, a second apart at most (one a turn)
        writer.write(b"<14>1 - h app - - - s%d\n" % i)
        await writer.drain()
        await asyncio.sleep(0.3)
    for i in range(300):  # meanwhile another emitter's packets keep routing busy
        body = {"packetId": f"o-{i}", "emitter": "other", "messages": [{}]}
        assert (await client.post("/log-packet", json=body)).status == 202
    await eventually(lambda: fake.messages == 303, 20, "everything delivered")
    assert service(client).dispatcher.shares.throttled["syslog:127.0.0.1"] <= 6
    writer.close()
