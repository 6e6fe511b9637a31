"""`GET /metrics` in Prometheus exposition format.

Counters are kept as plain integers on the hot path and read by a collector at scrape time,
so a packet costs no metric locks; only the forward latency is a real histogram, observed
once per forwarding request.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from logdist.core.registry import Health, Registry
from logdist.distributor.control.cluster import Cluster
from logdist.distributor.observe.counters import Counters
from logdist.distributor.observe.meter import SECTIONS, ControlMeter
from logdist.distributor.routing.dispatcher import Dispatcher
from logdist.distributor.storage.deadletters import DeadLetterStore
from logdist.net.tls import ServerTls


@dataclass(frozen=True)
class Sources:
    """What the collector reads at scrape time."""

    counters: Counters
    control: ControlMeter
    registry: Registry
    dispatcher: Dispatcher
    dead_letters: DeadLetterStore
    queue_capacity: int
    cluster: Cluster | None
    tls: ServerTls | None = None


class DistributorCollector(Collector):
    def __init__(self, sources: Sources) -> None:
        self.s = sources

    def collect(self) -> Iterator[Metric]:
        yield from self._received()
        yield from self._control()
        yield from self._delivered()
        yield from self._refused()
        yield from self._queue()
        yield from self._analyzers()
        if self.s.cluster is not None:
            yield from cluster_metrics(self.s.cluster.summary())
        if self.s.tls is not None:
            yield from tls_metrics(self.s.tls)

    def _received(self) -> Iterator[Metric]:
        c = self.s.counters
        inputs = c.by_input()
        received_p = CounterMetricFamily(
            "logdist_received_packets", "Packets accepted, by input.", labels=["input"]
        )
        received_m = CounterMetricFamily(
            "logdist_received_messages", "Messages accepted, by input.", labels=["input"]
        )
        for name, counts in inputs.items():
            received_p.add_metric([name], counts.packets)
            received_m.add_metric([name], counts.messages)
        yield from (received_p, received_m)
        yield CounterMetricFamily(
            "logdist_retries",
            "Packets handed back for another try after a failed forward.",
            c.retries,
        )
        rejected = CounterMetricFamily(
            "logdist_rejected",
            "Ingest requests refused, by input and reason.",
            labels=["input", "reason"],
        )
        for name, counts in inputs.items():
            for reason, count in sorted(counts.rejected.items()):
                rejected.add_metric([name, reason], count)
        yield rejected

    def _control(self) -> Iterator[Metric]:
        control = CounterMetricFamily(
            "logdist_control_plane_seconds",
            "CPU seconds spent on registrations, leases and views, by section (and `tally`:"
            " counting accepted packets by emitter, part of ingest).",
            labels=["section"],
        )
        for section in (*SECTIONS, "tally"):
            control.add_metric([section], getattr(self.s.control, section))
        yield control

    def _delivered(self) -> Iterator[Metric]:
        c = self.s.counters
        delivered_p = CounterMetricFamily(
            "logdist_delivered_packets", "Packets acknowledged by an analyzer.", labels=["analyzer"]
        )
        delivered_m = CounterMetricFamily(
            "logdist_delivered_messages",
            "Messages acknowledged by an analyzer.",
            labels=["analyzer"],
        )
        failures = CounterMetricFamily(
            "logdist_forward_failures", "Failed forwarding requests.", labels=["analyzer"]
        )
        for aid, stats in sorted(c.analyzers.items()):
            delivered_p.add_metric([aid], stats.packets)
            delivered_m.add_metric([aid], stats.messages)
            failures.add_metric([aid], stats.failures)
        yield from (delivered_p, delivered_m, failures)

    def _refused(self) -> Iterator[Metric]:
        c = self.s.counters
        refused = CounterMetricFamily(
            "logdist_refused_packets",
            "Packets an analyzer refused (a 4xx other than 408/429), by analyzer and status.",
            labels=["analyzer", "status"],
        )
        for (aid, code), count in sorted(c.refused.items()):
            refused.add_metric([aid, str(code)], count)
        dead = CounterMetricFamily(
            "logdist_dead_letters",
            "Packets kept as dead letters, by the analyzer and status of their last refusal.",
            labels=["analyzer", "status"],
        )
        for (aid, code), count in sorted(c.dead_letters.items()):
            dead.add_metric([aid, str(code)], count)
        yield from (refused, dead)
        yield from throttled_metrics(self.s.dispatcher.shares.throttled)
        store = self.s.dead_letters
        yield GaugeMetricFamily(
            "logdist_dead_letters_kept", "Dead letters kept now.", len(store.letters)
        )
        yield GaugeMetricFamily(
            "logdist_dead_letters_bytes", "Bytes of the dead letters kept now.", store.bytes
        )

    def _queue(self) -> Iterator[Metric]:
        q = self.s.dispatcher
        yield GaugeMetricFamily("logdist_queue_depth", "Packets waiting for an analyzer.", q.queued)
        yield GaugeMetricFamily(
            "logdist_queue_capacity", "Queue capacity in packets.", self.s.queue_capacity
        )
        yield GaugeMetricFamily(
            "logdist_unacked_packets", "Packets accepted and not yet acknowledged.", q.unacked
        )

    def _analyzers(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "logdist_analyzer_up", "1 if the analyzer is healthy.", labels=["analyzer"]
        )
        enabled = GaugeMetricFamily(
            "logdist_analyzer_enabled", "1 if the analyzer is admin-enabled.", labels=["analyzer"]
        )
        weight = GaugeMetricFamily(
            "logdist_analyzer_weight", "Configured weight.", labels=["analyzer"]
        )
        pending = GaugeMetricFamily(
            "logdist_analyzer_pending",
            "Packets assigned, not yet acknowledged.",
            labels=["analyzer"],
        )
        for a in self.s.registry:
            up.add_metric([a.id], 1.0 if a.health is Health.UP else 0.0)
            enabled.add_metric([a.id], 1.0 if a.admin.value == "enabled" else 0.0)
            weight.add_metric([a.id], a.weight)
            pending.add_metric([a.id], a.pending)
        yield from (up, enabled, weight, pending)


# Emitters named in logdist_emitter_throttled_total; the rest are summed as "(others)".
THROTTLED_NAMED = 20


def throttled_metrics(throttled: Counter[str | None]) -> Iterator[Metric]:
    """Requests refused 429 (past an emitter's fair share or its rate limit): the most
    refused emitters by name, the rest summed, so ten thousand emitters do not make ten
    thousand series."""
    family = CounterMetricFamily(
        "logdist_emitter_throttled",
        f"Requests answered 429 past the emitter's fair share or rate limit; the"
        f" {THROTTLED_NAMED} most"
        " refused emitters by name, the others summed as (others).",
        labels=["emitter"],
    )
    top = throttled.most_common(THROTTLED_NAMED)
    for emitter, count in top:
        family.add_metric([str(emitter)], count)
    rest = sum(throttled.values()) - sum(n for _, n in top)
    if rest:
        family.add_metric(["(others)"], rest)
    yield family


def tls_metrics(tls: ServerTls) -> Iterator[Metric]:
    """Handshakes done and refused (by reason) on the HTTP and syslog TLS ports."""
    yield CounterMetricFamily("logdist_tls_handshakes", "TLS handshakes completed.", tls.handshakes)
    refused = CounterMetricFamily(
        "logdist_tls_refused",
        "TLS connections refused, by reason (plain_http, not_tls, no_client_certificate,"
        " client_certificate_refused, client_distrusts_us, timeout, closed, ...).",
        labels=["reason"],
    )
    for reason, count in sorted(tls.refused.items()):
        refused.add_metric([reason], count)
    yield refused
    yield CounterMetricFamily(
        "logdist_tls_reloads", "Certificates loaded again after their files changed.", tls.reloads
    )


def cluster_metrics(c: dict[str, Any]) -> Iterator[Metric]:
    """Cluster mode: this replica's part, the shared stream and consumer, the replicas seen."""
    yield GaugeMetricFamily(
        "logdist_cluster_ready", "1 if this replica is in the cluster.", 1.0 if c["ready"] else 0.0
    )
    yield GaugeMetricFamily(
        "logdist_cluster_in_flight",
        "Stream messages this replica fetched and has not acknowledged.",
        c["in_flight"],
    )
    yield CounterMetricFamily(
        "logdist_cluster_fetched", "Stream messages this replica fetched.", c["fetched"]
    )
    yield CounterMetricFamily(
        "logdist_cluster_acked", "Stream messages this replica acknowledged.", c["acked"]
    )
    yield CounterMetricFamily(
        "logdist_cluster_publish_failures",
        "Stream messages the servers did not take (each one's requests answered 503).",
        c["publish_failures"],
    )
    state = c["stream_state"]
    for name, key, text in (
        ("logdist_cluster_stream_messages", "messages", "Messages in the stream (not yet acked)."),
        ("logdist_cluster_stream_bytes", "bytes", "Bytes in the stream."),
        ("logdist_cluster_consumer_pending", "consumer_pending", "Messages no replica fetched."),
        (
            "logdist_cluster_consumer_ack_pending",
            "consumer_ack_pending",
            "Messages fetched and not acknowledged, all replicas.",
        ),
    ):
        if key in state:
            yield GaugeMetricFamily(name, text, state[key])
    if "redelivered" in state:
        yield GaugeMetricFamily(
            "logdist_cluster_redelivered",
            "Messages fetched and now out for another try (JetStream's count, now).",
            state["redelivered"],
        )
    up = GaugeMetricFamily(
        "logdist_cluster_replica_up",
        "1 if the replica's heartbeat is recent.",
        labels=["replica"],
    )
    for r in c["replicas"]:
        up.add_metric([r["id"]], 1.0 if r["up"] else 0.0)
    yield up


# Analyzers that each get a forward-latency histogram of their own; past it, one for the pool.
LATENCY_EACH = 100
POOL = "_pool"


class Metrics:
    def __init__(self, sources: Sources) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(DistributorCollector(sources))
        self.forward_latency = Histogram(
            "logdist_forward_latency_seconds",
            "Time from sending a forwarding request to its answer.",
            ["analyzer"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self._latency: dict[str, Any] = {}

    def observe_forward(self, aid: str, seconds: float, analyzers: int) -> None:
        """A forward's latency, under its analyzer while the pool has at most LATENCY_EACH;
        past that under `analyzer="_pool"` (fifteen series an analyzer, for thousands, would
        make every scrape megabytes)."""
        label = aid if analyzers <= LATENCY_EACH else POOL
        child = self._latency.get(label)
        if child is None:
            child = self._latency[label] = self.forward_latency.labels(label)
        child.observe(seconds)
