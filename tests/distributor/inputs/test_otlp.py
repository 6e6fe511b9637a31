"""`POST /v1/logs`: OTLP/HTTP logs from the OpenTelemetry Python SDK's own exporter, and bodies
built with the project's generated classes, answered as the OTLP specification says."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs, SeverityNumber
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource as SdkResource

from logdist.analyzer.app import make_app as make_analyzer
from logdist.config import AnalyzerConfig
from logdist.core.delivery import delivery_from
from logdist.distributor.web.keys import PARSE
from tests.distributor.conftest import EITHER_WAY, MakeDistributor, service
from tests.support import backends
from tests.support.fakes import eventually, start_analyzer

PROTOBUF = {"Content-Type": "application/x-protobuf"}
T0 = 1_764_676_800_000_000_000  # 2025-12-02T12:00:00Z in ns


def kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def request() -> bytes:
    records = [
        LogRecord(
            time_unix_nano=T0,
            severity_number=SeverityNumber.SEVERITY_NUMBER_INFO,
            body=AnyValue(string_value="paid"),
        ),
        LogRecord(
            observed_time_unix_nano=T0 + 500_000_000,
            severity_text="Warning",
            body=AnyValue(int_value=42),
            attributes=[kv("order", "o-17")],
            trace_id=bytes.fromhex("5b8efff798038103d269b633813fc60c"),
            span_id=bytes.fromhex("eee19b7ec3c1b174"),
        ),
        LogRecord(
            time_unix_nano=T0,
            severity_number=SeverityNumber.SEVERITY_NUMBER_FATAL,
            body=AnyValue(string_value="down"),
        ),
    ]
    resource = Resource(attributes=[kv("service.name", "checkout"), kv("host.name", "web-4")])
    return ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=resource, scope_logs=[ScopeLogs(log_records=records)])]
    ).SerializeToString()


async def test_protobuf_records_are_owned_then_delivered_with_the_standard_fields(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1)})
    resp = await client.post("/v1/logs", data=request(), headers=PROTOBUF)
    assert resp.status == 200 and resp.content_type == "application/x-protobuf"
    ExportLogsServiceResponse.FromString(await resp.read())  # the spec's answer, decodable
    await eventually(lambda: len(fake.received) == 1, what="delivery")
    paid, warned, down = fake.received[0]["messages"]
    assert paid == {
        "ts": "2025-12-02T12:00:00.000Z",
        "level": "INFO",
        "service": "checkout",
        "host": "web-4",
        "message": "paid",
        "severity_number": 9,
    }
    assert (warned["ts"], warned["level"], warned["message"]) == (
        "2025-12-02T12:00:00.500Z",
        "WARN",
        "42",
    )
    assert warned["attributes"] == {"order": "o-17"}
    assert (warned["trace_id"], warned["span_id"]) == (
        "5b8efff798038103d269b633813fc60c",
        "eee19b7ec3c1b174",
    )
    assert down["level"] == "FATAL"
    # An exporter's retry of the same request has the same packet id: deduplicated downstream.
    resp = await client.post("/v1/logs", data=request(), headers=PROTOBUF)
    assert resp.status == 200
    await eventually(lambda: len(fake.ids) == 2, what="the retry forwarded")
    assert fake.ids[0] == fake.ids[1]


async def test_otlp_json_with_hex_ids_and_string_integers(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1)})
    body = {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "cart"}}]
                },
                "scopeLogs": [
                    {
                        "scope": {"name": "cart.api"},
                        "logRecords": [
                            {
                                "timeUnixNano": str(T0),
                                "severityNumber": 17,
                                "body": {"stringValue": "no stock"},
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "futureField": {"ignored": True},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    resp = await client.post("/v1/logs", json=body)
    assert resp.status == 200 and await resp.read() == b"{}"
    await eventually(lambda: len(fake.received) == 1, what="delivery")
    (m,) = fake.received[0]["messages"]
    assert (m["level"], m["service"], m["message"], m["scope"]) == (
        "ERROR",
        "cart",
        "no stock",
        "cart.api",
    )
    assert m["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert m["host"] == "127.0.0.1"  # no host.name: the peer's address


async def test_refusals_are_the_specs_statuses_with_a_status_message(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server, healthy=False)
    client = await make_distributor({"a1": (url, 1)}, queue_capacity=1, retry_after=4)
    resp = await client.post("/v1/logs", data=b"\xff\xff not protobuf", headers=PROTOBUF)
    assert resp.status == 400
    assert "not an OTLP" in Status.FromString(await resp.read()).message
    resp = await client.post("/v1/logs", data=b"{", headers={"Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["code"] == 3
    resp = await client.post("/v1/logs", data=b"x", headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    assert (await client.post("/v1/logs", data=request(), headers=PROTOBUF)).status == 200
    # The queue is full (its analyzer is down): 503, Retry-After, UNAVAILABLE; retried later.
    other = ExportLogsServiceRequest.FromString(request())
    other.resource_logs[0].scope_logs[0].log_records[0].body.string_value = "refunded"
    resp = await client.post("/v1/logs", data=other.SerializeToString(), headers=PROTOBUF)
    assert resp.status == 503 and resp.headers["Retry-After"] == "4"
    assert Status.FromString(await resp.read()).code == 14
    fake.healthy = True
    await eventually(lambda: len(fake.ids) == 1, what="the queued request delivered")
    resp = await client.post("/v1/logs", data=other.SerializeToString(), headers=PROTOBUF)
    assert resp.status == 200
    counts = service(client).counters.by_input()["otlp"]
    assert (counts.packets, counts.messages) == (2, 6)
    assert counts.rejected == {
        "malformed_json": 2,
        "unsupported_media_type": 1,
        "backpressure": 1,
    }


# The SDK's stdlib logging bridge is what most Python programs use; newer SDKs point to its
# successor package but still ship it.
@pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")
@EITHER_WAY
async def test_the_opentelemetry_sdk_exporter_delivers_every_record(
    aiohttp_server: Any, make_distributor: MakeDistributor, parse_workers: int
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1)}, parse_workers=parse_workers)
    endpoint = str(client.make_url("/v1/logs"))

    def export() -> None:
        for name, compression in (
            ("checkout", Compression.NoCompression),
            ("cart", Compression.Gzip),
        ):
            provider = LoggerProvider(resource=SdkResource.create({"service.name": name}))
            exporter = OTLPLogExporter(endpoint=endpoint, timeout=5, compression=compression)
            provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
            logger = logging.getLogger(f"otlp-test-{name}")
            logger.propagate = False
            logger.setLevel(logging.DEBUG)
            handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
            logger.addHandler(handler)
            logger.debug("debug from %s", name)
            logger.info("info from %s", name)
            logger.warning("warning from %s", name)
            logger.error("error from %s", name)
            provider.force_flush()
            provider.shutdown()
            logger.removeHandler(handler)

    await asyncio.to_thread(export)
    await eventually(lambda: sum(len(p["messages"]) for p in fake.received) == 8, what="8 logs")
    got = sorted(
        (m["service"], m["level"], m["message"]) for p in fake.received for m in p["messages"]
    )
    assert got == sorted(
        (name, level, f"{word} from {name}")
        for name in ("checkout", "cart")
        for level, word in (
            ("DEBUG", "debug"),
            ("INFO", "info"),
            ("WARN", "warning"),
            ("ERROR", "error"),
        )
    )
    assert all(orjson.dumps(m) for p in fake.received for m in p["messages"])


@pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")
async def test_the_sdk_exporter_retries_503s_until_the_analyzers_return(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    # Every analyzer down and a queue of one packet: the exporter's requests past the first are
    # answered 503 + Retry-After, which it retries; once the analyzer is back all arrive.
    fake, url = await start_analyzer(aiohttp_server, status=503, healthy=False)
    client = await make_distributor({"a1": (url, 1)}, queue_capacity=1, queue_wait=0)
    endpoint = str(client.make_url("/v1/logs"))
    d = service(client)

    def export() -> None:
        provider = LoggerProvider(resource=SdkResource.create({"service.name": "billing"}))
        exporter = OTLPLogExporter(endpoint=endpoint, timeout=30)
        # Two records a request, so the twelve make six requests and most meet a full queue.
        provider.add_log_record_processor(
            BatchLogRecordProcessor(exporter, max_export_batch_size=2, schedule_delay_millis=50)
        )
        logger = logging.getLogger("otlp-test-backpressure")
        logger.propagate = False
        handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
        logger.addHandler(handler)
        for i in range(12):
            logger.warning("invoice %d", i)
        provider.force_flush(60_000)
        provider.shutdown()
        logger.removeHandler(handler)

    exporting = asyncio.create_task(asyncio.to_thread(export))
    await eventually(
        lambda: d.counters.input("otlp").rejected["backpressure"] >= 2, 20, "503s to the exporter"
    )
    assert fake.messages == 0
    fake.status, fake.healthy = 200, True
    await exporting
    await eventually(lambda: fake.messages == 12, 30, "every record delivered")
    got = sorted(m["message"] for p in fake.received for m in p["messages"])
    assert got == sorted(f"invoice {i}" for i in range(12))
    assert d.counters.input("otlp").messages == 12


@pytest.mark.e2e  # spawns a parse process
async def test_a_dead_parse_process_is_a_503_then_replaced(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1)}, parse_workers=1)
    assert client.app is not None
    resp = await client.post("/v1/logs", data=request(), headers=PROTOBUF)
    assert resp.status == 200
    # Delivered (its records made messages for this analyzer in the same process) first.
    await eventually(lambda: fake.messages == 3, 10, "the first request's records")
    pool = client.app[PARSE].pools[0]
    assert pool is not None
    for pid in list(pool._processes):
        os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0.5)
    # The request it would have read is refused as the spec's retryable 503, not lost or a 500.
    resp = await client.post("/v1/logs", data=request(), headers=PROTOBUF)
    assert resp.status == 503 and resp.headers["Retry-After"]
    assert Status.FromString(await resp.read()).code == 14
    resp = await client.post("/v1/logs", data=request(), headers=PROTOBUF)
    assert resp.status == 200  # read by a new parse process
    await eventually(lambda: fake.messages == 6, 10, "both requests' records")


def numbered(i: int, records: int) -> bytes:
    """An export request of `records` records with bodies r{i}-{j}."""
    logs = [LogRecord(time_unix_nano=T0 + j, body=AnyValue(string_value=f"r{i}-{j}"))
            for j in range(records)]  # fmt: skip
    resource = Resource(attributes=[kv("service.name", "billing")])
    return ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=resource, scope_logs=[ScopeLogs(log_records=logs)])]
    ).SerializeToString()


def whole_requests(bodies: list[bytes], sent: list[bytes]) -> list[bytes]:
    """`bodies` cut back into the requests of `sent` they are made of, back to back; an
    AssertionError when one holds anything else."""
    out = []
    for body in bodies:
        while body:
            match = next((s for s in sent if body.startswith(s) and s not in out), None)
            assert match is not None, "a request that is not whole sent requests back to back"
            out.append(match)
            body = body[len(match) :]
    return out


async def test_otlp_in_reaches_an_otlp_analyzer_byte_for_byte_through_the_spool(
    aiohttp_server: Any, make_distributor: MakeDistributor, tmp_path: Path
) -> None:
    rec = backends.Recorder()
    server = await aiohttp_server(backends.otlp(rec))
    url = f"http://127.0.0.1:{server.port}/v1/logs"
    client = await make_distributor(
        {"otel": (url, 1, delivery_from({"format": "otlp"}))}, spool_dir=str(tmp_path / "spool")
    )
    sent = [numbered(i, 1 + i % 7) for i in range(40)]
    for body in sent:
        resp = await client.post("/v1/logs", data=body, headers=PROTOBUF)
        assert resp.status == 200
    d = service(client)
    await eventually(lambda: d.dispatcher.unacked == 0, what="delivery")

    # Each request arrived whole and unchanged, once; several may share a POST.
    assert sorted(whole_requests(rec.bodies, sent)) == sorted(sent)
    assert len(rec.stored) == sum(1 + i % 7 for i in range(40))
    assert d.counters.delivered_messages == len(rec.stored)


async def test_otlp_in_is_converted_by_a_logdist_analyzer_and_searchable(
    aiohttp_server: Any, make_distributor: MakeDistributor, tmp_path: Path
) -> None:
    analyzer = make_analyzer(AnalyzerConfig(id="a1", store=str(tmp_path / "store")))
    server = await aiohttp_server(analyzer)
    client = await make_distributor({"a1": (f"http://127.0.0.1:{server.port}/ingest", 1)})
    d = service(client)
    # Its /health says it takes OTLP: the distributor passes the requests on as they came.
    await eventually(lambda: d.registry.get("a1").otlp, what="the analyzer's health")
    resp = await client.post("/v1/logs", data=request(), headers=PROTOBUF)
    assert resp.status == 200
    await eventually(lambda: d.dispatcher.unacked == 0, what="delivery")
    assert d.counters.delivered_messages == 3

    async with aiohttp.ClientSession() as http:
        found = await (await http.get(f"http://127.0.0.1:{server.port}/search?q=down")).json()
    (item,) = found["items"]
    assert (item["service"], item["host"], item["level"], item["message"]) == (
        "checkout",
        "web-4",
        "FATAL",
        "down",
    )
