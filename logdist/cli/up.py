"""`logdist up`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from logdist.admin_client import DEFAULT_URL
from logdist.cli.common import config_errors, topology
from logdist.config import DEFAULT_CONFIG, SyslogConfig, Topology
from logdist.config.topology import TLS_DIR, load_toml
from logdist.errors import ConfigError
from logdist.local.supervisor import run_topology


def command_name() -> str:
    """How the user can type this command: `logdist` if that is on PATH, else the path run."""
    argv0 = sys.argv[0]
    found = shutil.which("logdist")
    if found and Path(found).resolve() == Path(argv0).resolve():
        return "logdist"
    return argv0


def banner(
    url: str,
    analyzers: list[str],
    emitters: list[str],
    state_dir: Path | None,
    syslog: SyslogConfig | None = None,
    store_dir: Path | None = None,
    replicas: tuple[str, ...] = (),
    nats: str | None = None,
    ca: str | None = None,
) -> str:
    a = analyzers[-1] if analyzers else "a1"
    e = emitters[0].split("…")[0] if emitters else "e1"
    ld = command_name()
    pairs = [
        (f"{ld} ctl status", f"{ld} top"),
        (f"{ld} ctl pause {e}", f"{ld} ctl rate {e} 50"),
        (f"{ld} ctl disable {a}", f"{ld} ctl weight {a} 1"),
        (f"{ld} tail logs -f", f"{ld} tail logs --level ERROR"),
    ]
    width = max(len(left) for left, _ in pairs) + 4
    what = f"distributor {url}"
    if len(replicas) > 1:
        what = f"distributor replicas {', '.join(replicas)}"
    lines = [
        f"logdist is up: {what}, analyzers {', '.join(analyzers) or '-'},"
        f" emitters {', '.join(emitters) or '-'}",
        f"  dashboard  {url}/",
    ]
    if nats is not None:
        lines.append(f"  cluster    {nats}; ctl works against any replica")
    if ca is not None:
        lines.append(f"  tls        every daemon and connection; the CA is {ca}")
        lines.append(f"             curl --cacert {ca} {url}/status")
        lines.append(f"             (export LOGDIST_CA={ca} for ctl, top and tail)")
    for i, (left, right) in enumerate(pairs):
        lines.append(f"  {'try' if i == 0 else '':<9}  {left:<{width}}{right}")
    lines.append(f"  logs in    OTLP/HTTP  {url}/v1/logs")
    lines.append(f"             records    {url}/log-records")
    if syslog is not None and (syslog.tcp or syslog.udp):
        ports = [f"{kind} {syslog.host}:{port}" for kind, port in
                 (("tcp", syslog.tcp), ("udp", syslog.udp)) if port]  # fmt: skip
        lines.append(f"             syslog     {', '.join(ports)}")
        if syslog.tcp:
            lines.append(
                f"             try        logger --tcp --rfc5424 --octet-count"
                f" -n {syslog.host} -P {syslog.tcp} hello"
            )
    if store_dir is not None:
        lines.append(
            f"  search     {ld} logs search --level ERROR --since 1h"
            f"    {ld} tail logs --since 10m -f"
        )
        lines.append(f"             (the analyzers store every message under {store_dir})")
    if url != DEFAULT_URL:
        lines.append(f"  (add --url {url}, or export LOGDIST_URL={url})")
    if state_dir is not None:
        lines.append(
            f"  runtime changes are kept in {state_dir}, accepted packets in the spool"
            " (--no-state to start afresh)"
        )
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


def with_tls(config_file: Path) -> Path:
    """`config_file` with `tls = true`, written beside the certificates (`up --tls`)."""
    import tomli_w

    with config_errors():
        data = load_toml(config_file)
        copy = Path(TLS_DIR) / "topology.toml"
        try:
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(tomli_w.dumps({**data, "tls": True}).encode())
        except OSError as exc:
            raise ConfigError(f"cannot write {copy}: {exc.strerror or exc}") from None
    return copy


def make_certificates(topo: Topology) -> str:
    """The local CA and each daemon's certificate (`tls = true`); the CA's path."""
    from logdist.local.certs import LocalCA, local_names  # cryptography: only when asked

    assert topo.tls is not None
    with config_errors():
        try:
            ca = LocalCA(Path(topo.tls))
            for name, host in topo.certificates():
                ca.issue(name, local_names(host))
        except OSError as exc:
            raise ConfigError(
                f"cannot make certificates in {topo.tls}: {exc.strerror or exc}"
            ) from None
    return str(ca.path)


def up(
    config_file: Annotated[
        Path, typer.Argument(help="Topology TOML file.", metavar="[CONFIG]")
    ] = DEFAULT_CONFIG,
    state_dir: Annotated[
        Path, typer.Option(help="Where the distributor keeps runtime admin changes.")
    ] = Path(".logdist/state"),
    spool_dir: Annotated[
        Path, typer.Option(help="The distributor's durable spool of accepted packets.")
    ] = Path(".logdist/spool"),
    store_dir: Annotated[
        Path,
        typer.Option(
            help="Where the analyzers it starts keep their searchable stores (one directory "
            "each, unless an analyzer's own `store` says otherwise)."
        ),
    ] = Path(".logdist/store"),
    store_max_bytes: Annotated[
        int,
        typer.Option(
            help="Retention for those stores, each, unless its `store_max_bytes` is set: the "
            "oldest segments go past this size (1 GiB)."
        ),
    ] = 1 << 30,
    nats_dir: Annotated[
        Path,
        typer.Option(
            help="With a [cluster] table: the NATS servers' configs and JetStream data (the"
            " shared queue and the control bucket), one directory each."
        ),
    ] = Path(".logdist/nats"),
    no_state: Annotated[
        bool,
        typer.Option(
            "--no-state",
            help="Keep no state, spool, stores or JetStream data; start from the config alone.",
        ),
    ] = False,
    tls: Annotated[
        bool,
        typer.Option(
            "--tls",
            help="Run every daemon and every connection between them over TLS, as `tls = true`"
            f" in the topology does: a local CA and each daemon's certificate in {TLS_DIR}"
            " (made once and kept; trust its ca.pem).",
        ),
    ] = False,
) -> None:
    """Run a whole local topology (analyzers, distributor, emitters); Ctrl-C stops all.

    SIGTERM and SIGHUP (the terminal closed) stop all gracefully too; if this process is
    killed, its daemons stop by themselves. Ports already taken are named, and nothing starts.
    """
    topo = topology(config_file)
    if tls and topo.tls is None:
        config_file = with_tls(config_file)
        topo = topology(config_file)
    ca = None if topo.tls is None else make_certificates(topo)
    d = topo.distributor
    state, spool = (None, None) if no_state or topo.cluster else (state_dir, spool_dir)
    nats = None
    if topo.cluster is not None:
        servers = d.cluster.servers or topo.cluster.nats_urls(tls=topo.tls is not None)
        where = "a temporary directory (--no-state)" if no_state else str(nats_dir)
        started = "" if d.cluster.servers else f" started here, data in {where}"
        nats = f"NATS JetStream {', '.join(servers)}{started}"
    if not no_state:
        with config_errors():  # --store-max-bytes is checked as the TOML key is
            stores = [
                dataclasses.replace(
                    a,
                    store=a.store or str(store_dir / a.id),
                    store_max_bytes=a.store_max_bytes or store_max_bytes,
                )
                for a in topo.analyzers
            ]
        topo = dataclasses.replace(topo, analyzers=tuple(stores))
    text = banner(
        topo.replica_urls()[0],
        [a.id for a in topo.analyzers],
        [e.id if not e.fleet else f"{e.id}-0…{e.id}-{e.fleet - 1}" for e in topo.emitters],
        state,
        d.syslog,
        store_dir if any(a.store for a in topo.analyzers) else None,
        topo.replica_urls(),
        nats,
        ca,
    )
    if topo.cluster is None or d.cluster.servers:
        code = asyncio.run(run_topology(topo, config_file, text, state, spool))
    else:
        with config_errors(), contextlib.ExitStack() as stack:
            if no_state:
                nats_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nats-")))
            code = asyncio.run(run_topology(topo, config_file, text, nats_dir=nats_dir))
    raise typer.Exit(code)
