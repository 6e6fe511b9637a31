"""Fair admission in cluster mode, with Debian's nats-server and two real distributor replicas
sharing one stream: a burst sent to one replica fills the stream past the budget and is
refused 429 past its fair share, while quiet emitters sending to either replica are never
refused; every packet accepted reaches an analyzer. With fairness off, the same burst fills
the stream and the quiet emitters are refused 503 — what the fair shares prevent."""

from __future__ import annotations

import base64
import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from logdist.distributor.control.publisher import subject_of
from tests.support import cluster
from tests.support.cluster import Pool, replica
from tests.support.procs import Procs, get

# The stream's size: the least JetStream and logdist take (1 MiB), so a burst fills it soon.
STREAM = str(1 << 20)
SECONDS = 6.0


def post(url: str, emitter: str, pid: str, message: str) -> int:
    return cluster.send(url, pid, emitter, message)[0]


class Sender(threading.Thread):
    """Posts packets for `emitter` until `stop`, every `every` seconds (0: at once)."""

    def __init__(
        self, url: str, emitter: str, every: float, size: int, stop: threading.Event, tag: str = ""
    ):
        super().__init__(daemon=True)
        self.url, self.emitter, self.every, self.size, self.stop = url, emitter, every, size, stop
        self.tag = tag or emitter  # packet ids: tag-0, tag-1, ...
        self.answers: Counter[int] = Counter()
        self.accepted: list[str] = []

    def run(self) -> None:
        i = 0
        deadline = time.monotonic() + 3 * SECONDS  # bounded, whatever `stop` does
        while not self.stop.is_set() and time.monotonic() < deadline and i < 20_000:
            pid = f"{self.tag}-{i}"
            # Random text, so deflating the stream's messages does not shrink them away.
            message = base64.b64encode(os.urandom(self.size)).decode()
            status = post(self.url, self.emitter, pid, message)
            self.answers[status] += 1
            if status == 202:
                self.accepted.append(pid)
            i += 1
            if self.every:
                time.sleep(self.every)


def run(d_burst: str, d_other: str) -> tuple[list[Sender], list[Sender], list[int | None]]:
    stop = threading.Event()
    burst = [Sender(d_burst, "burst", 0, 3_000, stop, f"burst{k}") for k in range(2)]
    # Quiet emitters on both replicas: the burst's and the other.
    quiet = [Sender((d_burst, d_other)[i % 2], f"quiet-{i}", 0.4, 3_000, stop) for i in range(10)]
    shares: list[int | None] = []
    for s in burst:
        s.start()
    time.sleep(1.0)  # the burst has filled the stream past the budget
    for s in quiet:
        s.start()
    end = time.monotonic() + SECONDS
    while time.monotonic() < end:
        shares.append(get(f"{d_burst}/status")["cluster"]["fairness"]["fair_share"])
        time.sleep(0.3)
    stop.set()
    for s in burst + quiet:
        s.join(20)
    return burst, quiet, shares


@pytest.mark.parametrize("fair", [True, False], ids=["fair", "fairness-off"])
def test_a_burst_on_one_replica_leaves_the_stream_open_to_quiet_emitters_on_both(
    procs: Procs, tmp_path: Path, fair: bool
) -> None:
    servers = cluster.one_server(procs, tmp_path / "js")
    pool = Pool(procs, {})
    pool.start("a1", "--delay", "0.05")
    # Slow delivery; a request the stream has no room for is answered 503 at once rather than
    # waiting a second for room (--queue-wait 0), so that every refusal shows.
    slow = ("--forward-batch", "1", "--max-requests", "1", "--max-pending", "2",
            "--queue-capacity", "16", "--cluster-max-bytes", STREAM, "--queue-wait", "0",
            "--fair-share-above", "0.5" if fair else "0")  # fmt: skip
    d1 = replica(procs, "d1", servers, pool.urls, *slow)
    d2 = replica(procs, "d2", servers, pool.urls, *slow)
    burst, quiet, shares = run(d1.url, d2.url)
    burst_answers = sum((s.answers for s in burst), Counter())
    quiet_answers = sum((s.answers for s in quiet), Counter())
    accepted = [pid for s in burst + quiet for pid in s.accepted]
    if fair:
        # The burst was held to its share of the stream; the quiet emitters never refused.
        assert burst_answers[429] > 0, burst_answers
        assert set(quiet_answers) == {202}, quiet_answers
        assert any(shares), shares
        status = get(f"{d1.url}/status")
        assert status["fairness"]["top_throttled"][0]["id"] == "burst"
        assert status["fairness"]["throttled"] == burst_answers[429]
    else:
        # Today's behaviour without fairness: the burst fills the stream, everyone gets 503.
        assert burst_answers[429] == 0 and quiet_answers[503] > 0, quiet_answers
    cluster.account(pool, accepted, timeout=120)


def test_a_quiet_emitters_packets_overtake_a_burst_waiting_in_the_stream(
    procs: Procs, tmp_path: Path
) -> None:
    """The stream is fetched by lanes: while a burst's backlog fills the stream, a quiet
    emitter in another lane is fetched as its packets arrive, not after the backlog."""
    servers = cluster.one_server(procs, tmp_path / "js")
    pool = Pool(procs, {})
    pool.start("a1", "--delay", "0.05")
    d1 = replica(procs, "d1", servers, pool.urls, "--forward-batch", "1", "--max-requests",
                 "1", "--max-pending", "2", "--queue-capacity", "16", "--cluster-max-bytes",
                 STREAM, "--queue-wait", "0")  # fmt: skip
    lane = subject_of("burst").split(".")[2]
    quiet = next(f"quiet-{i}" for i in range(100) if subject_of(f"quiet-{i}").split(".")[2] != lane)
    stop = threading.Event()
    burst = Sender(d1.url, "burst", 0, 3_000, stop)
    burst.start()
    time.sleep(2.0)  # the burst's backlog fills the stream (20 packets/s are delivered)
    ahead = list(burst.accepted)  # accepted before the quiet packets are sent
    sent = [f"{quiet}-{i}" for i in range(5)]
    for pid in sent:
        assert post(d1.url, quiet, pid, "quiet") == 202
    time.sleep(1.0)
    stop.set()
    burst.join(20)
    cluster.account(pool, burst.accepted + sent, timeout=120)
    order = pool.delivered()["a1"]
    last_quiet = max(order.index(pid) for pid in sent)
    behind = set(ahead) - set(order[:last_quiet])  # burst packets the quiet ones overtook
    assert len(ahead) > 100 and len(behind) > 50, (len(ahead), len(behind))


def test_what_a_replica_reckons_a_message_takes_is_what_the_stream_counts(
    procs: Procs, tmp_path: Path
) -> None:
    """The shares weigh each emitter's messages by their size in the stream: the estimate
    from subject, headers and body matches what Debian's nats-server counts, to the byte."""
    import asyncio

    import nats as nats_client
    from nats.js.api import RetentionPolicy, StreamConfig

    from logdist.distributor.control.messages import message_of
    from logdist.distributor.control.publisher import SUBJECT, stored_size
    from logdist.formats.packet import parse_batch

    servers = cluster.one_server(procs, tmp_path / "js")
    small = parse_batch(b'{"packetId": "p1", "emitter": "e", "messages": [{}]}', ndjson=True)
    run = parse_batch(
        b"\n".join(b'{"packetId": "r%d", "messages": [{"m": "%d"}]}' % (i, i) for i in range(99)),
        ndjson=True,
        run=100,
    )

    async def measured() -> list[tuple[int, int]]:
        nc = await nats_client.connect(servers)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(
            name="LOGDIST", subjects=[SUBJECT, f"{SUBJECT}.*.*"],
            retention=RetentionPolicy.WORK_QUEUE,
        ))  # fmt: skip
        out, before = [], 0
        for subject, packets in [(subject_of("e"), small), (SUBJECT, run)]:
            _, body, headers = message_of(packets)
            estimate = stored_size(subject, body, headers, "LOGDIST")
            await js.publish(subject, body, stream="LOGDIST", headers=headers)
            after = (await js.stream_info("LOGDIST")).state.bytes
            out.append((after - before, estimate))
            before = after
        await nc.close()
        return out

    for counted, estimate in asyncio.run(measured()):
        assert counted == estimate
