"""Dead letters: packets that several analyzers refused, kept until an operator acts.

A packet refused (a 4xx other than 408/429) by `max_refusals` different analyzers, or by
every eligible one if there are fewer, is not retried for ever: it is written here, counted
and logged, and leaves the queue (and the spool). `logdist ctl dead-letters` lists, shows,
replays (after the analyzers were fixed) and purges them.

On disk it is one NDJSON file, `DIR/dead-letters.ndjson`, a record a line: the packet's
bytes as received under `packet`, and each refusal's analyzer, status and the first bytes of
its answer. New records are appended; a replay or purge rewrites the file (write, fsync,
rename). Appends are synced as the spool's are (`fsync`: always at once, interval at the
next tick, never by the OS). Without a directory the store is in memory, and lost with the
process like the queue it came from. Either way it is bounded: once it holds `max_bytes`,
ingest answers 503.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from logdist.distributor.storage.files import Journal, replace_file
from logdist.errors import ConfigError, DeadLetterWriteFailed, UnknownDeadLetter
from logdist.events import event
from logdist.formats.packet import Packet, Refusal, parse_stored

log = logging.getLogger("logdist.deadletters")

FILE_NAME = "dead-letters.ndjson"


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


@dataclass(slots=True)
class DeadLetter:
    id: str
    emitter: str | None
    messages: int
    packet: bytes
    refusals: list[Refusal]
    time: float

    def summary(self) -> dict[str, Any]:
        last = self.refusals[-1] if self.refusals else None
        return {
            "id": self.id,
            "emitter": self.emitter,
            "messages": self.messages,
            "bytes": len(self.packet),
            "time": _utc(self.time),
            "refusals": len(self.refusals),
            "analyzers": sorted({r.analyzer for r in self.refusals}),
            "last_status": last.status if last else None,
            "last_answer": last.answer if last else None,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "emitter": self.emitter,
            "messages": self.messages,
            "time": _utc(self.time),
            "refusals": [
                {"analyzer": r.analyzer, "status": r.status, "answer": r.answer}
                for r in self.refusals
            ],
            "packet": orjson.Fragment(self.packet),
        }

    def record(self) -> bytes:
        data = self.to_json()
        data["ts"] = self.time
        return orjson.dumps(data) + b"\n"

    @classmethod
    def from_record(cls, line: bytes) -> DeadLetter:
        data = orjson.loads(line)
        packet = orjson.dumps(data["packet"])
        return cls(
            id=data["id"],
            emitter=data.get("emitter"),
            messages=int(data["messages"]),
            packet=packet,
            refusals=[
                Refusal(r["analyzer"], int(r["status"]), r["answer"]) for r in data["refusals"]
            ],
            time=float(data["ts"]),
        )


class DeadLetterStore:
    def __init__(
        self, directory: str | Path | None, max_bytes: int, fsync: str = "interval"
    ) -> None:
        self.dir = Path(directory) if directory is not None else None
        self.path = self.dir / FILE_NAME if self.dir is not None else None
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.letters: dict[str, DeadLetter] = {}
        self.bytes = 0
        # Dead letters made since start (replayed or purged ones included).
        self.total = 0
        self._journal = Journal(self.path, fsync) if self.path is not None else None

    # -- start ----------------------------------------------------------------------------

    def load(self) -> None:
        """Read what an earlier run left; a line torn by a kill is skipped and reported."""
        if self.dir is None or self.path is None:
            return
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            raw = self.path.read_bytes() if self.path.exists() else b""
        except OSError as exc:
            raise ConfigError(f"dead-letter dir {self.dir}: {exc.strerror}") from None
        torn = 0
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                letter = DeadLetter.from_record(line)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                torn += 1
                continue
            self._keep(letter)
        if torn:
            event(log, "dead_letters_torn", logging.WARNING, path=self.path, lines=torn)
            self._rewrite()
        if self.letters:
            event(log, "dead_letters_loaded", path=self.path, count=len(self.letters))

    # -- writing --------------------------------------------------------------------------

    @property
    def full(self) -> bool:
        return self.bytes >= self.max_bytes

    def add(self, packet: Packet, now: float | None = None) -> DeadLetter:
        """Keep `packet` (one packet, not a run) as a dead letter; OSError if it cannot be
        written (the caller keeps the packet)."""
        letter = DeadLetter(
            id=packet.id,
            emitter=packet.emitter,
            messages=packet.messages,
            packet=packet.body,
            refusals=list(packet.refusals or ()),
            time=time.time() if now is None else now,
        )
        old = self.letters.get(letter.id)
        if old is not None:
            # The same packet again (an emitter resent it): one dead letter, all its refusals.
            letter.refusals = old.refusals + letter.refusals
        if self.path is not None:
            record = letter.record()
            if old is not None:
                self._forget(old)
                self._keep(letter)
                self._rewrite()
            else:
                self._append(record)
                self._keep(letter)
        else:
            if old is not None:
                self._forget(old)
            self._keep(letter)
        self.total += 1
        return letter

    def _append(self, record: bytes) -> None:
        assert self._journal is not None
        self._journal.append(record)

    def sync(self) -> None:
        """With fsync = interval: sync what was appended since the last tick."""
        if self._journal is not None:
            self._journal.sync()

    def _keep(self, letter: DeadLetter) -> None:
        self.letters[letter.id] = letter
        self.bytes += len(letter.packet)

    def _forget(self, letter: DeadLetter) -> None:
        del self.letters[letter.id]
        self.bytes -= len(letter.packet)

    def _rewrite(self) -> None:
        """Replace the file with what is kept now."""
        if self._journal is None or self.path is None:
            return
        self._journal.close()
        replace_file(self.path, b"".join(letter.record() for letter in self.letters.values()))

    # -- reading and acting ---------------------------------------------------------------

    def get(self, letter_id: str) -> DeadLetter:
        letter = self.letters.get(letter_id)
        if letter is None:
            raise UnknownDeadLetter(f"no dead letter {letter_id!r}")
        return letter

    def select(self, ids: list[str] | None) -> list[DeadLetter]:
        """The dead letters named (all when `ids` is None), oldest first; an unknown id is a 404."""
        if ids is None:
            return list(self.letters.values())
        return [self.get(i) for i in dict.fromkeys(ids)]

    def remove(self, letters: list[DeadLetter]) -> None:
        """Let `letters` go (replayed into the queue, or purged)."""
        if not letters:
            return
        for letter in letters:
            if letter.id in self.letters:
                self._forget(letter)
        try:
            self._rewrite()
        except OSError as exc:
            # They are gone from memory but still on disk: a restart would bring them back.
            raise DeadLetterWriteFailed(
                f"the dead-letter file could not be rewritten ({exc.strerror})"
            ) from None

    @staticmethod
    def packets(letters: list[DeadLetter]) -> list[Packet]:
        """The letters as packets again, with no refusals: a fresh chance everywhere."""
        return [p for letter in letters for p in parse_stored(letter.packet)]

    def to_json(self) -> dict[str, Any]:
        return {
            "count": len(self.letters),
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
            "full": self.full,
            "total": self.total,
            "path": str(self.path) if self.path is not None else None,
        }

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
