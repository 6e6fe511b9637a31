"""Fair admission in cluster mode: the shared stream is the queue every replica fills.

While the stream is more than half way to the budget, each emitter's packets are published
on a subject of their own, so the stream can say what each holds: its message count per
subject, read from the servers (`read`) every `READ_UNDER_PRESSURE` seconds. (Before, every
packet goes on one shared subject, grouped: the fair shares divide the room less what that
holds.) Between readings a replica adds what it published itself. While the stream's bytes stay
within the budget (`fair_share_above` of its `max_bytes`) everyone is admitted. Past it, an
emitter that holds some is admitted only within its max-min share (`core.fairness`) of what
the stream can hold less a quarter of the room past the budget (kept for the emitters under
their share), in bytes; else 429 with Retry-After. The servers count messages per subject;
a replica knows the sizes of the messages it published itself, and takes the others' to be
of the mean size of what is left. So a burst stops short of filling the stream, and the
quiet emitters' packets still go in; only a full stream is a 503 for all.

Across replicas this is one fairness, not one per replica: every replica reads the same
counts. It is as exact as the last reading plus what this replica published since; what the
other replicas published since is seen at the next reading.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from logdist.core.fairness import Snapshot
from logdist.distributor.routing.shares import one_emitter_each
from logdist.errors import Backpressure, Throttled
from logdist.formats.packet import Packet

# Seconds between readings of the stream while it is filling (past FILLING of its size, or
# half the budget: with the per-emitter counts).
READ_UNDER_PRESSURE = 0.25
FILLING = 0.25
# The servers' stream is made larger than `max_bytes` by this part of it (at least
# SLACK_MIN bytes), and logdist refuses past `max_bytes` itself (`check_room`): a full
# stream's servers can take a message past its max_bytes and then drop its oldest messages
# to make room, DiscardPolicy.NEW notwithstanding (nats-io/nats-server#4771 and #4775). Seen
# here with Debian's nats-server 2.9.10: 28 acknowledged messages of a full stream dropped.
SLACK = 0.125
SLACK_MIN = 2 << 20


def server_max_bytes(max_bytes: int) -> int:
    """The max_bytes the servers' stream is made with, for logdist's `max_bytes`."""
    return max_bytes + max(int(max_bytes * SLACK), SLACK_MIN)


class StreamShares:
    def __init__(
        self,
        above: float,
        max_bytes: int,
        retry_after: float,
        subject_of: Callable[[Packet], tuple[str, str | None]],
        refused: Callable[..., None],
        shared: str = "",
    ) -> None:
        self.above = above  # 0: fairness off
        self.max_bytes = max_bytes
        self.retry_after = retry_after
        self._subject_of = subject_of  # a packet's subject and emitter
        self._refused = refused  # counts a 429 for an emitter (Shares.refused)
        self.shared = shared  # the subject every emitter's packets go on while it is calm
        self.unattributed = 0  # bytes on it, at the last reading
        self.messages = 0  # in the stream, at the last reading
        self.bytes = 0
        self.counts: dict[str, int] = {}  # subject -> its messages, at the last reading
        # subject -> the mean size of the messages this replica published on it (EWMA)
        self.sizes: dict[str, float] = {}
        self.other_size = 0.0  # the mean size of the others' messages, at the last reading
        self.since: Counter[str] = Counter()  # bytes this replica published since, by subject
        self.since_bytes = 0
        # While in force: the holdings at the last reading (bytes), what their shares divide
        # and the fair share.
        self.snapshot: Snapshot | None = None
        self.room = 0
        self.level: int | None = None
        self.read_holding: dict[str, int] = {}

    def pressure(self) -> float:
        """How full the stream is (of its max_bytes), with what this replica published since
        the last reading."""
        return (self.bytes + self.since_bytes) / self.max_bytes

    def filling(self) -> bool:
        """Whether to read the stream often (the room is reckoned from the readings)."""
        return self.pressure() >= FILLING

    def check_room(self, packets: list[Packet]) -> None:
        """Raise Backpressure (503) if `packets` would take the stream past its max_bytes, by
        the last reading and what this replica published since."""
        size = sum(len(p.body) for p in packets)
        if self.bytes + self.since_bytes + size > self.max_bytes:
            raise Backpressure(
                f"the cluster's stream is full ({self.bytes + self.since_bytes} of"
                f" {self.max_bytes} bytes); retry later",
                retry_after=self.retry_after,
            )

    def wants_counts(self) -> bool:
        """Whether the next reading should bring the per-emitter counts."""
        return bool(self.above) and self.pressure() >= self.above / 2

    def published(self, subject: str, nbytes: int) -> None:
        self.since[subject] += nbytes
        self.since_bytes += nbytes
        mean = self.sizes.get(subject)
        self.sizes[subject] = nbytes if mean is None else mean + (nbytes - mean) / 8

    def holding(self, subject: str) -> float:
        """The bytes `subject` holds in the stream: its messages at the last reading at their
        mean size (this replica's, else the others' mean), and what this replica published
        on it since."""
        count = self.counts.get(subject, 0)
        return count * self.sizes.get(subject, self.other_size) + self.since[subject]

    def read(
        self, messages: int, nbytes: int, counts: dict[str, int] | None, shared: int = 0
    ) -> None:
        """The stream's figures now: its messages and bytes, and when asked for
        (`wants_counts`) the messages on each emitter's subject and on the shared one."""
        self.messages, self.bytes = messages, nbytes
        self.since.clear()
        self.since_bytes = 0
        if counts is None:
            self.counts, self.snapshot, self.level = {}, None, None
            return
        self.counts = counts
        if len(self.sizes) > 2 * len(counts) + 1_000:  # forget the emitters gone quiet
            self.sizes = {s: m for s, m in self.sizes.items() if s in counts or s == self.shared}
        # The messages of the subjects this replica did not publish on (and of the shared
        # one, unless it did) have the rest of the bytes, at one mean size.
        known = [(c, self.sizes[s]) for s, c in counts.items() if s in self.sizes]
        others = messages - sum(c for c, _ in known)
        rest = nbytes - sum(c * m for c, m in known)
        self.other_size = max(0.0, rest / others) if others > 0 else 0.0
        self.unattributed = int(shared * self.sizes.get(self.shared, self.other_size))
        if others > shared and self.shared in self.sizes:
            self.other_size = max(0.0, (rest - self.unattributed) / (others - shared))
        budget = self.max_bytes * self.above
        if nbytes <= budget:
            self.snapshot, self.level = None, None
            return
        # What the emitters' shares divide: the room, less what the shared subject holds
        # (packets published before the stream filled, whoever's they are).
        room = budget + (self.max_bytes - budget) * 0.75
        self.room = max(0, int(room) - self.unattributed)
        self.read_holding = {s: int(self.holding(s)) for s in counts}
        self.snapshot = Snapshot(self.read_holding.values())
        self.level = self.snapshot.level(self.room)

    def check(self, packets: list[Packet]) -> None:
        """Raise Throttled if an emitter of `packets` holds more than its fair share of the
        stream (and some of it): nothing is refused while the stream is within the budget."""
        snapshot = self.snapshot
        if snapshot is None or not self.above or self.pressure() <= self.above:
            return
        adding: dict[str, tuple[str | None, int]] = {}
        # A run of several emitters' packets: each for its own (as they are published).
        for p in one_emitter_each(packets):
            subject, emitter = self._subject_of(p)
            size = adding[subject][1] if subject in adding else 0
            adding[subject] = (emitter, size + len(p.body))
        for subject, (emitter, size) in adding.items():
            holding = int(self.holding(subject))
            # What it adds: its packets, or as large as its messages are stored (deflated).
            size = min(size, int(self.sizes.get(subject, size)))
            held = self.read_holding.get(subject, 0)
            if not snapshot.within(held, holding, size, self.room):
                level = self.level
                self._refused(emitter, holding=holding, fair_share=level, stream=True)
                raise Throttled(
                    f"emitter {emitter!r} holds more than its fair share of the cluster's"
                    f" stream ({holding} bytes, fair share {level}) while others send;"
                    " keep the packets and retry",
                    retry_after=self.retry_after,
                    detail={"emitter": emitter, "holding": holding, "fair_share": level},
                )

    def to_json(self) -> dict[str, Any]:
        active = bool(self.above) and self.pressure() > self.above
        return {
            "pressure": round(self.pressure(), 4),
            "messages": self.messages,
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
            "budget": int(self.max_bytes * self.above) if self.above else None,
            "fair_share": self.level if active else None,  # bytes
            "emitters_holding": len(self.counts),
        }
