"""The analyzers people run, as recording fakes that answer as their documentation shows
(tests/support/backends.py cites the pages): every record ends delivered exactly once,
retried only where it must be, or dead-lettered alone; nothing is lost and nothing stored
is sent again."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from logdist.core.delivery import delivery_from
from tests.distributor.conftest import Client, MakeDistributor, service
from tests.distributor.routing.test_forwarding import send
from tests.support import backends
from tests.support.backends import Recorder, key_of
from tests.support.fakes import eventually

TS = "2026-12-06T19:30:15.123Z"
OLD = "2026-12-06T10:00:00.000Z"
PACKETS, PER_PACKET = 20, 5
HEC_PATH, HEC_AUTH = "/services/collector/event", "Splunk hec-token"


def body(
    special: dict[tuple[int, int], str] | None = None, ts: dict[tuple[int, int], str] | None = None
) -> bytes:
    special, ts = special or {}, ts or {}
    lines = []
    for i in range(PACKETS):
        messages = [
            {
                "ts": ts.get((i, j), TS),
                "level": "INFO",
                "service": "checkout",
                "host": "web-1",
                "message": f"order {i}-{j} {special.get((i, j), '')}".strip(),
            }
            for j in range(PER_PACKET)
        ]
        lines.append(orjson.dumps({"packetId": f"p{i}", "emitter": "shop", "messages": messages}))
    return b"\n".join(lines)


def keys(pairs: Iterable[tuple[int, int]]) -> set[str]:
    return {key_of(f"p{i}", j) for i, j in pairs}


ALL = {(i, j) for i in range(PACKETS) for j in range(PER_PACKET)}


async def settled(client: Client) -> None:
    d = service(client)
    await eventually(lambda: d.dispatcher.unacked == 0, timeout=20, what="every record settled")


def dead_letters(client: Client) -> dict[str, tuple[int, str]]:
    """Dead letter id -> (its messages, the last refusal's reason)."""
    letters = service(client).dead_letters.letters
    return {lid: (letter.messages, letter.refusals[-1].answer) for lid, letter in letters.items()}


async def serve(aiohttp_server: Any, app: Any, path: str) -> str:
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}{path}"


async def test_elasticsearch_bulk_items_are_each_delivered_retried_or_refused(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    rec = Recorder()
    rec.stored[key_of("p0", 0)] = {"from": "an earlier run"}  # indexed before: its create is a 409
    url = await serve(aiohttp_server, backends.elasticsearch(rec), "/_bulk")
    es = delivery_from({"format": "elasticsearch", "index": "logs"})
    client = await make_distributor({"es": (url, 1, es)}, forward_batch=8, max_refusals=1)
    bad, slow = {(3, 1), (7, 4)}, {(5, 0), (5, 2), (9, 3)}
    await send(client, body({**{k: "BADMAP" for k in bad}, **{k: "SLOW" for k in slow}}))
    await settled(client)

    assert set(rec.stored) == keys(ALL - bad)
    assert rec.resent_stored == [key_of("p0", 0)]  # only the one stored before logdist sent it
    assert {k for k, n in rec.sent.items() if n > 1} == keys(slow)  # only the 429s again
    assert all(n == 2 for k, n in rec.sent.items() if k in keys(slow))
    letters = dead_letters(client)
    assert set(letters) == {"p3#1", "p7#4"}  # parts: the refused records alone
    assert all(n == 1 and "mapper_parsing_exception" in why for n, why in letters.values())
    counters = service(client).counters
    assert counters.delivered_messages == len(ALL) - len(bad)
    assert counters.dead_letters[("es", 400)] == 2


async def test_loki_stores_the_rest_of_a_push_and_refuses_only_the_entries_it_ignored(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    rec = Recorder(busy=1)  # the first push is rate limited (429): nothing stored
    cutoff = 1_796_580_000_000_000_000  # 2026-12-06T18:00:00Z
    url = await serve(aiohttp_server, backends.loki(rec, cutoff), "/loki/api/v1/push")
    delivery = delivery_from({"format": "loki", "labels": ["service", "level"]})
    client = await make_distributor({"loki": (url, 1, delivery)}, forward_batch=8, max_refusals=1)
    old = {(2, 0), (2, 3), (11, 4)}
    await send(client, body(ts={k: OLD for k in old}))
    await settled(client)

    assert set(rec.stored) == keys(ALL - old)
    assert rec.resent_stored == []
    assert set(rec.sent.values()) == {1}  # the 429 stored nothing; nothing was sent twice
    stored = rec.stored[key_of("p1", 2)]
    assert stored["stream"] == {"service": "checkout", "level": "INFO"}
    assert stored["meta"]["emitter"] == "shop" and stored["line"] == "order 1-2"
    letters = dead_letters(client)
    assert {lid: n for lid, (n, _) in letters.items()} == {"p2#0": 2, "p11#4": 1}
    assert all("entry too far behind" in why for _, why in letters.values())


async def test_splunk_hec_indexes_up_to_the_invalid_event_and_sends_the_rest_again(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    rec = Recorder(busy=1)  # code 9, server busy, first
    url = await serve(aiohttp_server, backends.splunk_hec(rec), HEC_PATH)
    delivery = delivery_from({"format": "splunk-hec", "headers": {"Authorization": HEC_AUTH}})
    client = await make_distributor({"hec": (url, 1, delivery)}, forward_batch=8, max_refusals=1)
    bad = {(2, 3), (6, 0), (6, 1)}
    await send(client, body({k: "BADHEC" for k in bad}))
    await settled(client)

    assert set(rec.stored) == keys(ALL - bad)
    assert rec.resent_stored == []
    event = rec.stored[key_of("p0", 0)]
    assert (event["time"], event["host"], event["source"]) == (1796585415.123, "web-1", "checkout")
    letters = dead_letters(client)
    assert set(letters) == {"p2#3", "p6#0", "p6#1"}
    assert all("HEC code 6" in why for _, why in letters.values())


async def test_otlp_partial_success_counts_the_rejected_and_delivers_the_rest(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    rec = Recorder(busy=1)
    url = await serve(aiohttp_server, backends.otlp(rec), "/v1/logs")
    client = await make_distributor({"otel": (url, 1, delivery_from({"format": "otlp"}))})
    await send(client, body({(4, 4): "BADOTLP"}))
    await settled(client)

    assert set(rec.stored) == keys(ALL - {(4, 4)})
    assert set(rec.sent.values()) == {1}
    counters = service(client).counters
    assert counters.delivered_messages == len(ALL) - 1
    assert counters.refused[("otel", 200)] == 1
    assert dead_letters(client) == {}  # the answer does not say which: nothing to keep


async def test_four_formats_share_delivered_messages_by_weight(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    recs = {aid: Recorder() for aid in ("es", "loki", "hec", "otel")}
    analyzers = {
        "es": (await serve(aiohttp_server, backends.elasticsearch(recs["es"]), "/_bulk"), 4,
               delivery_from({"format": "elasticsearch"})),
        "loki": (await serve(aiohttp_server, backends.loki(recs["loki"], 0), "/loki/api/v1/push"),
                 3, delivery_from({"format": "loki"})),
        "hec": (await serve(aiohttp_server, backends.splunk_hec(recs["hec"]), HEC_PATH), 2,
                delivery_from({"format": "splunk-hec", "headers": {"Authorization": HEC_AUTH}})),
        "otel": (await serve(aiohttp_server, backends.otlp(recs["otel"]), "/v1/logs"), 1,
                 delivery_from({"format": "otlp"})),
    }  # fmt: skip
    client = await make_distributor(analyzers)
    total = 0
    for i in range(400):  # 400 requests of 5 packets of 1-20 messages (a run each)
        lines = []
        for k in range(5):
            n = 1 + (i * 5 + k) % 20
            messages = [{"ts": TS, "message": f"m{j}"} for j in range(n)]
            lines.append(orjson.dumps({"packetId": f"q{i}-{k}", "messages": messages}))
            total += n
        await send(client, b"\n".join(lines))
    await settled(client)

    counts = {aid: len(rec.stored) for aid, rec in recs.items()}
    assert sum(counts.values()) == total
    for aid, weight in (("es", 0.4), ("loki", 0.3), ("hec", 0.2), ("otel", 0.1)):
        assert abs(counts[aid] / total - weight) <= 0.01, counts
