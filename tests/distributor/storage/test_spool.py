from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from logdist.distributor.storage.spool import Spool
from logdist.errors import Backpressure, ConfigError
from logdist.formats.packet import Packet, parse_batch, parse_one


def packets(n: int, start: int = 0) -> list[Packet]:
    return [
        parse_one(b'{"packetId": "p%d", "messages": [{"m": %d}]}' % (i, i))
        for i in range(start, start + n)
    ]


def segments(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("fsync", ["always", "interval", "never"])
async def test_acknowledged_segments_are_deleted_and_the_rest_replayed_in_order(
    tmp_path: Path, fsync: str
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200, fsync=fsync)
    assert spool.recover() == []
    spool.start()
    batch = packets(10)
    for p in batch:
        await spool.append([p])
    assert len(segments(tmp_path)) > 2  # rotated at 200 bytes
    spool.ack(batch[:6])
    await spool.close()
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200, fsync=fsync)
    replayed = again.recover()
    ids = [p.id for p in replayed]
    # Whole segments of acknowledged packets are gone; what remains comes back in order.
    assert ids == [p.id for p in batch][-len(ids) :]
    assert set(ids) >= {"p6", "p7", "p8", "p9"}
    assert len(ids) < 10
    again.ack(replayed)
    await again.close()
    assert segments(tmp_path) == []


async def test_a_torn_tail_is_reported_cut_off_and_the_rest_recovered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20, fsync="never")
    spool.recover()
    await spool.append(packets(5))
    await spool.close()
    [name] = segments(tmp_path)
    path = tmp_path / name
    data = path.read_bytes()
    path.write_bytes(data[:-7])  # a crash in the middle of the last write
    replayed = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20).recover()
    assert [p.id for p in replayed] == ["p0", "p1", "p2", "p3"]
    assert "event=spool_corrupt" in caplog.text and "torn record" in caplog.text
    assert len(path.read_bytes()) < len(data) - 7  # cut back to the last whole record


async def test_a_full_spool_refuses_with_backpressure(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=300, segment_bytes=1 << 20, fsync="never", retry_after=2)
    spool.recover()
    await spool.append(packets(3))
    with pytest.raises(Backpressure) as info:
        await spool.append(packets(10, start=3))
    assert info.value.retry_after == 2 and "spool full" in info.value.message
    spool.ack(packets(0))
    await spool.close()


def test_unknown_fsync_mode(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fsync"):
        Spool(tmp_path, 1, 1, fsync="sometimes")


async def test_ingest_answers_503_when_the_spool_is_full_and_nothing_is_lost(
    aiohttp_client: object, tmp_path: Path
) -> None:
    from logdist.config import DistributorConfig
    from logdist.distributor.web.app import make_app
    from tests.distributor.conftest import FAST_HEALTH

    cfg = DistributorConfig(
        spool_dir=str(tmp_path), spool_max_bytes=600, health=FAST_HEALTH, drain_timeout=0.2
    )
    client = await aiohttp_client(make_app(cfg))  # type: ignore[operator]
    statuses = []
    for i in range(20):
        resp = await client.post("/log-packet", json={"packetId": f"x{i}", "messages": [{"m": i}]})
        statuses.append(resp.status)
    assert statuses[0] == 202 and 503 in statuses
    refused = await client.post("/log-packet", json={"packetId": "y", "messages": [{}]})
    body = await refused.json()
    assert (
        refused.status == 503 and "spool full" in body["error"] and refused.headers["Retry-After"]
    )
    status = await (await client.get("/status")).json()
    assert status["spool"]["bytes"] <= 600
    assert status["queue"]["depth"] == statuses.count(202)


async def test_a_run_is_one_record_and_comes_back_whole(tmp_path: Path) -> None:
    body = b"\n".join(
        b'{"packetId":"r%d","emitter":"e%d","messages":[{}]}' % (i, i) for i in range(3)
    )
    (run,) = parse_batch(body, ndjson=True, run=10)
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20, fsync="never")
    spool.recover()
    await spool.append([run, *packets(1)])
    await spool.close()
    replayed = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20).recover()
    assert [(p.count, p.ids) for p in replayed] == [(3, ["r0", "r1", "r2"]), (1, None)]
    assert replayed[0].body == body


@pytest.mark.parametrize("replayed", [False, True])
async def test_a_run_acknowledged_packet_by_packet_is_settled_only_by_its_last(
    tmp_path: Path, replayed: bool
) -> None:
    # An analyzer that takes one packet a POST gets a run's packets one by one (and a refused
    # batch is split): the segment must hold until every packet of the run is acknowledged.
    body = b"\n".join(b'{"packetId":"r%d","messages":[{}]}' % i for i in range(3))
    (run,) = parse_batch(body, ndjson=True, run=10)
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20, fsync="never")
    spool.recover()
    spool.write([run])
    if replayed:
        await spool.close()
        spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20, fsync="never")
        (run,) = spool.recover()
    (segment,) = spool.segments.values()
    first, *rest = run.parts()
    spool.ack([first])
    assert not segment.settled
    spool.ack(rest)
    assert segment.settled


async def test_a_process_killed_with_a_segment_open_loses_nothing_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The open segment's file is sized up front: what a killed process wrote is in it (the
    # page cache has it), followed by zeros, which recovery reads as the end, not as damage.
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 16, fsync="never")
    spool.recover()
    spool.write(packets(5))
    big = b'{"packetId":"big","messages":[{"m":"%s"}]}' % (b"x" * 20_000)
    spool.write(parse_batch(big, ndjson=True))
    spool.write(packets(2, start=5))
    [name] = segments(tmp_path)
    path = tmp_path / name
    assert path.stat().st_size == 1 << 16  # the zero tail
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / name).write_bytes(path.read_bytes())  # the file as a kill would leave it
    replayed = Spool(killed, max_bytes=1 << 20, segment_bytes=1 << 16).recover()
    assert [p.id for p in replayed] == ["p0", "p1", "p2", "p3", "p4", "big", "p5", "p6"]
    assert "spool_corrupt" not in caplog.text
    assert spool.active is not None
    assert (killed / name).stat().st_size == spool.active.bytes  # the tail cut on recovery
    await spool.close()
    assert path.stat().st_size == spool.active.bytes  # closed: cut to what it holds


async def test_a_record_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1000, fsync="never")
    spool.recover()
    spool.write(packets(2))
    big = b'{"packetId":"big","messages":[{"m":"%s"}]}' % (b"x" * 5000)
    spool.write(parse_batch(big, ndjson=True))
    spool.write(packets(1, start=2))
    await spool.close()
    assert len(segments(tmp_path)) == 3
    replayed = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1000).recover()
    assert [p.id for p in replayed] == ["p0", "p1", "big", "p2"]


async def test_interval_syncs_closed_segments_at_the_tick_unless_acknowledged_by_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from logdist.distributor.storage import files as spool_module

    synced: list[str] = []
    real = spool_module.fsync_paths

    def spy(paths: list[Path]) -> None:
        synced.extend(p.name for p in paths)
        real(paths)

    monkeypatch.setattr(spool_module, "fsync_paths", spy)
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200, fsync="interval")
    spool.recover()
    spool.start()
    first, second = packets(3), packets(3, start=3)
    spool.write(first)
    spool.write(second)  # closes the first segment
    spool.write(packets(3, start=6))  # closes the second
    names = segments(tmp_path)
    assert len(names) == 3 and synced == []  # not synced as they closed
    spool.ack(first)  # the first is settled, and deleted, before the tick
    assert segments(tmp_path) == names[1:]
    await asyncio.sleep(1.3)
    assert synced == [names[1]]  # the tick synced what still holds unacknowledged packets
    spool.write(packets(3, start=9))  # closes the third, which the stop syncs
    synced.clear()
    await spool.close()
    assert synced == [names[2]]


async def test_a_failed_interval_sync_is_reported_and_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import os

    calls: list[int] = []
    real_fsync = os.fsync

    def flaky_fsync(fd: int) -> None:  # the disk refuses the first sync
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", flaky_fsync)  # the spool calls os.fsync
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20, fsync="interval")
    spool.recover()
    spool.start()
    spool.write(packets(2))
    await asyncio.sleep(2.3)
    assert "event=spool_sync_failed" in caplog.text
    assert len(calls) >= 2  # the next tick synced again
    await spool.close()


def big_packets(n: int, start: int = 0, size: int = 4000) -> list[Packet]:
    pad = b"y" * size
    return [
        parse_one(b'{"packetId": "b%d", "messages": [{"m": "%s"}]}' % (i, pad))
        for i in range(start, start + n)
    ]


@pytest.mark.e2e  # mounts a tmpfs
@pytest.mark.parametrize("fsync", ["always", "interval"])
async def test_a_full_disk_refuses_until_the_open_segment_is_acknowledged_then_writes_again(
    small_disk: Callable[[int], Path], fsync: str
) -> None:
    disk = small_disk(1 << 20)
    spool_dir = disk / "spool"
    # One segment larger than the disk: before this was mended it was kept open while
    # acknowledged, its blocks held, and every write refused until a restart.
    spool = Spool(spool_dir, max_bytes=64 << 20, segment_bytes=8 << 20, fsync=fsync)
    spool.recover()
    spool.start()
    held: list[Packet] = []
    with pytest.raises(OSError):
        for i in range(1000):
            batch = big_packets(1, i)
            await spool.append(batch)
            held += batch
    assert held and spool.to_json()["disk_full"] is True
    assert spool.segments  # what was written is still held: nothing acknowledged
    # While the packets are unacknowledged the disk stays full: refused again.
    with pytest.raises(OSError):
        await spool.append(big_packets(1, 5000))
    spool.ack(held)  # the analyzers took everything
    assert spool.active is None and not list(spool_dir.iterdir())
    # Ingest is back with no restart, in a fresh segment.
    await spool.append(big_packets(3, 6000))
    assert spool.to_json()["disk_full"] is False
    await spool.close()
    assert [p.id for p in Spool(spool_dir, 64 << 20, 8 << 20).recover()] == [
        "b6000",
        "b6001",
        "b6002",
    ]


@pytest.mark.e2e  # mounts a tmpfs
async def test_a_settled_open_segment_is_released_by_the_write_that_finds_the_disk_full(
    small_disk: Callable[[int], Path],
) -> None:
    disk = small_disk(1 << 20)
    spool = Spool(disk / "spool", max_bytes=64 << 20, segment_bytes=8 << 20, fsync="never")
    spool.recover()
    first = big_packets(100)
    await spool.append(first)
    spool.ack(first)  # settled, but the open segment keeps its 400 KB
    # 800 KB more do not fit beside them on a 1 MiB disk: the write that fails for space
    # releases the acknowledged segment and succeeds in a fresh one.
    rest = big_packets(200, 100)
    await spool.append(rest)
    assert spool.space_failures == 1
    await spool.close()
    recovered = Spool(disk / "spool", 64 << 20, 8 << 20).recover()
    assert [p.id for p in recovered] == [p.id for p in rest]


async def test_the_directory_is_synced_after_a_segment_is_created_or_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from logdist.distributor.storage import files as spool_module

    synced: list[Path] = []
    real = spool_module.fsync_dir

    def sync_dir(path: Path) -> None:
        synced.append(path)
        real(path)

    monkeypatch.setattr(spool_module, "fsync_dir", sync_dir)
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200, fsync="always")
    spool.recover()
    batch = packets(1)
    await spool.append(batch)  # a new segment: the directory is synced before the answer
    assert synced == [tmp_path]
    await spool.append(packets(1, 1))
    assert synced == [tmp_path]  # no new name, no directory sync
    await spool.close()
