"""A topology file: the distributor, the analyzers and emitters to start, read from TOML with
each key checked against the settings' fields."""

from __future__ import annotations

import dataclasses
import tomllib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from logdist.config.daemons import AnalyzerConfig, DistributorConfig, EmitterConfig
from logdist.config.fields import check_port, flag_of, parse_duration, parse_messages, require
from logdist.config.refs import AnalyzerRef
from logdist.config.tables import (
    ClientConfig,
    ClusterConfig,
    EmitterLimit,
    HealthConfig,
    LimitsConfig,
    SyslogConfig,
    TlsConfig,
    emitter_limits_of,
)
from logdist.core.delivery import BASE_KEYS, OPTIONS, delivery_from
from logdist.errors import ConfigError, InvalidRequest

DEFAULT_CONFIG = Path("configs/demo.toml")
# Where `tls = true` keeps the local CA and the daemons' certificates (`logdist up` makes them).
TLS_DIR = ".logdist/tls"


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
        require(1 <= self.distributors <= 9, f"distributors must be 1-9, got {self.distributors}")
        require(
            self.nats_servers in (1, 3, 5),
            f"nats_servers must be 1, 3 or 5 (a JetStream quorum), got {self.nats_servers}",
        )
        check_port("nats_port", self.nats_port)
        check_port("routes_port", self.routes_port)
        n = self.nats_servers
        require(
            self.nats_port + n <= self.routes_port or self.routes_port + n <= self.nats_port,
            f"nats_port {self.nats_port} and routes_port {self.routes_port} must be {n} or more"
            " apart (each server takes the next port of both)",
        )
        require(
            1 << 20 <= self.max_payload <= 64 << 20,
            f"max_payload must be 1 MiB-64 MiB, got {self.max_payload}",
        )

    def nats_urls(self, tls: bool = False) -> tuple[str, ...]:
        scheme = "tls" if tls else "nats"
        return tuple(f"{scheme}://127.0.0.1:{self.nats_port + i}" for i in range(self.nats_servers))


@dataclass(frozen=True)
class Topology:
    """A whole local pipeline: the distributor, the analyzers to start, the emitters to start
    (and, with `cluster`, the distributor's replicas and the NATS servers under them)."""

    distributor: DistributorConfig = field(default_factory=DistributorConfig)
    analyzers: tuple[AnalyzerConfig, ...] = ()
    emitters: tuple[EmitterConfig, ...] = ()
    cluster: LocalCluster | None = None
    # `tls = true` (or `[tls] dir = ...`): every daemon's certificate and the CA are here.
    tls: str | None = None

    def replica_urls(self) -> tuple[str, ...]:
        d = self.distributor
        count = self.cluster.distributors if self.cluster is not None else 1
        scheme = "http" if d.tls.cert is None else "https"
        return tuple(f"{scheme}://{d.host}:{d.port + k}" for k in range(count))

    def certificates(self) -> list[tuple[str, str]]:
        """With `tls`: each daemon's certificate name and the address it binds."""
        names = [("distributor", self.distributor.host)]
        names += [(f"analyzer-{a.id}", a.host) for a in self.analyzers]
        if self.cluster is not None and not self.distributor.cluster.servers:
            names.append(("nats", "127.0.0.1"))  # the NATS servers `up` starts
        return names + [(f"emitter-{e.id}", e.host) for e in self.emitters]


def _tls_dir(value: Any, where: str) -> str | None:
    """The topology's `tls`: true (the CA and certificates in TLS_DIR), or a table naming
    their `dir`."""
    if value is None or value is False:
        return None
    if value is True:
        return TLS_DIR
    require(
        isinstance(value, dict) and set(value) <= {"dir"} and isinstance(value.get("dir"), str),
        f'{where}: tls must be true or a table with dir = "PATH", got {value!r}',
    )
    return str(value["dir"])


def _with_tls(table: dict[str, Any], folder: str | None, name: str, client: bool) -> dict[str, Any]:
    """`table` with the certificate `name` in `folder` (and the CA to trust) unless it names
    its own."""
    if folder is None:
        return table
    table = {"tls": {"cert": f"{folder}/{name}.pem", "key": f"{folder}/{name}.key"}, **table}
    if client:
        table = {"client": {"ca": f"{folder}/ca.pem"}, **table}
    return table


def _convert(where: str, name: str, hint: Any, value: Any, duration: bool = False) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        return _convert(where, name, options[0], value, duration)
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if duration and isinstance(value, str):
            return parse_duration(name, value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint in (HealthConfig, SyslogConfig, ClusterConfig, TlsConfig, ClientConfig, LimitsConfig):
        if isinstance(value, dict):
            return _build(hint, value, f"{where}.{name}")
    elif hint == tuple[EmitterLimit, ...]:
        return emitter_limits_of(where, value)
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
    given: dict[str, Any] | None = None,
) -> Any:
    """`cls` from a TOML table; `also` are keys the caller took out of it beforehand, and
    `given` values it made of them."""
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)} - set(skip)
    unknown = sorted(set(table) - known)
    require(
        not unknown,
        f"{where}: unknown key(s) {', '.join(unknown)};"
        f" known: {', '.join(sorted(known | set(also)))}",
    )
    durations = {f.name for f in dataclasses.fields(cls) if (flag := flag_of(f)) and flag.duration}
    values = {k: _convert(where, k, hints[k], v, k in durations) for k, v in table.items()}
    values.update(given or {})
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None


def _analyzer_entry(
    where: str, table: dict[str, Any], tls: str | None = None
) -> tuple[AnalyzerConfig | None, AnalyzerRef]:
    """An [[analyzers]] entry: with `url` it is external; without, one to start locally.

    Either kind may say how the distributor delivers to it (format, headers, health_url,
    health, compression, and the format's options).
    """
    table = dict(table)
    fmt = table.get("format")
    # A format's own options (a splunk-hec analyzer's `host`, say) only for that format.
    keys = (
        BASE_KEYS + tuple(o.name for o in OPTIONS.get(fmt, ()))
        if isinstance(fmt, str)
        else BASE_KEYS
    )
    values = {k: table.pop(k) for k in keys if k in table}
    try:
        delivery = delivery_from(values)
    except InvalidRequest as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
    if "url" in table:
        ref = _build(
            AnalyzerRef, table, where, skip=("delivery",), also=keys, given={"delivery": delivery}
        )
        return None, ref
    table = _with_tls(table, tls, f"analyzer-{table.get('id', 'a1')}", client=False)
    local = _build(AnalyzerConfig, table, where, also=keys)
    return local, AnalyzerRef(local.id, local.ingest_url, local.weight, delivery)


def topology_from_dict(data: dict[str, Any], where: str) -> Topology:
    unknown = sorted(set(data) - {"distributor", "analyzers", "emitters", "cluster", "tls"})
    require(
        not unknown,
        f"{where}: unknown section(s) {', '.join(unknown)};"
        " known: distributor, analyzers, emitters, cluster, tls",
    )
    tls = _tls_dir(data.get("tls"), where)
    local: list[AnalyzerConfig] = []
    refs: list[AnalyzerRef] = []
    for i, table in enumerate(_tables(data, "analyzers", where)):
        cfg, ref = _analyzer_entry(f"{where}: analyzers[{i}]", table, tls)
        if cfg is not None:
            local.append(cfg)
        refs.append(ref)
    dist_table = data.get("distributor", {})
    require(isinstance(dist_table, dict), f"{where}: [distributor] must be a table")
    dist_table = _with_tls(dist_table, tls, "distributor", client=True)
    distributor = _build(
        DistributorConfig, dist_table, f"{where}: [distributor]", skip=("analyzers",)
    )
    distributor = dataclasses.replace(distributor, analyzers=tuple(refs))
    cluster = None
    if "cluster" in data:
        require(isinstance(data["cluster"], dict), f"{where}: [cluster] must be a table")
        cluster = _build(LocalCluster, data["cluster"], f"{where}: [cluster]")
        require(
            bool(distributor.cluster.servers)
            or distributor.cluster.replicas <= cluster.nats_servers,
            f"{where}: [distributor.cluster] replicas ({distributor.cluster.replicas}) cannot"
            f" exceed [cluster] nats_servers ({cluster.nats_servers})",
        )
        require(
            distributor.port != 0 and distributor.port + cluster.distributors - 1 <= 65535,
            f"{where}: a cluster's replicas need a fixed [distributor] port",
        )
    topo = Topology(distributor, tuple(local), (), cluster, tls)
    # Emitters send to this topology's distributor (every replica) unless told otherwise.
    here = list(topo.replica_urls())
    emitters = tuple(
        _build(
            EmitterConfig,
            _with_tls({"distributor": here, **t}, tls, f"emitter-{t.get('id', 'e1')}", True),
            f"{where}: emitters[{i}]",
        )
        for i, t in enumerate(_tables(data, "emitters", where))
    )
    return dataclasses.replace(topo, emitters=emitters)


def _tables(data: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    tables = data.get(key, [])
    require(
        isinstance(tables, list) and all(isinstance(t, dict) for t in tables),
        f"{where}: {key} must be an array of tables ([[{key}]])",
    )
    return list(tables)


def load_toml(path: Path) -> dict[str, Any]:
    """A TOML file's tables; any problem is one ConfigError naming the file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_topology(path: str | Path) -> Topology:
    """Read a topology TOML file; any problem is one ConfigError naming the file."""
    path = Path(path)
    data = load_toml(path)
    try:
        return topology_from_dict(data, str(path))
    except ConfigError as exc:
        if exc.message.startswith(str(path)):
            raise
        raise ConfigError(f"{path}: {exc.message}") from None
