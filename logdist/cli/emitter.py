"""`logdist emitter start`."""

from __future__ import annotations

from typing import Annotated

import typer

from logdist import config
from logdist.cli.common import HostOption, LogLevelOption, config_errors, opt, run_daemon
from logdist.config import EmitterConfig as C

app = typer.Typer(
    help="Emitters: generate log packets and deliver them to the distributor.", no_args_is_help=True
)


@app.command()
def start(
    id: Annotated[str | None, opt(C, "id", "Emitter id.", "--id")] = None,
    distributor: Annotated[
        list[str] | None,
        opt(
            C,
            "distributor",
            "Distributor base URL; repeat it for a cluster's replicas: requests are spread"
            " over them, and one that refuses connections, times out or answers 5xx is"
            " stepped around until its backoff has passed (nothing lost, the buffer's order"
            " kept).",
            metavar="URL",
        ),
    ] = None,
    rate: Annotated[
        float | None, opt(C, "rate", "Packets per second (0 = generate nothing).")
    ] = None,
    messages: Annotated[
        str | None, opt(C, "messages", "Messages per packet: N or MIN-MAX.", metavar="N|MIN-MAX")
    ] = None,
    port: Annotated[int | None, opt(C, "port", "Control API port (0 = any free port).")] = None,
    host: HostOption = None,
    buffer: Annotated[
        int | None, opt(C, "buffer", "Packets kept until acknowledged; generation waits when full.")
    ] = None,
    concurrency: Annotated[
        int | None, opt(C, "concurrency", "Requests in flight to the distributor.")
    ] = None,
    timeout: Annotated[
        float | None, opt(C, "timeout", "Seconds before a send counts as failed.")
    ] = None,
    track_ids: Annotated[
        int | None, opt(C, "track_ids", "Delivered ids kept for GET /sent?ids=1.")
    ] = None,
    register_interval: Annotated[
        float | None,
        opt(
            C,
            "register_interval",
            "Seconds between lease renewals when the distributor does not say (it asks for a"
            " third of its --emitter-lease); a change of state renews at once.",
        ),
    ] = None,
    drain_timeout: Annotated[
        float | None, opt(C, "drain_timeout", "Seconds to flush the buffer on shutdown.")
    ] = None,
    service: Annotated[str | None, opt(C, "service", "The messages' service field.")] = None,
    fleet: Annotated[
        int | None,
        opt(
            C,
            "fleet",
            "Run N emitters ID-0 … ID-(N-1) in this process, each with the rate, buffer and"
            " concurrency given, registered and controlled one by one (control API at"
            " /e/ID/...).",
            metavar="N",
        ),
    ] = None,
    fleet_batch: Annotated[
        int | None,
        opt(
            C,
            "fleet_batch",
            "A fleet's packets per request: 1 posts each member's packet alone to /log-packet,"
            " as separate emitters would; N > 1 sends up to N members' packets that are ready"
            " together as one NDJSON request to /log-packets (each keeps its packetId and"
            " emitter id), as a host's log shipper would.",
            metavar="N",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="LOGDIST_INGEST_TOKEN",
            help="The distributor's ingest token.",
            show_default=False,
        ),
    ] = None,
    log_level: LogLevelOption = "INFO",
) -> None:
    """Send packets in the seed's format to POST /log-packet; control API on --port."""
    with config_errors():
        cfg = config.apply(
            C(),
            id=id,
            distributor=tuple(distributor) if distributor else None,
            rate=rate,
            messages=messages,
            port=port,
            host=host,
            buffer=buffer,
            concurrency=concurrency,
            timeout=timeout,
            track_ids=track_ids,
            register_interval=register_interval,
            drain_timeout=drain_timeout,
            service=service,
            fleet=fleet,
            fleet_batch=fleet_batch,
            token=token,
        )
    from logdist.emitter import make_app  # here, not at the top: `logdist --help` stays quick

    run_daemon("emitter", make_app, cfg, log_level)
