"""A whole pipeline of real processes, and the loss accounting the e2e tests share."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.procs import Proc, Procs, get, post, wait_for


@dataclass
class Pipeline:
    procs: Procs
    weights: dict[str, float]
    analyzers: dict[str, Proc] = field(default_factory=dict)
    emitters: dict[str, Proc] = field(default_factory=dict)
    distributor: Proc | None = None
    token: str | None = None
    analyzer_args: dict[str, list[str]] = field(default_factory=dict)
    distributor_argv: list[str] = field(default_factory=list)

    def output(self, aid: str) -> Path:
        return self.procs.workdir / f"{aid}.ndjson"

    def start_analyzer(self, aid: str, port: int = 0) -> Proc:
        """Start (or restart, given its old port) analyzer `aid`, appending to its output file."""
        self.analyzers[aid] = self.procs.start(
            aid,
            "analyzer",
            "serve",
            "--id",
            aid,
            "--port",
            str(port),
            "--output",
            str(self.output(aid)),
            *self.analyzer_args.get(aid, []),
        )
        return self.analyzers[aid]

    def start(self, emitters: dict[str, str], rate: float, *distributor_args: str) -> None:
        for aid in self.weights:
            self.start_analyzer(aid)
        refs = [f"{aid}={self.analyzers[aid].url}/ingest@{w}" for aid, w in self.weights.items()]
        self.distributor_argv = [
            "distributor",
            "serve",
            *[arg for ref in refs for arg in ("--analyzer", ref)],
            "--health-interval",
            "0.2",
            "--health-timeout",
            "0.5",
            "--rise",
            "2",
            "--fall",
            "2",
            *distributor_args,
        ]
        self.start_distributor(0)
        wait_for(lambda: all(a["health"] == "up" for a in self.registry()), 10, "analyzers up")
        for eid, messages in emitters.items():
            self.emitters[eid] = self.procs.start(
                eid,
                "emitter",
                "start",
                "--id",
                eid,
                "--distributor",
                self.url,
                "--rate",
                str(rate),
                "--messages",
                messages,
            )

    def start_distributor(self, port: int) -> Proc:
        """Start (or restart on its old port, with the same flags) the distributor."""
        self.distributor = self.procs.start(
            "distributor", *self.distributor_argv, "--port", str(port)
        )
        return self.distributor

    @property
    def url(self) -> str:
        assert self.distributor is not None
        return self.distributor.url

    def registry(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = get(f"{self.url}/registry", self.token)
        return rows

    def health(self, aid: str) -> str:
        return next(str(a["health"]) for a in self.registry() if a["id"] == aid)

    def stats(self, aid: str) -> dict[str, Any]:
        stats: dict[str, Any] = get(f"{self.analyzers[aid].url}/stats")
        return stats

    def messages(self, *aids: str) -> dict[str, int]:
        return {aid: int(self.stats(aid)["messages"]) for aid in aids or self.analyzers}

    def wait_messages(
        self, aids: tuple[str, ...], at_least: int, timeout: float = 60
    ) -> dict[str, int]:
        def enough() -> dict[str, int] | None:
            counts = self.messages(*aids)
            return counts if sum(counts.values()) >= at_least else None

        result: dict[str, int] = wait_for(enough, timeout, f"{at_least} messages at {aids}", 0.1)
        return result

    def quiesce(self, timeout: float = 60) -> None:
        """Stop generating, let the emitters' buffers and the distributor's queue drain."""
        for eid in self.emitters:
            post(f"{self.url}/emitter/{eid}/rate", {"rps": 0})

        def drained() -> bool:
            buffers = [get(f"{self.url}/emitter/{eid}/metrics") for eid in self.emitters]
            if any(m["buffer_len"] or m["in_flight"] for m in buffers):
                return False
            return bool(get(f"{self.url}/status")["queue"]["unacked"] == 0)

        wait_for(drained, timeout, "emitters and distributor to drain", 0.1)

    def accounting(self) -> dict[str, Any]:
        """What the emitters had acknowledged against what reached the analyzers' files."""
        sent: set[str] = set()
        for proc in self.emitters.values():
            body = get(f"{proc.url}/sent?ids=1")
            assert not body["ids_truncated"]
            sent.update(body["ids"])
        received: list[str] = []
        messages: dict[str, int] = {}
        torn = 0
        for aid in self.weights:
            path = self.output(aid)
            lines = path.read_bytes().splitlines() if path.exists() else []
            packets = []
            for line in lines:
                try:
                    packets.append(json.loads(line))
                except json.JSONDecodeError:
                    # Cut short by a kill before the packet was acknowledged: it was sent
                    # again, and counts where a whole line of it is.
                    torn += 1
            received += [p["packetId"] for p in packets]
            messages[aid] = sum(len(p["messages"]) for p in packets)
        unique = set(received)
        return {
            "sent": len(sent),
            "delivered_unique": len(unique & sent),
            "duplicates": len(received) - len(unique),
            "lost": len(sent - unique),
            "messages": messages,
            "torn_lines": torn,
        }


def elapsed(since: float) -> float:
    return round(time.monotonic() - since, 3)
