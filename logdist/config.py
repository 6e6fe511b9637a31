"""Configuration: one frozen dataclass per daemon, loaded from TOML, overridden by CLI flags.

Defaults live here and only here. A CLI command passes the flags the user gave to
`dataclasses.replace`; `__post_init__` checks every value however it arrived.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import types
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from logdist.core.checks import check_id, check_network, check_origin, check_url
from logdist.core.delivery import KEYS as DELIVERY_KEYS
from logdist.core.delivery import Delivery, delivery_from, parse_header_line
from logdist.errors import ConfigError, InvalidRequest
from logdist.search.query import duration_ms

DEFAULT_CONFIG = Path("configs/demo.toml")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _port(name: str, value: int) -> None:
    _require(0 <= value <= 65535, f"{name} must be a port number 0-65535, got {value}")


def _positive(name: str, value: float) -> None:
    _require(math.isfinite(value) and value > 0, f"{name} must be > 0, got {value}")


def parse_duration(name: str, text: str) -> float:
    """Seconds for `90`, `30s`, `15m`, `2h`, `7d`, `1w`, `1h30m`."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    ms = duration_ms(text)
    _require(
        ms is not None,
        f"{name} must be seconds or a duration such as 30s, 15m, 2h, 7d; got {text!r}",
    )
    assert ms is not None
    return ms / 1000


def _checked_id(kind: str, value: str) -> None:
    try:
        check_id(kind, value)
    except InvalidRequest as exc:
        raise ConfigError(exc.message) from None


@dataclass(frozen=True)
class HealthConfig:
    """Active probes: `GET /health` every `interval` s, `fall` failures down, `rise` ok up."""

    interval: float = 1.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 3
    # Probes a second at most (a probe costs about 0.5 ms of CPU): past max_probes * interval
    # analyzers the round stretches, and forwards judge health in between.
    max_probes: float = 50.0

    def __post_init__(self) -> None:
        _positive("health interval", self.interval)
        _positive("health max_probes", self.max_probes)
        _positive("health timeout", self.timeout)
        _require(self.rise >= 1, f"health rise must be >= 1, got {self.rise}")
        _require(self.fall >= 1, f"health fall must be >= 1, got {self.fall}")


@dataclass(frozen=True)
class SyslogConfig:
    """Syslog listeners (RFC 5424 / 3164; TCP framed as RFC 6587 says, or UDP), off unless a
    port is given. They bind loopback unless `host` says otherwise: syslog has no token."""

    host: str = "127.0.0.1"
    tcp: int | None = None
    udp: int | None = None
    # A longer message is skipped and counted (rejected, reason too_large), never held.
    max_message_bytes: int = 64 << 10

    def __post_init__(self) -> None:
        for name in ("tcp", "udp"):
            port = getattr(self, name)
            if port is not None:
                _port(f"syslog {name}", port)
        _require(
            self.max_message_bytes >= 480,  # RFC 5424: every receiver takes 480 octets
            f"syslog max_message_bytes must be >= 480, got {self.max_message_bytes}",
        )


@dataclass(frozen=True)
class ClusterConfig:
    """Cluster mode: the NATS servers whose JetStream holds the shared queue (none: off)."""

    servers: tuple[str, ...] = ()
    stream: str = "LOGDIST"
    # Servers each stream message is kept on (JetStream's replicas: 1, 3 or 5).
    replicas: int = 3
    # Seconds a fetched message may go unacknowledged before the stream gives it to another
    # replica (held messages are kept alive while they are worked on).
    ack_wait: float = 30.0
    # Stream messages a replica holds fetched and unacknowledged at most.
    max_in_flight: int = 1024
    # The stream's size: past it, publishing is refused (503) until messages are delivered.
    max_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        for url in self.servers:
            _require(
                url.startswith("nats://") and len(url) > len("nats://"),
                f"cluster servers must be nats://HOST:PORT URLs, got {url!r}",
            )
        _require(
            bool(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.stream)),
            f"cluster stream must be letters, digits, _ or -, got {self.stream!r}",
        )
        _require(1 <= self.replicas <= 5, f"cluster replicas must be 1-5, got {self.replicas}")
        _positive("cluster ack_wait", self.ack_wait)
        _require(self.max_in_flight >= 1, "cluster max_in_flight must be >= 1")
        _require(self.max_bytes >= 1 << 20, "cluster max_bytes must be at least 1 MiB")


@dataclass(frozen=True)
class AnalyzerRef:
    """An analyzer as the distributor sees it: where to send, its weight, and how."""

    id: str
    url: str
    weight: float = 1.0
    delivery: Delivery = field(default_factory=Delivery)

    def __post_init__(self) -> None:
        _checked_id("analyzer", self.id)
        try:
            check_url(self.url)
        except InvalidRequest as exc:
            raise ConfigError(f"analyzer {self.id}: {exc.message}") from None
        _positive(f"analyzer {self.id} weight", self.weight)


# `;KEY=` starts an option only for these keys, so a URL's own `;` stays in the URL.
_SPEC_OPTION = re.compile(r";(?=(?:format|header|health_url|health|compression)=)")
ANALYZER_SPEC = "ID=URL[@WEIGHT][;KEY=VALUE...]"


def parse_analyzer_ref(spec: str) -> AnalyzerRef:
    """`ID=URL[@WEIGHT][;KEY=VALUE...]`, e.g. `a1=http://127.0.0.1:9001/ingest@0.4`, or
    `a2=http://h:9200/ingest@1;format=ndjson;header=Authorization: Bearer x;health=passive`.

    KEY is format, header (`Name: value`, repeatable), health_url, health or compression.
    """
    head, *options = _SPEC_OPTION.split(spec)
    aid, sep, rest = head.partition("=")
    _require(bool(sep and aid and rest), f"--analyzer wants {ANALYZER_SPEC}, got {spec!r}")
    url, weight = rest, 1.0
    at_head, at, tail = rest.rpartition("@")
    # An '@' whose tail is not a number belongs to the URL itself.
    if at and _is_number(tail):
        weight, url = float(tail), at_head
    values: dict[str, object] = {}
    headers: dict[str, str] = {}
    try:
        for option in options:
            key, _, value = option.partition("=")
            if key == "header":
                name, text = parse_header_line(value)
                headers[name] = text
            else:
                values[key] = value
        if headers:
            values["headers"] = headers
        delivery = delivery_from(values)
    except InvalidRequest as exc:
        raise ConfigError(f"--analyzer {aid}: {exc.message}") from None
    return AnalyzerRef(aid, url, weight, delivery)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_messages(value: object) -> tuple[int, int]:
    """Messages per packet: `N` or `MIN-MAX`."""
    if isinstance(value, tuple):
        lo, hi = value
    elif isinstance(value, int) and not isinstance(value, bool):
        lo = hi = value
    elif isinstance(value, str):
        a, _, b = value.partition("-")
        try:
            lo = int(a)
            hi = int(b) if b else lo
        except ValueError:
            raise ConfigError(f"messages must be N or MIN-MAX, got {value!r}") from None
    else:
        raise ConfigError(f"messages must be N or MIN-MAX, got {value!r}")
    _require(
        1 <= lo <= hi <= 100_000, f"messages must satisfy 1 <= MIN <= MAX <= 100000, got {value!r}"
    )
    return (lo, hi)


@dataclass(frozen=True)
class DistributorConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    analyzers: tuple[AnalyzerRef, ...] = ()
    # Packets accepted and not yet handed to an analyzer; past it ingest answers 503.
    queue_capacity: int = 10_000
    max_body_bytes: int = 1 << 20
    max_batch_bytes: int = 32 << 20
    # Packets per forwarding POST to analyzers that accept batches (a batch forms only from a
    # backlog; bigger ones cost the distributor and the analyzer less a packet).
    forward_batch: int = 1024
    # Messages of one bulk request routed together as a run (see core.packet): shares stay
    # within one run's size of the weights; smaller runs split finer and cost more CPU.
    run_messages: int = 1024
    # Packets assigned to one analyzer and not yet acknowledged; a full analyzer is skipped.
    max_pending: int = 8192
    # Concurrent forwarding requests per analyzer.
    max_requests: int = 8
    forward_timeout: float = 5.0
    # Seconds each analyzer has to answer a search (/logs/search …) before it is named in
    # the answer's `partial`.
    search_timeout: float = 5.0
    drain_timeout: float = 10.0
    retry_after: int = 1
    # Seconds an ingest request waits for room in a full queue before its 503 (0: answer at
    # once). Waiting keeps a closed-loop sender at the pace the analyzers take.
    queue_wait: float = 1.0
    health: HealthConfig = field(default_factory=HealthConfig)
    syslog: SyslogConfig = field(default_factory=SyslogConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    # This distributor's name among the cluster's replicas.
    id: str = "d1"
    # Processes that read syslog streams, OTLP requests and JSON records (0: the distributor);
    # None: one a core, four at most, none on one core.
    parse_workers: int | None = None
    # Bearer token for admin, control, metrics and WebSocket routes (None: open).
    admin_token: str | None = None
    # Bearer token for ingest and emitter registration (None: open).
    ingest_token: str | None = None
    # Where runtime admin changes are kept across restarts (None: not kept).
    state_dir: str | None = None
    # Routed packets kept for `tail logs` and /ws/logs.
    log_buffer: int = 500
    # Durable spool: accepted packets are written here before the 202 (None: memory only).
    spool_dir: str | None = None
    spool_max_bytes: int = 256 << 20
    spool_segment_bytes: int = 8 << 20
    # always: sync before each 202 (shared by concurrent requests); interval: once a second;
    # never: the OS decides. A killed process loses nothing in any mode; a power cut can.
    fsync: str = "interval"
    # Different analyzers that must refuse a packet (4xx other than 408/429) before it is a
    # dead letter (all the eligible ones, if fewer).
    max_refusals: int = 3
    # Where dead letters are kept (None: SPOOL_DIR/dead-letters with a spool, else
    # STATE_DIR/dead-letters with a state dir, else memory only).
    dead_letter_dir: str | None = None
    # Dead letters kept (packet bytes) before ingest answers 503.
    dead_letter_max_bytes: int = 64 << 20
    # Origins (scheme://host[:port]) beside the distributor's own whose pages may call the admin
    # and control routes, e.g. the public address of a reverse proxy in front of the dashboard.
    allow_origins: tuple[str, ...] = ()
    # Networks (CIDR) an emitter's control URL may point into besides the address its
    # registration came from.
    emitter_networks: tuple[str, ...] = ()
    # Seconds an emitter's registration holds without a renewal or a packet (it renews every
    # third of it); then it is shown as gone, and forgotten `emitter_forget` seconds later.
    emitter_lease: float = 60.0
    emitter_forget: float = 600.0

    @property
    def dead_letter_path(self) -> str | None:
        if self.dead_letter_dir is not None:
            return self.dead_letter_dir
        base = self.spool_dir or self.state_dir
        return str(Path(base) / "dead-letters") if base else None

    def __post_init__(self) -> None:
        _port("port", self.port)
        for name in (
            "queue_capacity",
            "max_body_bytes",
            "max_batch_bytes",
            "forward_batch",
            "run_messages",
            "max_pending",
            "max_requests",
            "retry_after",
            "log_buffer",
            "spool_max_bytes",
            "spool_segment_bytes",
            "max_refusals",
            "dead_letter_max_bytes",
        ):
            _require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        _positive("forward_timeout", self.forward_timeout)
        _positive("search_timeout", self.search_timeout)
        _require(self.emitter_lease >= 3, f"emitter_lease must be >= 3, got {self.emitter_lease}")
        _require(
            self.emitter_forget >= 0, f"emitter_forget must be >= 0, got {self.emitter_forget}"
        )
        _require(
            self.fsync in ("always", "interval", "never"),
            f"fsync must be always, interval or never, got {self.fsync!r}",
        )
        _require(self.drain_timeout >= 0, f"drain_timeout must be >= 0, got {self.drain_timeout}")
        _require(self.queue_wait >= 0, f"queue_wait must be >= 0, got {self.queue_wait}")
        if self.parse_workers is not None:
            _require(
                0 <= self.parse_workers <= 64,
                f"parse_workers must be 0-64, got {self.parse_workers}",
            )
        object.__setattr__(self, "allow_origins", tuple(map(check_origin, self.allow_origins)))
        object.__setattr__(
            self, "emitter_networks", tuple(map(check_network, self.emitter_networks))
        )
        _checked_id("distributor", self.id)
        if self.cluster.servers:
            _require(
                not self.spool_dir and not self.state_dir,
                "cluster mode keeps accepted packets in JetStream: leave spool_dir and"
                " state_dir unset",
            )
        ids = [a.id for a in self.analyzers]
        dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
        _require(not dupes, f"analyzer ids must be unique, repeated: {', '.join(dupes)}")


@dataclass(frozen=True)
class AnalyzerConfig:
    id: str = "a1"
    host: str = "127.0.0.1"
    port: int = 9001
    # The weight the distributor gives it when both come from one topology file.
    weight: float = 1.0
    # Append every packet received (NDJSON) to this file before acknowledging it.
    output: str | None = None
    dedupe_window: int = 100_000
    max_body_bytes: int = 64 << 20
    # Fault injection, for chaos tests and demos: answer 500 to this fraction of ingests,
    # and take this many seconds over each.
    fail_rate: float = 0.0
    delay: float = 0.0
    # Keep every message acknowledged in a searchable store in this directory.
    store: str | None = None
    # Retention: the oldest segments are deleted past this total size / age (seconds).
    store_max_bytes: int | None = None
    store_max_age: float | None = None
    # A new segment (file) is started this often (seconds).
    store_segment: float = 3600.0
    # full: a commit is fsynced before the 2xx; normal: it survives the process, not the host.
    store_sync: str = "full"

    def __post_init__(self) -> None:
        _checked_id("analyzer", self.id)
        _require(
            self.store_sync in ("full", "normal"),
            f"store_sync must be full or normal, got {self.store_sync!r}",
        )
        _positive("store_segment", self.store_segment)
        if self.store_max_bytes is not None:
            _require(
                self.store_max_bytes >= 1 << 20,
                f"store_max_bytes must be at least 1 MiB (1048576), got {self.store_max_bytes}",
            )
        if self.store_max_age is not None:
            _positive("store_max_age", self.store_max_age)
        _port("port", self.port)
        _positive("weight", self.weight)
        _require(
            0 <= self.fail_rate <= 1, f"fail_rate must be between 0 and 1, got {self.fail_rate}"
        )
        _require(self.delay >= 0, f"delay must be >= 0, got {self.delay}")
        _require(self.dedupe_window >= 1, f"dedupe_window must be >= 1, got {self.dedupe_window}")
        _require(
            self.max_body_bytes >= 1, f"max_body_bytes must be >= 1, got {self.max_body_bytes}"
        )

    @property
    def ingest_url(self) -> str:
        return f"http://{self.host}:{self.port}/ingest"


@dataclass(frozen=True)
class EmitterConfig:
    id: str = "e1"
    # One distributor's base URL, or several (a cluster's replicas): requests are spread over
    # them and a failing one is stepped around.
    distributor: tuple[str, ...] = ("http://127.0.0.1:8000",)
    # Packets per second; 0 generates nothing (the buffer still drains).
    rate: float = 10.0
    messages: tuple[int, int] = (1, 1)
    host: str = "127.0.0.1"
    port: int = 0
    # Packets generated and not yet acknowledged by the distributor.
    buffer: int = 5000
    concurrency: int = 4
    timeout: float = 5.0
    # How many delivered packet ids `GET /sent?ids=1` can list.
    track_ids: int = 100_000
    # Seconds between lease renewals if the distributor does not say (it asks a third of
    # its emitter_lease).
    register_interval: float = 20.0
    drain_timeout: float = 5.0
    service: str = "demo_service"
    # Sent as `Authorization: Bearer` on ingest and registration.
    token: str | None = None
    # With N >= 1: a fleet of N emitters ID-0 … ID-(N-1) in this one process, each with this
    # rate, buffer and concurrency of its own.
    fleet: int = 0
    # A fleet's packets per request: 1 posts each member's packet alone to /log-packet; N > 1
    # sends up to N packets ready together as one NDJSON request to /log-packets.
    fleet_batch: int = 1

    def __post_init__(self) -> None:
        _checked_id("emitter", self.id)
        if isinstance(self.distributor, str):
            object.__setattr__(self, "distributor", (self.distributor,))
        _require(bool(self.distributor), "distributor: at least one URL is needed")
        for url in self.distributor:
            try:
                check_url(url)
            except InvalidRequest as exc:
                raise ConfigError(f"distributor: {exc.message}") from None
        _require(math.isfinite(self.rate) and self.rate >= 0, f"rate must be >= 0, got {self.rate}")
        object.__setattr__(self, "messages", parse_messages(self.messages))
        _port("port", self.port)
        _require(0 <= self.fleet <= 1_000_000, f"fleet must be 0-1000000, got {self.fleet}")
        _require(
            1 <= self.fleet_batch <= 1000, f"fleet_batch must be 1-1000, got {self.fleet_batch}"
        )
        for name in ("buffer", "concurrency", "track_ids"):
            _require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        _positive("timeout", self.timeout)
        _positive("register_interval", self.register_interval)
        _require(self.drain_timeout >= 0, f"drain_timeout must be >= 0, got {self.drain_timeout}")


@dataclass(frozen=True)
class LocalCluster:
    """A topology's `[cluster]` table: `logdist up` runs the distributor as `distributors`
    replicas (ports `port`, `port`+1, … of [distributor]; ids d1, d2, …) sharing a queue on
    `nats_servers` NATS servers it starts, clustered on loopback (client ports from
    `nats_port`, route ports from `routes_port`) — unless [distributor.cluster] names servers
    of its own, when it starts none."""

    distributors: int = 3
    nats_servers: int = 3
    nats_port: int = 4222
    routes_port: int = 6222
    # The largest message the NATS servers take (a packet of up to max_body_bytes, or a run).
    max_payload: int = 8 << 20

    def __post_init__(self) -> None:
        _require(1 <= self.distributors <= 9, f"distributors must be 1-9, got {self.distributors}")
        _require(
            self.nats_servers in (1, 3, 5),
            f"nats_servers must be 1, 3 or 5 (a JetStream quorum), got {self.nats_servers}",
        )
        _port("nats_port", self.nats_port)
        _port("routes_port", self.routes_port)
        n = self.nats_servers
        _require(
            self.nats_port + n <= self.routes_port or self.routes_port + n <= self.nats_port,
            f"nats_port {self.nats_port} and routes_port {self.routes_port} must be {n} or more"
            " apart (each server takes the next port of both)",
        )
        _require(
            1 << 20 <= self.max_payload <= 64 << 20,
            f"max_payload must be 1 MiB-64 MiB, got {self.max_payload}",
        )

    def nats_urls(self) -> tuple[str, ...]:
        return tuple(f"nats://127.0.0.1:{self.nats_port + i}" for i in range(self.nats_servers))


@dataclass(frozen=True)
class Topology:
    """A whole local pipeline: the distributor, the analyzers to start, the emitters to start
    (and, with `cluster`, the distributor's replicas and the NATS servers under them)."""

    distributor: DistributorConfig = field(default_factory=DistributorConfig)
    analyzers: tuple[AnalyzerConfig, ...] = ()
    emitters: tuple[EmitterConfig, ...] = ()
    cluster: LocalCluster | None = None

    def replica_urls(self) -> tuple[str, ...]:
        d = self.distributor
        count = self.cluster.distributors if self.cluster is not None else 1
        return tuple(f"http://{d.host}:{d.port + k}" for k in range(count))


def _convert(where: str, name: str, hint: Any, value: Any) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        return _convert(where, name, options[0], value)
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if name.startswith("store_") and isinstance(value, str):
            return parse_duration(name, value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint in (HealthConfig, SyslogConfig, ClusterConfig):
        if isinstance(value, dict):
            return _build(hint, value, f"{where}.{name}")
    elif name == "messages":
        return parse_messages(value)
    elif hint == tuple[str, ...]:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        if isinstance(value, str):
            return (value,)
    raise ConfigError(f"{where}: {name} has the wrong type ({type(value).__name__}: {value!r})")


def _build(
    cls: type[Any],
    table: dict[str, Any],
    where: str,
    skip: tuple[str, ...] = (),
    also: tuple[str, ...] = (),
) -> Any:
    """`cls` from a TOML table; `also` are keys the caller took out of it beforehand."""
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)} - set(skip)
    unknown = sorted(set(table) - known)
    _require(
        not unknown,
        f"{where}: unknown key(s) {', '.join(unknown)};"
        f" known: {', '.join(sorted(known | set(also)))}",
    )
    values = {k: _convert(where, k, hints[k], v) for k, v in table.items()}
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None


def _analyzer_entry(where: str, table: dict[str, Any]) -> tuple[AnalyzerConfig | None, AnalyzerRef]:
    """An [[analyzers]] entry: with `url` it is external; without, one to start locally.

    Either kind may say how the distributor delivers to it (format, headers, health_url,
    health, compression).
    """
    table = dict(table)
    values = {k: table.pop(k) for k in DELIVERY_KEYS if k in table}
    try:
        delivery = delivery_from(values)
    except InvalidRequest as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
    if "url" in table:
        ref = _build(AnalyzerRef, table, where, skip=("delivery",), also=DELIVERY_KEYS)
        return None, dataclasses.replace(ref, delivery=delivery)
    local = _build(AnalyzerConfig, table, where, also=DELIVERY_KEYS)
    return local, AnalyzerRef(local.id, local.ingest_url, local.weight, delivery)


def topology_from_dict(data: dict[str, Any], where: str) -> Topology:
    unknown = sorted(set(data) - {"distributor", "analyzers", "emitters", "cluster"})
    _require(
        not unknown,
        f"{where}: unknown section(s) {', '.join(unknown)};"
        " known: distributor, analyzers, emitters, cluster",
    )
    local: list[AnalyzerConfig] = []
    refs: list[AnalyzerRef] = []
    for i, table in enumerate(_tables(data, "analyzers", where)):
        cfg, ref = _analyzer_entry(f"{where}: analyzers[{i}]", table)
        if cfg is not None:
            local.append(cfg)
        refs.append(ref)
    dist_table = data.get("distributor", {})
    _require(isinstance(dist_table, dict), f"{where}: [distributor] must be a table")
    distributor = _build(
        DistributorConfig, dist_table, f"{where}: [distributor]", skip=("analyzers",)
    )
    distributor = dataclasses.replace(distributor, analyzers=tuple(refs))
    cluster = None
    if "cluster" in data:
        _require(isinstance(data["cluster"], dict), f"{where}: [cluster] must be a table")
        cluster = _build(LocalCluster, data["cluster"], f"{where}: [cluster]")
        _require(
            bool(distributor.cluster.servers)
            or distributor.cluster.replicas <= cluster.nats_servers,
            f"{where}: [distributor.cluster] replicas ({distributor.cluster.replicas}) cannot"
            f" exceed [cluster] nats_servers ({cluster.nats_servers})",
        )
        _require(
            distributor.port != 0 and distributor.port + cluster.distributors - 1 <= 65535,
            f"{where}: a cluster's replicas need a fixed [distributor] port",
        )
    topo = Topology(distributor, tuple(local), (), cluster)
    # Emitters send to this topology's distributor (every replica) unless told otherwise.
    here = list(topo.replica_urls())
    emitters = tuple(
        _build(EmitterConfig, {"distributor": here, **t}, f"{where}: emitters[{i}]")
        for i, t in enumerate(_tables(data, "emitters", where))
    )
    return dataclasses.replace(topo, emitters=emitters)


def _tables(data: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    tables = data.get(key, [])
    _require(
        isinstance(tables, list) and all(isinstance(t, dict) for t in tables),
        f"{where}: {key} must be an array of tables ([[{key}]])",
    )
    return list(tables)


def load_topology(path: str | Path) -> Topology:
    """Read a topology TOML file; any problem is one ConfigError naming the file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return topology_from_dict(data, str(path))
    except ConfigError as exc:
        if exc.message.startswith(str(path)):
            raise
        raise ConfigError(f"{path}: {exc.message}") from None


def overrides(**values: Any) -> dict[str, Any]:
    """The CLI flags the user actually gave (None means not given)."""
    return {k: v for k, v in values.items() if v is not None}


def apply(cfg: Any, **values: Any) -> Any:
    """`cfg` with the given CLI flags applied; a bad value is a ConfigError."""
    return dataclasses.replace(cfg, **overrides(**values))
