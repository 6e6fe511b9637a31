"""`logdist bench`: logdist beside nginx and HAProxy on the same work, in one run.

Four logdist analyzers (weights 4:3:2:1) serve as the upstreams of each front end in turn:
logdist's distributor, nginx (one worker) and HAProxy (one thread), each configured as a
weighted proxy. Scenarios:

  a  one-message packets on /log-packet (wrk, --connections)
  b  packets of 1-100 messages on /log-packet: the message-share error of each front end
  c  NDJSON bodies of 100 packets x 10 messages on /log-packets
  d  --emitters real emitters at one packet a second each, run as --fleets fleets
     (`logdist emitter start --fleet`, --fleet-batch packets a request): registered and
     leased with logdist, while a dashboard's views are watched (logdist.bench.fleets)
  e  --many registered analyzers: the picker's cost beside 10 analyzers; a distributor
     holding that many (mapped onto the same four processes) at the default health settings,
     once its probe budget has seen them all up: its CPU idle, its /status, and scenario (a)
     through it in turn with (a) through a distributor holding the four
  f  scenarios (a) and (c) again with the durable spool on (fsync once a second)
  g  OTLP/HTTP protobuf requests of 512 records on /v1/logs (wrk, 16 connections), taken in
     turn with (c)
  h  syslog RFC 5424, octet-counted, over 8 TCP connections (logdist.bench.inputs)
  j  (a) and (c) through logdist's cluster mode — three nats-servers clustered on loopback
     (every stream message on all three) and two distributor replicas, the load spread over
     both (logdist.bench.cluster) — taken in turn with one distributor with its spool (f);
     the replicas' and the NATS servers' CPU measured apart
  i  (c) again into four analyzers that keep a store (--store), taken in turn with (c) into
     the four that do not, and afterwards every delivered message counted in the stores; then
     --store-fill messages written into four stores and searched through a distributor:
     the latency of a full-text + level + 24 h first page and of a whole-range histogram
     (logdist.bench.store)
  k  (c) into four analyzers of each converting format (records, elasticsearch, loki, otlp)
  l  TLS on both sides (logdist.bench.secure): four analyzers serving TLS behind logdist's
     distributor serving TLS and behind nginx terminating TLS, both verifying the analyzers;
     (a) through each, (c) through logdist with TLS and without, and the handshakes/s of new
     connections (each request on its own connection) through each
  m  1,000 steady emitters (a fleet, 1 packet/s each) beside one bursty emitter (wrk, 10-message
     packets, 32 connections) through two analyzers capped at 1,600 packets/s, with fairness on
     and off: the steady packets accepted and their delay to the analyzers, the burst's share,
     the analyzers' throughput over their cap (logdist.bench.fairness)

With --analyzers foreign the four analyzers are plain aiohttp services instead
(logdist.bench.foreign, parsing every body with orjson), declared `format = "ndjson"` to
logdist, and nginx and HAProxy pass them the same bodies whole: scenarios (a), (b), (c), (f).

For (a), (b), (c) and (f) every front end is started at once and its load cut into --rounds
slices taken in turn with the others' (logdist, nginx, HAProxy, logdist+spool, then again),
so a slow spell of this shared machine weighs on all of them alike; a row sums its slices.
Delivered packets and messages are counted at the analyzers. Everything listens on 127.0.0.1
and every load is bounded by --seconds. Prints one table and the targets of the performance
issue; writes everything to --json.
"""

from __future__ import annotations

from typing import Any

from logdist.bench.options import Options
from logdist.bench.report import report
from logdist.bench.runner import Runner


def run(opts: Options) -> dict[str, Any]:
    """Every scenario asked for, then the table, the targets and the JSON."""
    Runner(opts).run()
    return report(opts)
