"""NATS servers for a local cluster (`logdist up` with a `[cluster]` table): Debian's
`nats-server`, JetStream on, clustered over loopback routes, each with its own config file
and data directory under one base directory."""

from __future__ import annotations

import shutil
from pathlib import Path

from logdist.config import LocalCluster
from logdist.errors import ConfigError

CLUSTER_NAME = "logdist"


def nats_server() -> str:
    """The nats-server binary (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/bin")
    if found is None:
        raise ConfigError(
            "a cluster needs nats-server (Debian's package nats-server; scripts/setup installs it)"
        )
    return found


def server_config(cluster: LocalCluster, i: int, base: Path, tls: str | None = None) -> str:
    """nats-server's config for server `i` (0-based) of `cluster`, its data in base/n<i+1>;
    with `tls` (the folder of `logdist up --tls`'s CA and its `nats` certificate) clients and
    routes speak TLS, the routes verifying each other."""
    name = f"n{i + 1}"
    routes = ", ".join(
        f'"nats-route://127.0.0.1:{cluster.routes_port + k}"'
        for k in range(cluster.nats_servers)
        if k != i
    )
    store = (base / name).resolve()
    lines = [
        f"server_name: {name}",
        "host: 127.0.0.1",
        f"port: {cluster.nats_port + i}",
        f"max_payload: {cluster.max_payload}",
        f'jetstream {{ store_dir: "{store}" }}',
        # Its own log goes to a file beside its data; `up` shows only that it started.
        f'log_file: "{(base / f"{name}.log").resolve()}"',
    ]
    secure = ""
    if tls is not None:
        folder = Path(tls).resolve()
        secure = (
            f'tls {{ cert_file: "{folder}/nats.pem", key_file: "{folder}/nats.key",'
            f' ca_file: "{folder}/ca.pem" }}'
        )
        lines.append(secure)
    if cluster.nats_servers > 1:
        lines.append(
            f"cluster {{ name: {CLUSTER_NAME}, host: 127.0.0.1,"
            f" port: {cluster.routes_port + i}, routes: [{routes}]"
            + (f", {secure}" if secure else "")
            + " }"
        )
    return "\n".join(lines) + "\n"


def write_configs(
    cluster: LocalCluster, base: Path, tls: str | None = None
) -> list[tuple[str, list[str]]]:
    """Write each server's config under `base`; (name, argv) to start each."""
    binary = nats_server()
    base.mkdir(parents=True, exist_ok=True)
    servers = []
    for i in range(cluster.nats_servers):
        path = base / f"n{i + 1}.conf"
        path.write_text(server_config(cluster, i, base, tls))
        servers.append((f"n{i + 1}", [binary, "-c", str(path.resolve())]))
    return servers


def ports(cluster: LocalCluster) -> list[tuple[str, int]]:
    """(name, port) of every port the servers listen on, for the busy-port check."""
    out = [(f"nats n{i + 1}", cluster.nats_port + i) for i in range(cluster.nats_servers)]
    if cluster.nats_servers > 1:
        out += [(f"nats n{i + 1} routes", cluster.routes_port + i) for i in
                range(cluster.nats_servers)]  # fmt: skip
    return out
