"""Cluster mode with one real nats-server (Debian's, started by the test on its own port and
data dir) and real distributor processes sharing one JetStream stream. The chaos scenarios
with three clustered servers are in tests/chaos/test_cluster.py."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from logdist.local.ports import free_run
from tests.support import cluster
from tests.support.cluster import Pool, nats, replica, send
from tests.support.procs import Proc, Procs, get, wait_for


def test_without_its_nats_server_a_replica_answers_503_and_comes_back(
    procs: Procs, tmp_path: Path
) -> None:
    port = free_run(1)
    server = nats(procs, port, tmp_path / "js")
    pool = Pool(procs, {"a1": 3, "a2": 1})
    d1 = replica(procs, "d1", f"nats://127.0.0.1:{port}", pool.urls)
    assert send(d1.url, "before")[0] == 202
    server.kill()
    status, headers = send(d1.url, "while-down")
    assert status == 503 and int(headers["Retry-After"]) >= 1
    nats(procs, port, tmp_path / "js")  # the same data dir: the stream is still there

    def accepted_again() -> bool:
        return send(d1.url, f"after-{time.monotonic_ns()}")[0] == 202

    wait_for(accepted_again, 30, "accepting again", 0.5)
    wait_for(lambda: {"before"} <= set(sum(pool.delivered().values(), [])), 20, "delivered", 0.2)


def test_a_replica_killed_with_packets_in_hand_leaves_them_to_the_other(
    procs: Procs, tmp_path: Path
) -> None:
    servers = cluster.one_server(procs, tmp_path / "js")
    pool = Pool(procs, {})
    pool.start("slow", "--delay", "0.3")
    analyzers = pool.urls
    d1 = replica(procs, "d1", servers, analyzers, "--ack-wait", "2")
    for i in range(200):
        assert send(d1.url, f"p{i}")[0] == 202
    wait_for(lambda: get(f"{d1.url}/status")["cluster"]["in_flight"] > 0, 10, "d1 holding some")
    d1.kill()  # SIGKILL: what it fetched and had not acknowledged is redelivered
    d2 = replica(procs, "d2", servers, analyzers, "--ack-wait", "2")

    def all_delivered() -> bool:
        return {f"p{i}" for i in range(200)} <= set(pool.delivered()["slow"])

    wait_for(all_delivered, 60, "every accepted packet delivered by d2", 0.5)
    assert get(f"{d2.url}/status")["cluster"]["fetched"] > 0


def test_the_cluster_shows_in_status_metrics_ctl_status_and_top(
    procs: Procs, tmp_path: Path
) -> None:
    servers = cluster.one_server(procs, tmp_path / "js")
    pool = Pool(procs, {"a1": 1})
    d1 = replica(procs, "d1", servers, pool.urls)
    d2 = replica(procs, "d2", servers, pool.urls)
    for i in range(20):
        assert send(d2.url, f"p{i}")[0] == 202

    def both_seen() -> bool:
        c = get(f"{d1.url}/status")["cluster"]
        return [r["id"] for r in c["replicas"]] == ["d1", "d2"] and "messages" in c["stream_state"]

    wait_for(both_seen, 10, "d1 to see both replicas and the stream", 0.2)
    c = get(f"{d1.url}/status")["cluster"]
    assert c["replicas"][1]["url"] == d2.url and all(r["up"] for r in c["replicas"])
    assert c["control"]["loaded"] and c["control"]["revision"] > 0
    with urllib.request.urlopen(f"{d1.url}/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    assert 'logdist_cluster_replica_up{replica="d2"} 1.0' in metrics
    assert "logdist_cluster_stream_messages" in metrics
    assert "logdist_cluster_consumer_pending" in metrics
    for args in (("ctl", "status"), ("top", "--once", "--interval", "0.2")):
        out = procs.run(*args, "--url", d1.url, env={"COLUMNS": "160"})
        assert out.returncode == 0, out.stderr
        assert "cluster LOGDIST  as d1" in out.stdout and "redelivered" in out.stdout
        assert re.search(r"d2\s+http://127\.0\.0\.1:\d+\s+up", out.stdout), out.stdout
    # A replica stopped cleanly leaves the table; one that dies is listed as gone.
    d3 = replica(procs, "d3", servers, pool.urls)
    wait_for(lambda: len(get(f"{d1.url}/status")["cluster"]["replicas"]) == 3, 10, "d3 seen")
    assert d3.stop() == 0
    wait_for(lambda: len(get(f"{d1.url}/status")["cluster"]["replicas"]) == 2, 10, "d3 left")
    d2.kill()
    wait_for(lambda: not get(f"{d1.url}/status")["cluster"]["replicas"][1]["up"], 15, "d2 gone")
    out = procs.run("ctl", "status", "--url", d1.url, env={"COLUMNS": "160"})
    assert re.search(r"d2\s+http://127\.0\.0\.1:\d+\s+gone", out.stdout), out.stdout


def test_a_dead_letter_stays_in_the_stream_until_purged_so_a_dead_replica_loses_none(
    procs: Procs, tmp_path: Path
) -> None:
    """Dead letters are kept in a replica's memory in cluster mode; their stream messages
    stay unacknowledged (kept alive) until replayed or purged, so a replica that dies
    holding some leaves them to another, which dead-letters them again."""
    from tests.e2e.test_foreign import packets, start_foreign
    from tests.e2e.test_foreign import send as send_batch

    servers = cluster.one_server(procs, tmp_path / "js")
    r1 = start_foreign(procs, "r1", "--refuse", "poison")
    analyzers = {"r1": f"{r1.url}/ingest@1;format=ndjson"}
    d1 = replica(procs, "d1", servers, analyzers, "--ack-wait", "2")
    sent = packets(50, "q", poison={7, 30})
    send_batch(d1.url, sent)

    def letters(d: Proc) -> list[str]:
        return sorted(x["id"] for x in get(f"{d.url}/dead-letters")["letters"])

    wait_for(lambda: letters(d1) == ["q30", "q7"], 20, "two dead letters on d1")
    stream = get(f"{d1.url}/status")["cluster"]
    assert stream["in_flight"] >= 1  # held, not acknowledged
    d1.kill()
    d2 = replica(procs, "d2", servers, analyzers, "--ack-wait", "2")
    wait_for(lambda: letters(d2) == ["q30", "q7"], 30, "d2 got them again")
    purged = procs.run("ctl", "dead-letters", "purge", "--url", d2.url)
    assert purged.returncode == 0, purged.stderr

    def stream_empty() -> bool:
        state = get(f"{d2.url}/status")["cluster"]["stream_state"]
        return bool(state.get("messages") == 0)

    wait_for(stream_empty, 20, "the purged dead letters acknowledged", 0.3)


def test_runs_larger_than_the_servers_take_go_packet_by_packet(
    procs: Procs, tmp_path: Path
) -> None:
    """A nats-server taking messages of up to 64 KB: a 300 KB batch is published packet by
    packet (all delivered); one packet larger than 64 KB alone is a 413 that says so."""
    port = free_run(1)
    conf = tmp_path / "small.conf"
    store = tmp_path / "js"
    conf.write_text(
        f'port: {port}\nhost: 127.0.0.1\nmax_payload: 65536\njetstream {{ store_dir: "{store}" }}\n'
    )
    procs.spawn("nats", [cluster.NATS_SERVER, "-c", str(conf)], None)
    wait_for(lambda: cluster.listening(port), 10, "nats-server to listen")
    pool = Pool(procs, {"a1": 1.0})
    d1 = replica(procs, "d1", f"nats://127.0.0.1:{port}", pool.urls)
    filler = "x" * 1000
    body = b"\n".join(
        json.dumps(
            {"packetId": f"p{i}", "emitter": "e1", "messages": [{"message": filler}]}
        ).encode()
        for i in range(300)
    )
    req = urllib.request.Request(
        f"{d1.url}/log-packets", data=body, headers={"Content-Type": "application/x-ndjson"}
    )
    with urllib.request.urlopen(req, timeout=20) as resp:
        assert resp.status == 202
    cluster.account(pool, [f"p{i}" for i in range(300)])
    c = get(f"{d1.url}/status")["cluster"]
    assert c["published"] >= 5  # 300 KB in messages of at most 64 KB
    assert c["stored_bytes"] < c["published_bytes"] / 4  # log lines stored deflated
    big = {"packetId": "big", "emitter": "e1", "messages": [{"message": "y" * 100_000}]}
    req = urllib.request.Request(
        f"{d1.url}/log-packet",
        data=json.dumps(big).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=20)
    assert info.value.code == 413
    assert "max_payload" in json.loads(info.value.read())["error"]


def test_a_stream_left_by_an_earlier_version_is_taken_over_and_its_messages_delivered(
    procs: Procs, tmp_path: Path
) -> None:
    """Earlier versions published on `logdist.packets` alone and fetched with a consumer
    `routers` filtered to it: a replica of this one widens the stream to the emitters'
    subjects, keeps that consumer as the shared subject's lane, adds the others, and delivers
    what the old stream still held."""
    import asyncio

    import nats as nats_client
    from nats.js.api import AckPolicy, ConsumerConfig, DiscardPolicy, RetentionPolicy, StreamConfig

    servers = cluster.one_server(procs, tmp_path / "js")

    async def as_before() -> None:
        nc = await nats_client.connect(servers)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(
            name="LOGDIST", subjects=["logdist.packets"], retention=RetentionPolicy.WORK_QUEUE,
            discard=DiscardPolicy.NEW, max_bytes=1 << 30, num_replicas=1,
        ))  # fmt: skip
        await js.add_consumer("LOGDIST", ConsumerConfig(
            durable_name="routers", filter_subject="logdist.packets",
            ack_policy=AckPolicy.EXPLICIT, max_ack_pending=-1,
        ))  # fmt: skip
        for i in range(3):
            body = {"packetId": f"old-{i}", "emitter": "e1", "messages": [{"message": "m"}]}
            await js.publish("logdist.packets", json.dumps(body).encode())
        await nc.close()

    asyncio.run(as_before())
    pool = Pool(procs, {"a1": 1})
    d1 = replica(procs, "d1", servers, pool.urls)
    assert send(d1.url, "new-0")[0] == 202
    cluster.account(pool, ["old-0", "old-1", "old-2", "new-0"], timeout=30)
