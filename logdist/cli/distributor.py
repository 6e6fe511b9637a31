"""`logdist distributor serve`."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from logdist import config
from logdist.cli.common import (
    ConfigOption,
    HostOption,
    LogLevelOption,
    config_errors,
    opt,
    run_daemon,
    topology,
)
from logdist.config import ClusterConfig as ClusterC
from logdist.config import DistributorConfig as C
from logdist.config import HealthConfig as H
from logdist.config import SyslogConfig as S

app = typer.Typer(
    help="The distributor: accepts packets and routes them to analyzers by weight.",
    no_args_is_help=True,
)

AnalyzerOption = typer.Option(
    "--analyzer",
    "-a",
    metavar=config.ANALYZER_SPEC,
    show_default=False,
    help="An analyzer to route to, e.g. a1=http://127.0.0.1:9001/ingest@0.5; repeatable;"
    " replaces the config file's analyzers. Options follow the URL as ;KEY=VALUE: format"
    " (auto, ndjson, json-array, json), header ('Name: value', repeatable), health_url,"
    " health (active, passive), compression (none, gzip), e.g."
    " 'a2=http://h:9200/ingest@1;format=ndjson;header=Authorization: Bearer x'.",
)


@app.command()
def serve(
    config_file: ConfigOption = None,
    analyzer: Annotated[list[str] | None, AnalyzerOption] = None,
    port: Annotated[int | None, opt(C, "port", "Port to listen on (0 = any free port).")] = None,
    host: HostOption = None,
    queue_capacity: Annotated[
        int | None, opt(C, "queue_capacity", "Packets held before ingest answers 503.")
    ] = None,
    max_pending: Annotated[
        int | None, opt(C, "max_pending", "Packets per analyzer assigned, not yet acknowledged.")
    ] = None,
    max_requests: Annotated[
        int | None, opt(C, "max_requests", "Concurrent forwarding requests per analyzer.")
    ] = None,
    forward_batch: Annotated[
        int | None, opt(C, "forward_batch", "Packets per POST to analyzers that take batches.")
    ] = None,
    run_messages: Annotated[
        int | None,
        opt(C, "run_messages", "Messages of one bulk request routed together (share granularity)."),
    ] = None,
    search_timeout: Annotated[
        float | None,
        opt(
            C,
            "search_timeout",
            "Seconds each analyzer has to answer a search before it is named in `partial`.",
        ),
    ] = None,
    forward_timeout: Annotated[
        float | None, opt(C, "forward_timeout", "Seconds before a forward counts as failed.")
    ] = None,
    drain_timeout: Annotated[
        float | None, opt(C, "drain_timeout", "Seconds to deliver what is held on shutdown.")
    ] = None,
    health_interval: Annotated[
        float | None, opt(H, "interval", "Seconds between health probes.")
    ] = None,
    health_timeout: Annotated[
        float | None, opt(H, "timeout", "Seconds before a probe fails.")
    ] = None,
    health_max_probes: Annotated[
        float | None,
        opt(
            H,
            "max_probes",
            "Health probes a second at most; past max-probes x interval analyzers each is"
            " probed less often (forwards judge health in between).",
        ),
    ] = None,
    rise: Annotated[
        int | None, opt(H, "rise", "Good probes in a row that bring an analyzer up.")
    ] = None,
    fall: Annotated[
        int | None, opt(H, "fall", "Failed probes (or forwards) in a row that mark it down.")
    ] = None,
    admin_token: Annotated[
        str | None,
        typer.Option(
            envvar="LOGDIST_ADMIN_TOKEN",
            show_default=False,
            help="Require this bearer token on admin, control, metrics and WebSocket routes.",
        ),
    ] = None,
    ingest_token: Annotated[
        str | None,
        typer.Option(
            envvar="LOGDIST_INGEST_TOKEN",
            show_default=False,
            help="Require this bearer token on ingest and emitter registration.",
        ),
    ] = None,
    state_dir: Annotated[
        str | None,
        typer.Option(show_default=False, help="Keep runtime admin changes here across restarts."),
    ] = None,
    spool_dir: Annotated[
        str | None,
        typer.Option(
            show_default=False, help="Write accepted packets here before acknowledging them."
        ),
    ] = None,
    spool_max_bytes: Annotated[
        int | None, opt(C, "spool_max_bytes", "Spool size past which ingest answers 503.")
    ] = None,
    fsync: Annotated[
        str | None,
        opt(
            C,
            "fsync",
            "always (sync before each 202), interval (each second) or never.",
            metavar="MODE",
        ),
    ] = None,
    max_body_bytes: Annotated[
        int | None, opt(C, "max_body_bytes", "Largest single-packet body (413 past it).")
    ] = None,
    max_batch_bytes: Annotated[
        int | None, opt(C, "max_batch_bytes", "Largest batch body on /log-packets.")
    ] = None,
    retry_after: Annotated[
        int | None, opt(C, "retry_after", "Seconds a 503 asks senders to wait.")
    ] = None,
    queue_wait: Annotated[
        float | None,
        opt(C, "queue_wait", "Seconds a request waits for room in a full queue before 503."),
    ] = None,
    spool_segment_bytes: Annotated[
        int | None, opt(C, "spool_segment_bytes", "Spool file size before a new one starts.")
    ] = None,
    log_buffer: Annotated[
        int | None, opt(C, "log_buffer", "Routed packets kept for tail logs.")
    ] = None,
    max_refusals: Annotated[
        int | None,
        opt(
            C,
            "max_refusals",
            "Analyzers that must refuse a packet (4xx) before it is a dead letter.",
        ),
    ] = None,
    dead_letter_dir: Annotated[
        str | None,
        typer.Option(
            show_default="SPOOL_DIR/dead-letters, else STATE_DIR/dead-letters, else memory",
            help="Where dead letters are kept.",
        ),
    ] = None,
    dead_letter_max_bytes: Annotated[
        int | None,
        opt(C, "dead_letter_max_bytes", "Dead letters kept (bytes) before ingest answers 503."),
    ] = None,
    emitter_lease: Annotated[
        float | None,
        opt(
            C,
            "emitter_lease",
            "Seconds an emitter's registration holds without a renewal or a packet; then it is"
            " shown as gone (emitters renew every third of it).",
        ),
    ] = None,
    emitter_forget: Annotated[
        float | None,
        opt(C, "emitter_forget", "Seconds a gone emitter is still shown before it is forgotten."),
    ] = None,
    syslog_tcp: Annotated[
        int | None,
        opt(
            S,
            "tcp",
            "Take syslog (RFC 5424 or 3164) on this TCP port, octet-counted or newline-framed"
            " (RFC 6587). When the queue is full it stops reading: the senders wait.",
            "--syslog-tcp",
            metavar="PORT",
        ),
    ] = None,
    syslog_udp: Annotated[
        int | None,
        opt(
            S,
            "udp",
            "Take syslog datagrams on this UDP port. UDP cannot wait: what comes while the"
            " queue is full is dropped, counted and logged.",
            "--syslog-udp",
            metavar="PORT",
        ),
    ] = None,
    syslog_max_message_bytes: Annotated[
        int | None,
        opt(
            S,
            "max_message_bytes",
            "A syslog message longer than this is skipped and counted (payload_too_large).",
            "--syslog-max-message-bytes",
        ),
    ] = None,
    parse_workers: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            show_default="one a core, at most 4; 0 on one core",
            help="Processes that read syslog TCP streams, OTLP requests and JSON records (the"
            " inputs that cost Python work a message), so they use the other cores; 0 reads"
            " them in the distributor itself.",
        ),
    ] = None,
    syslog_host: Annotated[
        str | None,
        opt(
            S,
            "host",
            "Address the syslog ports listen on. Syslog has no token: keep it loopback, or"
            " a network only senders reach.",
            "--syslog-host",
        ),
    ] = None,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(
            metavar="ORIGIN",
            show_default=False,
            help="An origin (scheme://host[:port]) besides the distributor's own whose pages may"
            " call the admin and control routes, e.g. a reverse proxy's public address;"
            " repeatable. Others get 403.",
        ),
    ] = None,
    emitter_networks: Annotated[
        list[str] | None,
        typer.Option(
            "--emitter-networks",
            metavar="CIDR",
            show_default=False,
            help="A network an emitter's control URL may point into besides the address it"
            " registered from, e.g. 10.0.0.0/8; repeatable. Others get 422.",
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            metavar="URL[,URL...]",
            show_default=False,
            help="Cluster mode: share the queue with other distributors on these NATS servers'"
            " JetStream (nats://HOST:PORT, comma-separated). Accepted packets are answered 202"
            " once the stream holds them; no spool.",
        ),
    ] = None,
    replica_id: Annotated[
        str | None,
        typer.Option("--id", show_default="d1", help="This distributor's name among the replicas."),
    ] = None,
    ack_wait: Annotated[
        float | None,
        opt(
            ClusterC,
            "ack_wait",
            "Cluster mode: seconds before a message this replica fetched and did not"
            " acknowledge goes to another replica.",
        ),
    ] = None,
    cluster_replicas: Annotated[
        int | None,
        opt(
            ClusterC,
            "replicas",
            "Cluster mode: NATS servers each stream message is kept on (1, 3 or 5; 1 for a"
            " single server).",
        ),
    ] = None,
    log_level: LogLevelOption = "INFO",
) -> None:
    """Accept packets on POST /log-packet and /log-packets and forward them by weight."""
    cfg = topology(config_file).distributor
    with config_errors():
        health = config.apply(
            cfg.health,
            interval=health_interval,
            timeout=health_timeout,
            rise=rise,
            fall=fall,
            max_probes=health_max_probes,
        )
        syslog = config.apply(
            cfg.syslog,
            tcp=syslog_tcp,
            udp=syslog_udp,
            host=syslog_host,
            max_message_bytes=syslog_max_message_bytes,
        )
        servers = tuple(u.strip() for u in cluster.split(",") if u.strip()) if cluster else None
        clustered = config.apply(
            cfg.cluster, servers=servers, ack_wait=ack_wait, replicas=cluster_replicas
        )
        refs = tuple(config.parse_analyzer_ref(a) for a in analyzer) if analyzer else None
        cfg = config.apply(
            cfg,
            port=port,
            host=host,
            analyzers=refs,
            queue_capacity=queue_capacity,
            max_pending=max_pending,
            max_requests=max_requests,
            forward_batch=forward_batch,
            run_messages=run_messages,
            forward_timeout=forward_timeout,
            search_timeout=search_timeout,
            drain_timeout=drain_timeout,
            admin_token=admin_token,
            ingest_token=ingest_token,
            state_dir=state_dir,
            log_buffer=log_buffer,
            max_body_bytes=max_body_bytes,
            max_batch_bytes=max_batch_bytes,
            retry_after=retry_after,
            queue_wait=queue_wait,
            spool_segment_bytes=spool_segment_bytes,
            spool_dir=spool_dir,
            spool_max_bytes=spool_max_bytes,
            fsync=fsync,
            max_refusals=max_refusals,
            dead_letter_dir=dead_letter_dir,
            dead_letter_max_bytes=dead_letter_max_bytes,
            emitter_lease=emitter_lease,
            emitter_forget=emitter_forget,
            parse_workers=parse_workers,
            allow_origins=tuple(allow_origin) if allow_origin else None,
            emitter_networks=tuple(emitter_networks) if emitter_networks else None,
        )
        cfg = dataclasses.replace(
            cfg, health=health, syslog=syslog, cluster=clustered, id=replica_id or cfg.id
        )
    from logdist.distributor.web.app import (
        make_app,
    )  # here, not at the top: `logdist --help` stays quick

    run_daemon("distributor", make_app, cfg, log_level)
