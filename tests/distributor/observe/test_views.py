from __future__ import annotations

from functools import partial
from typing import Any, cast

import orjson
from prometheus_client.parser import text_string_to_metric_families

from logdist.distributor.observe.metrics import LATENCY_EACH, Metrics
from tests.distributor.conftest import MakeDistributor, service
from tests.support import packets as support
from tests.support.fakes import eventually, start_analyzer


def packet(i: int, emitter: str, levels: list[str]) -> dict[str, Any]:
    messages = [{"level": lv, "message": f"m{i}.{j}"} for j, lv in enumerate(levels)]
    return support.packet(f"p{i}", messages, emitter)


async def routed_client(
    aiohttp_server: Any, make_distributor: MakeDistributor, **kwargs: Any
) -> Any:
    fake_a, url_a = await start_analyzer(aiohttp_server)
    fake_b, url_b = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a": (url_a, 1), "b": (url_b, 1)}, **kwargs)
    await eventually(lambda: all(x.routable for x in service(client).registry))
    return client


async def test_prometheus_metrics_count_what_happened(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    client = await routed_client(aiohttp_server, make_distributor)
    for i in range(10):
        await client.post("/log-packet", json=packet(i, "e1", ["INFO", "WARN"]))
    await client.post("/log-packet", data=b"{", headers={"Content-Type": "application/json"})
    await eventually(lambda: service(client).counters.delivered_packets == 10)
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.content_type == "text/plain"
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(await resp.text())
        for s in family.samples
    }
    assert samples[("logdist_received_packets_total", (("input", "packets"),))] == 10
    assert samples[("logdist_received_messages_total", (("input", "packets"),))] == 20
    assert samples[("logdist_received_packets_total", (("input", "records"),))] == 0
    rejected = (("input", "packets"), ("reason", "malformed_json"))
    assert samples[("logdist_rejected_total", rejected)] == 1
    delivered = [
        v for (name, labels), v in samples.items() if name == "logdist_delivered_messages_total"
    ]
    assert sum(delivered) == 20
    assert samples[("logdist_analyzer_up", (("analyzer", "a"),))] == 1
    assert samples[("logdist_queue_capacity", ())] == 10_000
    assert samples[("logdist_forward_latency_seconds_count", (("analyzer", "a"),))] >= 1


async def test_recent_logs_are_messages_with_where_they_went(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    client = await routed_client(aiohttp_server, make_distributor, log_buffer=5)
    for i in range(10):
        await client.post("/log-packet", json=packet(i, "e1" if i % 2 else "e2", ["INFO", "ERROR"]))
    await eventually(lambda: service(client).counters.delivered_packets == 10)
    entries = await (await client.get("/logs?n=4")).json()
    assert [e["message"] for e in entries] == ["m8.0", "m8.1", "m9.0", "m9.1"]
    assert {"analyzer", "emitter", "packetId", "routed_at", "level"} <= set(entries[0])
    errors = await (await client.get("/logs?n=100&level=error&emitter=e1")).json()
    assert [e["message"] for e in errors] == ["m5.1", "m7.1", "m9.1"]  # the ring holds 5 packets
    only_a = await (await client.get("/logs?n=100&analyzer=a")).json()
    assert {e["analyzer"] for e in only_a} == {"a"}
    resp = await client.get("/logs?n=lots")
    assert resp.status == 422


async def test_recent_logs_open_runs_of_packets_from_a_batch(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    client = await routed_client(aiohttp_server, make_distributor)
    body = b"\n".join(orjson.dumps(packet(i, f"e{i % 2}", ["INFO"])) for i in range(6))
    resp = await client.post(
        "/log-packets", data=body, headers={"Content-Type": "application/x-ndjson"}
    )
    assert (await resp.json())["packetIds"] == [f"p{i}" for i in range(6)]
    await eventually(lambda: service(client).counters.delivered_packets == 6)
    entries = await (await client.get("/logs?n=100")).json()
    assert sorted(e["packetId"] for e in entries) == [f"p{i}" for i in range(6)]
    mine = await (await client.get("/logs?n=100&emitter=e1")).json()
    assert sorted(e["message"] for e in mine) == ["m1.0", "m3.0", "m5.0"]
    assert {e["emitter"] for e in mine} == {"e1"}


def delivered(client: Any, n: int) -> bool:
    return bool(service(client).counters.delivered_packets == n)


async def test_the_log_buffer_counts_the_packets_of_a_run(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    client = await routed_client(aiohttp_server, make_distributor, log_buffer=5)
    for start in (0, 6):  # two requests of 6 packets: a run each
        body = b"\n".join(orjson.dumps(packet(i, "e1", ["INFO"])) for i in range(start, start + 6))
        await client.post(
            "/log-packets", data=body, headers={"Content-Type": "application/x-ndjson"}
        )
        await eventually(partial(delivered, client, start + 6))
    entries = await (await client.get("/logs?n=100")).json()
    # 5 packets kept: the newest run, whole; the older one is gone.
    assert sorted(e["packetId"] for e in entries) == sorted(f"p{i}" for i in range(6, 12))


async def test_ws_logs_sends_the_backlog_then_follows(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    client = await routed_client(aiohttp_server, make_distributor)
    await client.post("/log-packet", json=packet(0, "e1", ["INFO"]))
    await eventually(lambda: service(client).counters.delivered_packets == 1)
    ws = await client.ws_connect("/ws/logs?n=10&level=INFO")
    first = orjson.loads((await ws.receive()).data)
    assert first["message"] == "m0.0"
    await client.post("/log-packet", json=packet(1, "e1", ["DEBUG", "INFO"]))
    live = orjson.loads((await ws.receive(timeout=5)).data)
    assert live["message"] == "m1.1"  # DEBUG filtered out
    await ws.close()
    backlog_only = await client.ws_connect("/ws/logs?n=10&follow=0")
    got = [orjson.loads(m.data)["message"] async for m in backlog_only]
    assert got == ["m0.0", "m1.0", "m1.1"]


async def test_ws_metrics_sends_status_every_second(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    client = await routed_client(aiohttp_server, make_distributor)
    ws = await client.ws_connect("/ws/metrics")
    first = orjson.loads((await ws.receive(timeout=5)).data)
    second = orjson.loads((await ws.receive(timeout=5)).data)
    assert {"queue", "analyzers", "emitters", "counters"} <= set(first)
    assert 0.8 <= second["time"] - first["time"] <= 3
    await ws.close()


def test_forward_latency_is_one_histogram_for_a_large_pool() -> None:
    metrics = Metrics(cast(Any, None))  # the collector is only read at a scrape
    metrics.observe_forward("a1", 0.002, analyzers=4)
    for i in range(1000):
        metrics.observe_forward(f"s{i}", 0.002, analyzers=LATENCY_EACH + 1)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for s in list(metrics.forward_latency.collect())[0].samples
    }
    assert samples[("logdist_forward_latency_seconds_count", (("analyzer", "a1"),))] == 1
    assert samples[("logdist_forward_latency_seconds_count", (("analyzer", "_pool"),))] == 1000
    assert {dict(labels)["analyzer"] for _, labels in samples} == {"a1", "_pool"}
