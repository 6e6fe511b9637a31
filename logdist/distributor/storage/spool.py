"""The durable spool: a segmented write-ahead log of accepted packets.

Every accepted packet is appended before the 202 goes out. A segment file is deleted once
every packet in it was acknowledged by an analyzer (and it is no longer being written). On
start, the packets of the segments left are replayed in order; acknowledgements are not
logged, so a packet delivered just before a crash can be delivered again (analyzers dedupe).

fsync: `always` syncs before answering (concurrent requests share one fsync), `interval`
syncs once a second, `never` leaves it to the OS. A killed process loses nothing in any mode
(the data is in the page cache); a power cut can lose what was not yet synced. With
`interval`, a full segment is synced at the next tick, not as it is closed, and not at all
if every packet in it was acknowledged by then (most, under bulk load): it is deleted. The
directory itself is synced after a segment is created or deleted (`always` before the
answer, `interval` at the next tick), so a synced segment is also found after a power cut.

A full disk: a write that fails is refused (503 `spool_failure`; the client retries) and
nothing of it counts. A fully acknowledged open segment is then deleted and a fresh one
started, so ingest comes back by itself once the analyzers drained what the disk holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from logdist.core import wal
from logdist.distributor.storage import files
from logdist.distributor.storage.files import FSYNC_MODES
from logdist.errors import Backpressure, ConfigError, LogdistError
from logdist.events import event
from logdist.formats.packet import Packet, parse_stored, total

log = logging.getLogger("logdist.spool")

SEGMENT_NAME = re.compile(r"^seg-(\d{12})\.wal$")
# Pieces a writev call takes at most (IOV_MAX is 1024 on Linux).
IOV_PIECES = 1024


@dataclass
class Segment:
    number: int
    path: Path
    records: int = 0
    acked: int = 0
    bytes: int = 0
    fd: int | None = None
    # The open segment's file is sized to `capacity` up front (sparse: the disk holds only
    # what is written), so a write inside it does not change the file's size: no journalled
    # inode update per record. `bytes` are written.
    capacity: int = 0

    @property
    def settled(self) -> bool:
        return self.acked >= self.records


def _close(fd: int, size: int, sync: bool) -> None:
    """Cut a segment's unused tail, sync it (when asked) and close it."""
    try:
        os.ftruncate(fd, size)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    def __init__(
        self,
        directory: str | Path,
        max_bytes: int,
        segment_bytes: int,
        fsync: str = "interval",
        retry_after: float = 1.0,
    ) -> None:
        if fsync not in FSYNC_MODES:
            raise ConfigError(f"fsync must be one of {', '.join(FSYNC_MODES)}, got {fsync!r}")
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.retry_after = retry_after
        self.segments: dict[int, Segment] = {}
        self.active: Segment | None = None
        self.bytes = 0
        self.corrupt_records = 0
        self._next_sync: asyncio.Future[None] | None = None
        self._syncing = False
        self._dirty = False
        self._interval_task: asyncio.Task[None] | None = None
        # Segments handed to a thread to be synced and closed.
        self._closing: set[asyncio.Future[None]] = set()
        # With fsync=interval: segments closed since the last tick, not yet synced.
        self._unsynced: set[int] = set()
        # A segment was created or deleted since the directory was last synced.
        self._dir_dirty = False
        # The last write failed for space: release the open segment as soon as it settles.
        self.short_of_space = False
        self.space_failures = 0

    # -- start and replay -----------------------------------------------------------------

    def recover(self) -> list[Packet]:
        """Read what the last run left, in order; report and cut off any torn or corrupt tail."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"spool dir {self.dir}: {exc.strerror}") from None
        packets: list[Packet] = []
        for path in sorted(self.dir.iterdir()):
            match = SEGMENT_NAME.match(path.name)
            if match:
                packets += self._recover_segment(path, int(match.group(1)))
        event(
            log,
            "spool_recovered",
            dir=self.dir,
            segments=len(self.segments),
            packets=total(packets),
            bytes=self.bytes,
            corrupt_segments=self.corrupt_records,
        )
        return packets

    def _recover_segment(self, path: Path, number: int) -> list[Packet]:
        """One segment's packets; the segment kept if it holds any, else deleted."""
        data = path.read_bytes()
        decoded = wal.decode(data)
        segment = Segment(number, path, bytes=decoded.good_bytes)
        self._cut_tail(path, data, decoded)
        packets: list[Packet] = []
        for payload in decoded.records:
            try:
                items = parse_stored(payload)
            except LogdistError as exc:
                event(
                    log,
                    "spool_unreadable_record",
                    logging.ERROR,
                    segment=path.name,
                    error=exc.message,
                )
                continue
            for packet in items:
                packet.segment = segment.number
                packets.append(packet)
                segment.records += packet.count
        self.bytes += segment.bytes
        if segment.records:
            self.segments[segment.number] = segment
        else:
            path.unlink()
        return packets

    def _cut_tail(self, path: Path, data: bytes, decoded: wal.Decoded) -> None:
        """Truncate what follows a segment's last good record: the zero tail of one that was
        open when the process stopped, or (reported) a torn or corrupt tail."""
        if decoded.problem is None:
            if len(data) > decoded.good_bytes:
                with open(path, "r+b") as f:
                    f.truncate(decoded.good_bytes)
            return
        self.corrupt_records += 1
        event(
            log,
            "spool_corrupt",
            logging.ERROR,
            segment=path.name,
            problem=decoded.problem,
            kept_records=len(decoded.records),
            cut_bytes=len(data) - decoded.good_bytes,
        )
        with open(path, "r+b") as f:
            f.truncate(max(decoded.good_bytes, len(wal.MAGIC)) if wal.is_segment(data) else 0)

    def start(self) -> None:
        if self.fsync == "interval":
            self._interval_task = asyncio.get_running_loop().create_task(self._sync_every_second())

    async def close(self) -> None:
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
            self._closing.clear()
        closed = self._take_unsynced()
        if closed:  # what is left for the next start is on disk when this one has stopped
            await asyncio.get_running_loop().run_in_executor(None, files.fsync_paths, closed)
        if self._interval_task is not None:
            self._interval_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._interval_task
        active = self.active
        if active is not None and active.fd is not None:
            _close(active.fd, active.bytes, self.fsync != "never")
            active.fd = None
            if active.settled:
                self._drop(active)
        with contextlib.suppress(OSError):
            await self._sync_dir_if_dirty()

    # -- append and acknowledge -----------------------------------------------------------

    def check_room(self, size: int) -> None:
        if self.bytes + size > self.max_bytes:
            raise Backpressure(
                f"spool full ({self.bytes} of {self.max_bytes} bytes); keep the packets and retry",
                retry_after=self.retry_after,
                detail={"spool_bytes": self.bytes, "spool_max_bytes": self.max_bytes},
            )

    async def append(self, packets: list[Packet]) -> None:
        """Write `packets` to the log; with fsync=always, return once they are on disk."""
        self.write(packets)
        if self.fsync == "always":
            await self.sync()

    def write(self, packets: list[Packet]) -> None:
        """Append `packets` to the active segment (to the OS; `sync` makes it durable).

        A write that fails for space is tried once more in a fresh segment when the open one
        holds nothing unacknowledged; else the error is raised.
        """
        try:
            self._append(packets)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self.space_failures += 1
            if not self.short_of_space:
                event(log, "spool_disk_full", logging.ERROR, dir=self.dir, error=exc)
            self.short_of_space = True
            if not self._release_settled():
                raise
            self._append(packets)
        if self.short_of_space:
            self.short_of_space = False
            event(log, "spool_disk_space_back", dir=self.dir)

    def _append(self, packets: list[Packet]) -> None:
        pieces: list[bytes] = []
        for p in packets:
            pieces += (wal.header(p.body), p.body)
        size = sum(map(len, pieces))
        if self.bytes + size > self.max_bytes:
            self.check_room(size)
        segment = self.active
        if segment is None or segment.bytes + size > segment.capacity:
            segment = self._new_segment(size)
        assert segment.fd is not None
        offset = segment.bytes
        if len(pieces) <= IOV_PIECES:
            self._write(segment.fd, pieces, size, offset)
        else:
            for start in range(0, len(pieces), IOV_PIECES):
                part = pieces[start : start + IOV_PIECES]
                offset = self._write(segment.fd, part, sum(map(len, part)), offset)
        number = segment.number
        for p in packets:
            p.segment = number
        # Packets, not records: a run is one record of several packets, and its packets may
        # be acknowledged one by one (split for an analyzer that takes one at a time).
        segment.records += total(packets)
        segment.bytes += size
        self.bytes += size
        self._dirty = True

    @staticmethod
    def _write(fd: int, pieces: list[bytes], size: int, offset: int) -> int:
        """Write `pieces` (`size` bytes) at `offset`; the offset after them."""
        written = os.pwritev(fd, pieces, offset)
        if written < size:  # a short write (rare on a file): the rest the plain way
            view = memoryview(b"".join(pieces))[written:]
            while view:
                view = view[os.pwrite(fd, view, offset + size - len(view)) :]
        return offset + size

    def split(self, packet: Packet, parts: int) -> None:
        """`packet` is now `parts` packets of its segment (replayed whole until all are acked)."""
        if (segment := self.segments.get(packet.segment)) is not None:
            segment.records += parts - 1

    def ack(self, packets: list[Packet]) -> None:
        segments = self.segments
        number = packets[0].segment if packets else -1
        if all(p.segment == number for p in packets):  # the usual batch: one segment
            self._acked(segments.get(number), total(packets))
            return
        for p in packets:
            self._acked(segments.get(p.segment), p.count)

    def _acked(self, segment: Segment | None, count: int) -> None:
        if segment is None:
            return
        segment.acked += count
        if segment.settled:
            if segment is not self.active:
                self._drop(segment)
            elif self.short_of_space:
                self._release_settled()

    def _release_settled(self) -> bool:
        """Close and delete the open segment if every packet in it is acknowledged: the disk
        space it holds comes back, and the next write starts a fresh segment."""
        active = self.active
        if active is None or not active.settled:
            return active is None
        if active.fd is not None:
            with contextlib.suppress(OSError):
                os.close(active.fd)
            active.fd = None
        self.active = None
        self._drop(active)
        event(log, "spool_segment_released", segment=active.path.name)
        return True

    def _new_segment(self, size: int) -> Segment:
        """Close the active segment (`size` more bytes do not fit it) and open one they fit."""
        active = self.active
        if active is not None:
            assert active.fd is not None
            # Synced and closed in a thread: an 8 MiB fsync would stall every request. With
            # fsync=interval the next tick syncs it, if it is still needed then.
            sync = self.fsync == "always"
            if self.fsync == "interval":
                self._unsynced.add(active.number)
            done = asyncio.get_running_loop().run_in_executor(
                None, _close, active.fd, active.bytes, sync
            )
            self._closing.add(done)
            done.add_done_callback(self._closed)
            active.fd = None
            self.active = None
            if active.settled:
                self._drop(active)
        number = max(self.segments, default=0) + 1
        path = self.dir / f"seg-{number:012d}.wal"
        capacity = max(self.segment_bytes, len(wal.MAGIC) + size)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.ftruncate(fd, capacity)
            os.pwrite(fd, wal.MAGIC, 0)
        except OSError:
            os.close(fd)
            path.unlink()
            raise
        segment = Segment(number, path, bytes=len(wal.MAGIC), fd=fd, capacity=capacity)
        self._dir_dirty = True
        self.bytes += segment.bytes
        self.segments[number] = segment
        self.active = segment
        return segment

    def _closed(self, done: asyncio.Future[None]) -> None:
        self._closing.discard(done)
        if not done.cancelled() and done.exception() is not None:
            event(log, "spool_sync_failed", logging.ERROR, error=done.exception())

    def _drop(self, segment: Segment) -> None:
        self.segments.pop(segment.number, None)
        self.bytes -= segment.bytes
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
            self._dir_dirty = True

    # -- fsync ----------------------------------------------------------------------------

    async def sync(self) -> None:
        """Wait for an fsync that starts after this call: one fsync serves every waiter."""
        loop = asyncio.get_running_loop()
        if self._next_sync is None:
            self._next_sync = loop.create_future()
            if not self._syncing:
                loop.create_task(self._run_syncs())
        await asyncio.shield(self._next_sync)

    async def _run_syncs(self) -> None:
        loop = asyncio.get_running_loop()
        self._syncing = True
        try:
            while self._next_sync is not None:
                waiters, self._next_sync = self._next_sync, None
                fd = self.active.fd if self.active is not None else None
                try:
                    if fd is not None:
                        await loop.run_in_executor(None, os.fsync, fd)
                    await self._sync_dir_if_dirty()
                    if self._closing:  # segments closed meanwhile are synced as they close
                        for closed in asyncio.as_completed(list(self._closing)):
                            await closed
                except OSError as exc:
                    waiters.set_exception(exc)
                else:
                    waiters.set_result(None)
        finally:
            self._syncing = False

    async def _sync_dir_if_dirty(self) -> None:
        if self._dir_dirty and self.fsync != "never":
            self._dir_dirty = False
            try:
                await asyncio.get_running_loop().run_in_executor(None, files.fsync_dir, self.dir)
            except OSError:
                self._dir_dirty = True
                raise

    def _take_unsynced(self) -> list[Path]:
        """The closed segments still to sync (those deleted meanwhile need none)."""
        closed = [self.segments[n].path for n in self._unsynced if n in self.segments]
        self._unsynced.clear()
        return closed

    async def _sync_every_second(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            closed = self._take_unsynced()
            if closed:
                try:
                    await loop.run_in_executor(None, files.fsync_paths, closed)
                except OSError as exc:
                    event(log, "spool_sync_failed", logging.ERROR, error=exc)
            if self._dirty and self.active is not None and self.active.fd is not None:
                self._dirty = False
                try:
                    await self.sync()
                except OSError as exc:  # said, and tried again at the next tick
                    self._dirty = True
                    event(log, "spool_sync_failed", logging.ERROR, error=exc)
            else:
                try:
                    await self._sync_dir_if_dirty()
                except OSError as exc:
                    event(log, "spool_sync_failed", logging.ERROR, error=exc)

    def to_json(self) -> dict[str, object]:
        return {
            "dir": str(self.dir),
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
            "segments": len(self.segments),
            "fsync": self.fsync,
            "disk_full": self.short_of_space,
            "disk_full_writes": self.space_failures,
        }
