"""TLS on every daemon's ports and every client's connections.

A listener with TLS accepts connections itself and has each one's handshake done
(`loop.connect_accepted_socket`) before the daemon's own protocol (the fast path, aiohttp, a
syslog stream) sees a byte: so a failed handshake — plain HTTP sent to the TLS port,
garbage, a client that stops half way (bounded by `HANDSHAKE_TIMEOUT`), a client certificate
the CA did not sign or that has expired — is counted by its reason and logged the first time
that reason is seen, and costs no more than its socket. Each handshake takes the context
current at that moment: the certificate files are looked at (at most once a `RELOAD_EVERY`
seconds) and loaded again when they change, so a renewed certificate is served from the next
connection on, without a restart; a file that does not load (a half-written renewal) keeps
the last good one.

Clients take `client_context`: the system's trust store or `--ca`, a client certificate for
mutual TLS, and verification off only with `--insecure`, which warns at every start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from logdist.config.tables import ClientConfig, TlsConfig
from logdist.errors import ConfigError, PlainHttp
from logdist.events import event
from logdist.net.answers import error

log = logging.getLogger("logdist.tls")

# Seconds a client has to finish its handshake.
HANDSHAKE_TIMEOUT = 10.0
# Seconds between looks at the certificate files.
RELOAD_EVERY = 1.0

# OpenSSL's reasons, as a person reading the log would put them.
REASONS = {
    "HTTP_REQUEST": "plain_http",
    "HTTPS_PROXY_REQUEST": "plain_http",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no_client_certificate",
    "CERTIFICATE_VERIFY_FAILED": "client_certificate_refused",
    "TLSV1_ALERT_UNKNOWN_CA": "client_distrusts_us",
    "SSLV3_ALERT_BAD_CERTIFICATE": "client_distrusts_us",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "client_distrusts_us",
    "UNSUPPORTED_PROTOCOL": "old_protocol",
    "TLSV1_ALERT_PROTOCOL_VERSION": "old_protocol",
    "NO_SHARED_CIPHER": "no_shared_cipher",
}
HINTS = {
    "plain_http": "this port speaks TLS: use https://",
    "not_tls": "what came is not a TLS handshake",
    "no_client_certificate": "mutual TLS: the client must present a certificate",
    "client_certificate_refused": "the client's certificate is not signed by --tls-client-ca,"
    " or has expired",
    "client_distrusts_us": "the client does not trust this daemon's certificate (its --ca?)",
    "timeout": "the client did not finish its handshake in time (a slow or stalled client)",
    "closed": "the client closed the connection during the handshake",
}


class PlainHttpSent(OSError):
    """A plain HTTP request came to the TLS port (answered 400)."""


def reason_of(exc: BaseException) -> str:
    """A refused handshake's reason, as counted and logged."""
    if isinstance(exc, PlainHttpSent):
        return "plain_http"
    if isinstance(exc, ssl.SSLError):
        return REASONS.get(getattr(exc, "reason", None) or "", "not_tls")
    if isinstance(exc, TimeoutError) or "longer than" in str(exc):
        return "timeout"  # asyncio aborts a slow handshake with ConnectionAbortedError
    return "closed"


def _stamp(path: str | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return getattr(exc, "reason", None) or str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


class ServerTls:
    """A listener's TLS: the context (reloaded when its files change), the handshakes done
    and refused by reason."""

    def __init__(self, cfg: TlsConfig, daemon: str) -> None:
        assert cfg.cert is not None and cfg.key is not None
        self.daemon = daemon
        self.files = (cfg.cert, cfg.key, cfg.client_ca)
        self.stamps = tuple(map(_stamp, self.files))
        self.context = self.load()  # a ConfigError at start
        self.checked = time.monotonic()
        self.handshakes = 0
        self.refused: Counter[str] = Counter()
        self.reloads = 0

    @classmethod
    def of(cls, cfg: TlsConfig, daemon: str) -> ServerTls | None:
        return None if cfg.cert is None else cls(cfg, daemon)

    def load(self) -> ssl.SSLContext:
        cert, key, client_ca = self.files
        # The standard library's server defaults; clients are verified against client_ca
        # alone, never the system's store (a public CA must not vouch for a client).
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"tls: cannot load the certificate {cert} with the key {key}: {_why(exc)}"
            ) from None
        if client_ca is not None:
            try:
                ctx.load_verify_locations(client_ca)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"tls: cannot load client_ca {client_ca}: {_why(exc)}") from None
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def current(self) -> ssl.SSLContext:
        """The context for a handshake starting now: a changed file is loaded first."""
        now = time.monotonic()
        if now - self.checked >= RELOAD_EVERY:
            self.checked = now
            stamps = tuple(map(_stamp, self.files))
            if stamps != self.stamps:
                self.stamps = stamps
                self.reload()
        return self.context

    def reload(self) -> None:
        try:
            self.context = self.load()
        except ConfigError as exc:
            event(log, "tls_reload_failed", logging.WARNING, daemon=self.daemon,
                  error=exc.message, kept="the last certificate that loaded")  # fmt: skip
            return
        self.reloads += 1
        event(log, "tls_reloaded", daemon=self.daemon, cert=self.files[0])

    def failed(self, exc: BaseException, peer: str) -> None:
        reason = reason_of(exc)
        self.refused[reason] += 1
        if self.refused[reason] == 1:
            event(log, "tls_refused", logging.WARNING, daemon=self.daemon, reason=reason,
                  peer=peer, detail=_why(exc), hint=HINTS.get(reason, ""),
                  note="logged once a reason; all are counted")  # fmt: skip

    async def serve(
        self, factory: Callable[[], asyncio.BaseProtocol], host: str, port: int, backlog: int = 4096
    ) -> TlsServer:
        """Listen on host:port; each connection is `factory`'s once its handshake is done.
        An address that cannot be bound is an OSError."""
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = info[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return TlsServer(self, sock, factory)


# What a plain HTTP client gets from a TLS port (nginx answers it too), instead of a
# connection closed without a word.
PLAIN_HTTP_ANSWER = error(PlainHttp("this port speaks TLS: use https://"), close=True)
# What a request line starts with; a TLS connection starts with a handshake record (0x16).
METHOD = re.compile(rb"[A-Z]{3,7} ")
MAX_HEAD = 64 * 1024


async def plain_http(conn: socket.socket) -> bool:
    """Whether the client's first bytes are an HTTP request (answered 400 here), waiting for
    them at most HANDSHAKE_TIMEOUT (TimeoutError)."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(conn.fileno(), ready)
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            await readable
    finally:
        loop.remove_reader(conn.fileno())
    first = conn.recv(8, socket.MSG_PEEK)
    if not first:
        raise ConnectionResetError("closed before its handshake")
    if first[0] == 0x16 or not METHOD.match(first):
        return False
    with contextlib.suppress(OSError):
        conn.recv(MAX_HEAD)  # read, so that closing does not reset the connection
        conn.send(PLAIN_HTTP_ANSWER)
        conn.shutdown(socket.SHUT_WR)
    return True


class TlsServer:
    """A listening socket whose connections are handed to the daemon's protocol once their
    handshake is done (`loop.connect_accepted_socket`, which says when one fails): what
    `loop.create_server` returns, for what the daemons use of it."""

    def __init__(
        self, tls: ServerTls, sock: socket.socket, factory: Callable[[], asyncio.BaseProtocol]
    ) -> None:
        self.tls = tls
        self.sockets = [sock]
        self.factory = factory
        self.handshaking: set[asyncio.Task[None]] = set()
        self.task = asyncio.get_running_loop().create_task(self.accept())

    async def accept(self) -> None:
        loop = asyncio.get_running_loop()
        sock = self.sockets[0]
        while True:
            try:
                conn, peer = await loop.sock_accept(sock)
            except OSError as exc:  # out of file descriptors: wait, as nginx does
                event(log, "accept_failed", logging.ERROR, daemon=self.tls.daemon,
                      error=exc.strerror or str(exc))  # fmt: skip
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self.handshake(conn, peer))
            self.handshaking.add(task)
            task.add_done_callback(self.handshaking.discard)

    async def handshake(self, conn: socket.socket, peer: Any) -> None:
        try:
            if await plain_http(conn):
                raise PlainHttpSent("HTTP_REQUEST")
            await asyncio.get_running_loop().connect_accepted_socket(
                self.factory,
                conn,
                ssl=self.tls.current(),
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
            )
        except (OSError, TimeoutError, EOFError) as exc:
            conn.close()
            self.tls.failed(exc, peer[0] if isinstance(peer, tuple) else str(peer))
        else:
            self.tls.handshakes += 1

    def close(self) -> None:
        """Stop accepting; handshakes under way are dropped."""
        self.task.cancel()
        for task in self.handshaking:
            task.cancel()
        self.sockets[0].close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def client_context(cfg: ClientConfig, who: str) -> ssl.SSLContext:
    """The context a daemon or command connects to https:// and tls:// peers with (the
    system's trust store unless `cfg.ca`); a file that does not load is a ConfigError."""
    try:
        ctx = ssl.create_default_context(cafile=cfg.ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"ca: cannot load {cfg.ca}: {_why(exc)}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.cert is not None:
        try:
            ctx.load_cert_chain(cfg.cert, cfg.key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"client: cannot load the certificate {cfg.cert} with the key {cfg.key}:"
                f" {_why(exc)}"
            ) from None
    if cfg.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        event(log, "tls_insecure", logging.WARNING, who=who,
              warning="--insecure: servers' certificates are not verified; anyone on the path"
              " can read and change what is sent")  # fmt: skip
    return ctx
