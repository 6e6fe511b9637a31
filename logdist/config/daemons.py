"""Each daemon's settings: one frozen dataclass each, every field declared once with its
default, its check (`__post_init__`, however the value arrived) and its flag."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logdist.config.fields import (
    check_at_least_one,
    check_port,
    check_positive,
    checked_id,
    parse_messages,
    read_token,
    require,
    setting,
)
from logdist.config.refs import ANALYZER_SPEC, AnalyzerRef, parse_analyzer_refs
from logdist.config.tables import (
    ClientConfig,
    ClusterConfig,
    HealthConfig,
    LimitsConfig,
    SyslogConfig,
    TlsConfig,
)
from logdist.core.checks import check_allowed_host, check_network, check_origin, check_url
from logdist.errors import ConfigError, InvalidRequest

HOST_HELP = "Address to listen on."


def hosts_of(values: object) -> tuple[str, ...]:
    """`allowed_hosts` checked (one string is one name)."""
    if isinstance(values, str):
        values = (values,)
    if not isinstance(values, (list, tuple)):
        raise ConfigError(f"allowed_hosts must be a list of names, got {values!r}")
    return tuple(check_allowed_host(v) for v in values)


def token_file_setting(which: str) -> Any:
    return setting(
        None,
        f"Read the {which} token from this file (its first line), so that it is on no command"
        " line; it wins over the token given otherwise.",
        cli_type=Path,
        convert=str,
        show_default=False,
    )


def allowed_hosts_setting() -> Any:
    """Host names a daemon answers to besides its own (net.hosts): the same flag everywhere."""
    return setting(
        (),
        "A Host name this daemon answers to besides localhost, its addresses and this"
        " machine's name (a guard against DNS rebinding), e.g. logs.example, or .example for"
        " any name under it; repeatable. Others get 421.",
        decls=("--allowed-host",),
        metavar="NAME",
        show_default=False,
    )


PORT_HELP = "Port to listen on (0 = any free port)."


@dataclass(frozen=True)
class DistributorConfig:
    analyzers: tuple[AnalyzerRef, ...] = setting(
        (),
        "An analyzer to route to, e.g. a1=http://127.0.0.1:9001/ingest@0.5; repeatable;"
        " replaces the config file's analyzers. Options follow the URL as ;KEY=VALUE: format"
        " (auto, ndjson, json-array, json; records, elasticsearch, loki, splunk-hec, otlp,"
        " syslog), header ('Name: value', repeatable), health_url, health (active, passive),"
        " compression (none, gzip), and the format's own options (docs/outputs.md), e.g."
        " 'es=http://h:9200/_bulk@1;format=elasticsearch;index=logs;header=Authorization:"
        " ApiKey x'.",
        decls=("--analyzer", "-a"),
        metavar=ANALYZER_SPEC,
        show_default=False,
        cli_type=list[str],
        convert=parse_analyzer_refs,
    )
    port: int = setting(8000, PORT_HELP)
    host: str = setting("127.0.0.1", HOST_HELP)
    queue_capacity: int = setting(10_000, "Packets held before ingest answers 503.")
    fair_share_above: float = setting(
        0.5,
        "Past this fraction of what the distributor can hold (the queue and the analyzers'"
        " pending windows), an emitter holding more than its max-min fair share is answered"
        " 429 with Retry-After, so that a burst leaves room for the others; 0: off.",
        metavar="FRACTION",
    )
    # A full analyzer is skipped.
    max_pending: int = setting(8192, "Packets per analyzer assigned, not yet acknowledged.")
    max_requests: int = setting(8, "Concurrent forwarding requests per analyzer.")
    # A batch forms only from a backlog; bigger ones cost both ends less a packet.
    forward_batch: int = setting(1024, "Packets per POST to analyzers that take batches.")
    # Shares stay within one run's size of the weights (see formats.packet); smaller runs
    # split finer and cost more CPU.
    run_messages: int = setting(
        1024, "Messages of one bulk request routed together (share granularity)."
    )
    search_timeout: float = setting(
        5.0, "Seconds each analyzer has to answer a search before it is named in `partial`."
    )
    forward_timeout: float = setting(5.0, "Seconds before a forward counts as failed.")
    drain_timeout: float = setting(10.0, "Seconds to deliver what is held on shutdown.")
    health: HealthConfig = field(default_factory=HealthConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    admin_token: str | None = setting(
        None,
        "Require this bearer token on admin, control, metrics and WebSocket routes.",
        envvar="LOGDIST_ADMIN_TOKEN",
    )
    ingest_token: str | None = setting(
        None,
        "Require this bearer token on ingest and emitter registration.",
        envvar="LOGDIST_INGEST_TOKEN",
    )
    read_token: str | None = setting(
        None,
        "A bearer token that may read (views, search, metrics, the log streams) but change"
        " nothing; needs an admin token to mean anything.",
        envvar="LOGDIST_READ_TOKEN",
    )
    admin_token_file: str | None = token_file_setting("admin")
    read_token_file: str | None = token_file_setting("read")
    ingest_token_file: str | None = token_file_setting("ingest")
    state_dir: str | None = setting(None, "Keep runtime admin changes here across restarts.")
    spool_dir: str | None = setting(None, "Write accepted packets here before acknowledging them.")
    spool_max_bytes: int = setting(256 << 20, "Spool size past which ingest answers 503.")
    # A killed process loses nothing in any mode; a power cut can.
    fsync: str = setting(
        "interval",
        "always (sync before each 202), interval (each second) or never.",
        metavar="MODE",
    )
    max_body_bytes: int = setting(1 << 20, "Largest single-packet body (413 past it).")
    max_batch_bytes: int = setting(32 << 20, "Largest batch body on /log-packets.")
    retry_after: int = setting(1, "Seconds a 503 asks senders to wait.")
    # 0: answer at once. Waiting keeps a closed-loop sender at the pace the analyzers take.
    queue_wait: float = setting(1.0, "Seconds a request waits for room in a full queue before 503.")
    spool_segment_bytes: int = setting(8 << 20, "Spool file size before a new one starts.")
    log_buffer: int = setting(500, "Routed packets kept for tail logs.")
    # All the eligible ones, if fewer; 408 and 429 are not refusals.
    max_refusals: int = setting(
        3, "Analyzers that must refuse a packet (4xx) before it is a dead letter."
    )
    dead_letter_dir: str | None = setting(
        None,
        "Where dead letters are kept.",
        show_default="SPOOL_DIR/dead-letters, else STATE_DIR/dead-letters, else memory",
    )
    dead_letter_max_bytes: int = setting(
        64 << 20, "Dead letters kept (bytes) before ingest answers 503."
    )
    emitter_lease: float = setting(
        60.0,
        "Seconds an emitter's registration holds without a renewal or a packet; then it is"
        " shown as gone (emitters renew every third of it).",
    )
    emitter_forget: float = setting(
        600.0, "Seconds a gone emitter is still shown before it is forgotten."
    )
    syslog: SyslogConfig = field(default_factory=SyslogConfig)
    otlp_emitter_attribute: str = setting(
        "service.name",
        "The resource attribute an OTLP request's emitter is named by (otlp:VALUE), for fair"
        " admission, limits and the views; without it, the sending host.",
        metavar="KEY",
    )
    # None: one a core, four at most, none on one core.
    parse_workers: int | None = setting(
        None,
        "Processes that read syslog TCP streams, OTLP requests and JSON records (the"
        " inputs that cost Python work a message), so they use the other cores; 0 reads"
        " them in the distributor itself.",
        metavar="N",
        show_default="one a core, at most 4; 0 on one core",
    )
    allowed_hosts: tuple[str, ...] = allowed_hosts_setting()
    allow_origins: tuple[str, ...] = setting(
        (),
        "An origin (scheme://host[:port]) besides the distributor's own whose pages may"
        " call the admin and control routes, e.g. a reverse proxy's public address;"
        " repeatable. Others get 403.",
        decls=("--allow-origin",),
        metavar="ORIGIN",
        show_default=False,
    )
    emitter_networks: tuple[str, ...] = setting(
        (),
        "A network an emitter's control URL may point into besides the address it"
        " registered from, e.g. 10.0.0.0/8; repeatable. Others get 422.",
        metavar="CIDR",
        show_default=False,
    )
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    id: str = setting("d1", "This distributor's name among the replicas.")

    @property
    def dead_letter_path(self) -> str | None:
        if self.dead_letter_dir is not None:
            return self.dead_letter_dir
        base = self.spool_dir or self.state_dir
        return str(Path(base) / "dead-letters") if base else None

    def __post_init__(self) -> None:
        check_port("port", self.port)
        check_at_least_one(
            self,
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
        )
        check_positive("forward_timeout", self.forward_timeout)
        check_positive("search_timeout", self.search_timeout)
        require(self.emitter_lease >= 3, f"emitter_lease must be >= 3, got {self.emitter_lease}")
        require(self.emitter_forget >= 0, f"emitter_forget must be >= 0, got {self.emitter_forget}")
        require(
            self.fsync in ("always", "interval", "never"),
            f"fsync must be always, interval or never, got {self.fsync!r}",
        )
        require(self.drain_timeout >= 0, f"drain_timeout must be >= 0, got {self.drain_timeout}")
        require(self.queue_wait >= 0, f"queue_wait must be >= 0, got {self.queue_wait}")
        above = self.fair_share_above
        require(0 <= above <= 1, f"fair_share_above must be 0-1 (0: off), got {above}")
        if self.parse_workers is not None:
            require(
                0 <= self.parse_workers <= 64,
                f"parse_workers must be 0-64, got {self.parse_workers}",
            )
        object.__setattr__(self, "allow_origins", tuple(map(check_origin, self.allow_origins)))
        object.__setattr__(self, "allowed_hosts", hosts_of(self.allowed_hosts))
        for key in ("admin_token", "ingest_token", "read_token"):
            path = getattr(self, f"{key}_file")
            object.__setattr__(self, key, read_token(path, getattr(self, key), f"{key}_file"))
        object.__setattr__(
            self, "emitter_networks", tuple(map(check_network, self.emitter_networks))
        )
        checked_id("distributor", self.id)
        require(
            self.syslog.tls is None or self.tls.cert is not None,
            "syslog tls needs the distributor's certificate (--tls-cert and --tls-key)",
        )
        if self.cluster.servers:
            require(
                not self.spool_dir and not self.state_dir,
                "cluster mode keeps accepted packets in JetStream: leave spool_dir and"
                " state_dir unset",
            )
        ids = [a.id for a in self.analyzers]
        dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
        require(not dupes, f"analyzer ids must be unique, repeated: {', '.join(dupes)}")


@dataclass(frozen=True)
class AnalyzerConfig:
    id: str = setting("a1", "Analyzer id.")
    port: int = setting(9001, PORT_HELP)
    host: str = setting("127.0.0.1", HOST_HELP)
    allowed_hosts: tuple[str, ...] = allowed_hosts_setting()
    tls: TlsConfig = field(default_factory=TlsConfig)
    # The weight the distributor gives it when both come from one topology file.
    weight: float = 1.0
    output: str | None = setting(
        None,
        "Append every packet received to this NDJSON file before acknowledging it.",
        cli_type=Path,
        convert=str,
    )
    dedupe_window: int = setting(100_000, "Recent packet ids remembered for dedupe.")
    max_body_bytes: int = setting(64 << 20, "Largest request body accepted (413 past it).")
    # Fault injection, for chaos tests and demos.
    fail_rate: float = setting(0.0, "Fault injection: answer 500 to this fraction of ingests.")
    delay: float = setting(0.0, "Fault injection: seconds to take over each ingest.")
    store: str | None = setting(
        None,
        "Keep every message acknowledged in a searchable store (SQLite + FTS5) in this "
        "directory; serves GET /search, /histogram and /context.",
        cli_type=Path,
        convert=str,
    )
    store_max_bytes: int | None = setting(
        None, "Retention: delete the oldest segments past this many bytes."
    )
    store_max_age: float | None = setting(
        None,
        "Retention: delete segments older than this (seconds, or 30m, 12h, 7d).",
        duration=True,
    )
    store_segment: float = setting(
        3600.0,
        "Start a new segment file this often (seconds, or 10m, 1h).",
        duration=True,
        show_default="1h",
    )
    store_sync: str = setting(
        "full",
        "full: each commit is fsynced before the 2xx; normal: it survives a crash of the "
        "process, not of the host.",
    )

    def __post_init__(self) -> None:
        checked_id("analyzer", self.id)
        object.__setattr__(self, "allowed_hosts", hosts_of(self.allowed_hosts))
        require(
            self.store_sync in ("full", "normal"),
            f"store_sync must be full or normal, got {self.store_sync!r}",
        )
        check_positive("store_segment", self.store_segment)
        if self.store_max_bytes is not None:
            require(
                self.store_max_bytes >= 1 << 20,
                f"store_max_bytes must be at least 1 MiB (1048576), got {self.store_max_bytes}",
            )
        if self.store_max_age is not None:
            check_positive("store_max_age", self.store_max_age)
        check_port("port", self.port)
        check_positive("weight", self.weight)
        require(
            0 <= self.fail_rate <= 1, f"fail_rate must be between 0 and 1, got {self.fail_rate}"
        )
        require(self.delay >= 0, f"delay must be >= 0, got {self.delay}")
        check_at_least_one(self, "dedupe_window", "max_body_bytes")

    @property
    def ingest_url(self) -> str:
        scheme = "http" if self.tls.cert is None else "https"
        return f"{scheme}://{self.host}:{self.port}/ingest"


@dataclass(frozen=True)
class EmitterConfig:
    id: str = setting("e1", "Emitter id.")
    distributor: tuple[str, ...] = setting(
        ("http://127.0.0.1:8000",),
        "Distributor base URL; repeat it for a cluster's replicas: requests are spread"
        " over them, and one that refuses connections, times out or answers 5xx is"
        " stepped around until its backoff has passed (nothing lost, the buffer's order"
        " kept).",
        metavar="URL",
    )
    # 0 generates nothing (the buffer still drains).
    rate: float = setting(10.0, "Packets per second (0 = generate nothing).")
    messages: tuple[int, int] = setting(
        (1, 1),
        "Messages per packet: N or MIN-MAX.",
        metavar="N|MIN-MAX",
        cli_type=str,
        render=lambda lo_hi: f"{lo_hi[0]}-{lo_hi[1]}",
    )
    port: int = setting(0, "Control API port (0 = any free port).")
    host: str = setting("127.0.0.1", HOST_HELP)
    allowed_hosts: tuple[str, ...] = allowed_hosts_setting()
    tls: TlsConfig = field(default_factory=TlsConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    buffer: int = setting(5000, "Packets kept until acknowledged; generation waits when full.")
    concurrency: int = setting(4, "Requests in flight to the distributor.")
    timeout: float = setting(5.0, "Seconds before a send counts as failed.")
    track_ids: int | None = setting(
        None,
        "Delivered packet ids kept (the last N) for GET /sent?ids=1; each costs about 100"
        " bytes. 0 keeps none.",
        metavar="N",
        show_default="100000 for one emitter, none for a fleet's members",
    )
    register_interval: float = setting(
        20.0,
        "Seconds between lease renewals when the distributor does not say (it asks for a"
        " third of its --emitter-lease); a change of state renews at once.",
    )
    drain_timeout: float = setting(5.0, "Seconds to flush the buffer on shutdown.")
    service: str = setting("demo_service", "The messages' service field.")
    fleet: int = setting(
        0,
        "Run N emitters ID-0 … ID-(N-1) in this process, each with the rate, buffer and"
        " concurrency given, registered and controlled one by one (control API at"
        " /e/ID/...).",
        metavar="N",
    )
    fleet_batch: int = setting(
        1,
        "A fleet's packets per request: 1 posts each member's packet alone to /log-packet,"
        " as separate emitters would; N > 1 sends up to N members' packets that are ready"
        " together as one NDJSON request to /log-packets (each keeps its packetId and"
        " emitter id), as a host's log shipper would.",
        metavar="N",
    )
    # Sent as `Authorization: Bearer` on ingest and registration.
    token: str | None = setting(
        None, "The distributor's ingest token.", envvar="LOGDIST_INGEST_TOKEN"
    )
    token_file: str | None = token_file_setting("ingest")
    # What a control call (pause, resume, rate) must present as its bearer token; given to the
    # distributor with each registration. Unset: one made at start.
    control_token: str | None = setting(
        None,
        "The token control calls (pause, resume, rate) must present; the distributor is given"
        " it when the emitter registers (default: one made at start).",
        envvar="LOGDIST_EMITTER_CONTROL_TOKEN",
    )
    control_token_file: str | None = token_file_setting("control")

    def __post_init__(self) -> None:
        checked_id("emitter", self.id)
        object.__setattr__(self, "allowed_hosts", hosts_of(self.allowed_hosts))
        object.__setattr__(self, "token", read_token(self.token_file, self.token, "token_file"))
        control = read_token(self.control_token_file, self.control_token, "control_token_file")
        object.__setattr__(self, "control_token", control)
        if isinstance(self.distributor, str):
            object.__setattr__(self, "distributor", (self.distributor,))
        require(bool(self.distributor), "distributor: at least one URL is needed")
        for url in self.distributor:
            try:
                check_url(url)
            except InvalidRequest as exc:
                raise ConfigError(f"distributor: {exc.message}") from None
        require(math.isfinite(self.rate) and self.rate >= 0, f"rate must be >= 0, got {self.rate}")
        object.__setattr__(self, "messages", parse_messages(self.messages))
        check_port("port", self.port)
        require(0 <= self.fleet <= 1_000_000, f"fleet must be 0-1000000, got {self.fleet}")
        require(
            1 <= self.fleet_batch <= 1000, f"fleet_batch must be 1-1000, got {self.fleet_batch}"
        )
        check_at_least_one(self, "buffer", "concurrency")
        if self.track_ids is not None:
            require(self.track_ids >= 0, f"track_ids must be >= 0, got {self.track_ids}")
        check_positive("timeout", self.timeout)
        check_positive("register_interval", self.register_interval)
        require(self.drain_timeout >= 0, f"drain_timeout must be >= 0, got {self.drain_timeout}")
