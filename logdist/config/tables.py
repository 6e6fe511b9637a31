"""The daemons' nested tables: [distributor.health], .syslog, .cluster and .limits, and every
daemon's .tls (what it serves) and .client (how it connects to others)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logdist.config.fields import check_port, check_positive, require, setting
from logdist.errors import ConfigError


def _file(help: str, **flag: Any) -> Any:
    return setting(None, help, cli_type=Path, convert=str, show_default=False, **flag)


@dataclass(frozen=True)
class TlsConfig:
    """What a daemon serves TLS with, on every port it listens on (none: plain)."""

    cert: str | None = _file(
        "Serve TLS on every port with this certificate (PEM, the chain after it); the file is"
        " read again when it changes, so a renewed one is used without a restart."
    )
    key: str | None = _file("The certificate's private key (PEM).")
    client_ca: str | None = _file(
        "Mutual TLS: refuse, in the handshake, any client without a certificate signed by"
        " this CA (PEM)."
    )

    def __post_init__(self) -> None:
        require(
            (self.cert is None) == (self.key is None),
            "tls: cert and key go together (--tls-cert and --tls-key)",
        )
        require(
            self.client_ca is None or self.cert is not None,
            "tls: client_ca needs cert and key (mutual TLS is TLS first)",
        )


@dataclass(frozen=True)
class ClientConfig:
    """How a daemon or command connects to others over https:// and tls://."""

    ca: str | None = _file(
        "Trust servers whose certificates this CA (PEM) signed, instead of the system's store.",
        decls=("--ca",),
    )
    cert: str | None = _file(
        "A client certificate (PEM) to present to servers that ask for one (mutual TLS).",
        decls=("--client-cert",),
    )
    key: str | None = _file("The client certificate's private key (PEM).", decls=("--client-key",))
    insecure: bool = setting(
        False,
        "Do not verify servers' certificates (anyone on the path can read and change what is"
        " sent): a warning is logged at every start.",
        decls=("--insecure",),
        show_default=False,
    )

    def __post_init__(self) -> None:
        require(
            (self.cert is None) == (self.key is None),
            "client: cert and key go together (--client-cert and --client-key)",
        )


@dataclass(frozen=True)
class HealthConfig:
    """Active probes: `GET /health` every `interval` s, `fall` failures down, `rise` ok up."""

    interval: float = setting(1.0, "Seconds between health probes.")
    timeout: float = setting(1.0, "Seconds before a probe fails.")
    # A probe costs about 0.5 ms of CPU.
    max_probes: float = setting(
        50.0,
        "Health probes a second at most; past max-probes x interval analyzers each is"
        " probed less often (forwards judge health in between).",
    )
    rise: int = setting(2, "Good probes in a row that bring an analyzer up.", decls=("--rise",))
    fall: int = setting(
        3, "Failed probes (or forwards) in a row that mark it down.", decls=("--fall",)
    )

    def __post_init__(self) -> None:
        check_positive("health interval", self.interval)
        check_positive("health max_probes", self.max_probes)
        check_positive("health timeout", self.timeout)
        require(self.rise >= 1, f"health rise must be >= 1, got {self.rise}")
        require(self.fall >= 1, f"health fall must be >= 1, got {self.fall}")


@dataclass(frozen=True)
class SyslogConfig:
    """Syslog listeners (RFC 5424 / 3164; TCP framed as RFC 6587 says, or UDP), off unless a
    port is given. They bind loopback unless `host` says otherwise: syslog has no token."""

    tcp: int | None = setting(
        None,
        "Take syslog (RFC 5424 or 3164) on this TCP port, octet-counted or newline-framed"
        " (RFC 6587). When the queue is full it stops reading: the senders wait.",
        metavar="PORT",
    )
    tls: int | None = setting(
        None,
        "Take syslog over TLS (RFC 5425, octet-counted) on this TCP port, with the"
        " distributor's --tls-cert (and --tls-client-ca, if given).",
        metavar="PORT",
    )
    udp: int | None = setting(
        None,
        "Take syslog datagrams on this UDP port. UDP cannot wait: what comes while the"
        " queue is full is dropped, counted and logged.",
        metavar="PORT",
    )
    max_message_bytes: int = setting(
        64 << 10, "A syslog message longer than this is skipped and counted (payload_too_large)."
    )
    host: str = setting(
        "127.0.0.1",
        "Address the syslog ports listen on. Syslog has no token: keep it loopback, or"
        " a network only senders reach.",
    )

    def __post_init__(self) -> None:
        for name in ("tcp", "tls", "udp"):
            port = getattr(self, name)
            if port is not None:
                check_port(f"syslog {name}", port)
        require(
            self.max_message_bytes >= 480,  # RFC 5424: every receiver takes 480 octets
            f"syslog max_message_bytes must be >= 480, got {self.max_message_bytes}",
        )


def _servers(text: str) -> tuple[str, ...]:
    return tuple(u.strip() for u in text.split(",") if u.strip())


@dataclass(frozen=True)
class ClusterConfig:
    """Cluster mode: the NATS servers whose JetStream holds the shared queue (none: off)."""

    servers: tuple[str, ...] = setting(
        (),
        "Cluster mode: share the queue with other distributors on these NATS servers'"
        " JetStream (nats://HOST:PORT, comma-separated). Accepted packets are answered 202"
        " once the stream holds them; no spool.",
        decls=("--cluster",),
        metavar="URL[,URL...]",
        show_default=False,
        cli_type=str,
        convert=_servers,
    )
    stream: str = "LOGDIST"
    # Held messages are kept alive while they are worked on.
    ack_wait: float = setting(
        30.0,
        "Cluster mode: seconds before a message this replica fetched and did not"
        " acknowledge goes to another replica.",
        decls=("--ack-wait",),
    )
    # JetStream's replicas.
    replicas: int = setting(
        3,
        "Cluster mode: NATS servers each stream message is kept on (1, 3 or 5; 1 for a"
        " single server).",
    )
    # Stream messages a replica holds fetched and unacknowledged at most.
    max_in_flight: int = 1024
    max_bytes: int = setting(
        1 << 30,
        "Cluster mode: the stream's size in bytes. Past fair_share_above of it, an emitter"
        " past its fair share of the stream is answered 429; past all of it, everyone 503"
        " until messages are delivered.",
        decls=("--cluster-max-bytes",),
        metavar="BYTES",
    )

    def __post_init__(self) -> None:
        for url in self.servers:
            scheme, _, rest = url.partition("://")
            require(
                scheme in ("nats", "tls") and bool(rest),
                f"cluster servers must be nats://HOST:PORT or tls://HOST:PORT URLs, got {url!r}",
            )
        require(
            bool(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.stream)),
            f"cluster stream must be letters, digits, _ or -, got {self.stream!r}",
        )
        require(1 <= self.replicas <= 5, f"cluster replicas must be 1-5, got {self.replicas}")
        check_positive("cluster ack_wait", self.ack_wait)
        require(self.max_in_flight >= 1, "cluster max_in_flight must be >= 1")
        require(self.max_bytes >= 1 << 20, "cluster max_bytes must be at least 1 MiB")


@dataclass(frozen=True)
class EmitterLimit:
    """A rate limit for the emitters an id names (`web-7`), or an id prefix (`web-*`)."""

    pattern: str
    rate: float  # messages a second; 0: none
    burst: float | None = None  # messages at once; None: a second's worth

    def __post_init__(self) -> None:
        stem = self.pattern.removesuffix("*")
        require(
            0 < len(self.pattern) <= 200 and "*" not in stem,
            f"an emitter limit is for an id or an id prefix ending in *, got {self.pattern!r}",
        )
        check_limit(f"limit for {self.pattern!r}", self.rate, self.burst)

    def matches(self, emitter: str) -> bool:
        if self.pattern.endswith("*"):
            return emitter.startswith(self.pattern[:-1])
        return emitter == self.pattern


def check_limit(what: str, rate: float, burst: float | None) -> None:
    require(math.isfinite(rate) and rate >= 0, f"{what}: rate must be >= 0 (0: none), got {rate}")
    require(
        burst is None or (math.isfinite(burst) and burst >= 1),
        f"{what}: burst must be at least 1 message, got {burst}",
    )


def emitter_limits_of(where: str, value: object) -> tuple[EmitterLimit, ...]:
    """`[distributor.limits.emitters]`: `"ID" = RATE` or `"PREFIX*" = {rate = R, burst = B}`."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: emitters must be a table of id (or prefix*) = limit")
    out = []
    for pattern, limit in value.items():
        if isinstance(limit, int | float) and not isinstance(limit, bool):
            limit = {"rate": limit}
        if not isinstance(limit, dict) or set(limit) - {"rate", "burst"} or "rate" not in limit:
            raise ConfigError(
                f"{where}.emitters: {pattern!r} must be a rate or {{rate = R, burst = B}}, got"
                f" {limit!r}"
            )
        try:
            out.append(emitter_limit(pattern, limit["rate"], limit.get("burst")))
        except ConfigError as exc:
            raise ConfigError(f"{where}.emitters: {exc.message}") from None
    return tuple(out)


def emitter_limit(pattern: str, rate: object, burst: object = None) -> EmitterLimit:
    """A limit of values as TOML or JSON gave them (ConfigError saying what is wrong)."""
    for name, number in (("rate", rate), ("burst", burst)):
        if (number is not None or name == "rate") and (
            isinstance(number, bool) or not isinstance(number, int | float)
        ):
            raise ConfigError(f"{pattern!r} {name} must be a number, got {number!r}")
    assert isinstance(rate, int | float) and (burst is None or isinstance(burst, int | float))
    return EmitterLimit(pattern, float(rate), None if burst is None else float(burst))


@dataclass(frozen=True)
class LimitsConfig:
    """Per-emitter rate limits (messages a second, a token bucket each), as Loki's per-tenant
    ingestion limits: past its limit an emitter is answered 429 with Retry-After."""

    rate: float = setting(
        0.0,
        "Messages a second each emitter may send (a token bucket each; past it: 429 with"
        " Retry-After); 0: no limit. Overrides per emitter id or id prefix in TOML"
        " ([distributor.limits.emitters]), and at runtime with `logdist ctl limit`.",
        decls=("--emitter-rate",),
        metavar="MESSAGES/S",
    )
    burst: float | None = setting(
        None,
        "Messages an emitter may send at once past its rate (default: a second's worth).",
        decls=("--emitter-burst",),
        metavar="MESSAGES",
        show_default=False,
    )
    emitters: tuple[EmitterLimit, ...] = ()

    def __post_init__(self) -> None:
        check_limit("emitter limits", self.rate, self.burst)
