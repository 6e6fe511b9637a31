"""TLS listeners and clients on real sockets (certificates from trustme): handshakes refused by
reason and logged once, no stuck connection, certificates read again when their files change,
and the clients' trust settings."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import socket
import ssl
from pathlib import Path
from typing import Any, cast

import pytest
import trustme

from logdist.config.tables import ClientConfig, TlsConfig
from logdist.errors import ConfigError
from logdist.net import tls as tls_module
from logdist.net.tls import ServerTls, client_context


class Echo(asyncio.Protocol):
    """Answers each chunk with itself and, first, the client certificate's subject."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peercert") or {}
        subject = dict(x[0] for x in peer.get("subject", ()))
        self.transport.write(f"{subject.get('commonName', '-')}\n".encode())

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def write_pair(ca: trustme.CA, folder: Path, name: str, **issue: Any) -> tuple[str, str]:
    cert = ca.issue_cert("127.0.0.1", "localhost", **issue)
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return str(cert_path), str(key_path)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def files(ca: trustme.CA, tmp_path: Path) -> dict[str, str]:
    cert, key = write_pair(ca, tmp_path, "server")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return {"cert": cert, "key": key, "ca": str(tmp_path / "ca.pem")}


async def talk(port: int, ctx: ssl.SSLContext, data: bytes = b"ping") -> tuple[str, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    try:
        subject = (await reader.readline()).decode().strip()
        writer.write(data)
        await writer.drain()
        return subject, await reader.readexactly(len(data))
    finally:
        writer.close()


def trusting(files: dict[str, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=files["ca"])


async def test_a_client_that_trusts_the_ca_talks_and_one_that_does_not_is_refused(
    files: dict[str, str],
) -> None:
    tls = ServerTls(TlsConfig(files["cert"], files["key"]), "test")
    server = await tls.serve(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await talk(port, trusting(files)) == ("-", b"ping")
        with pytest.raises(ssl.SSLCertVerificationError):
            await talk(port, ssl.create_default_context())  # the system's store
        await asyncio.sleep(0.05)
        assert tls.handshakes == 1
        # Python's client drops the connection without the alert curl sends (unknown CA).
        assert sum(tls.refused.values()) == 1
        assert set(tls.refused) <= {"client_distrusts_us", "closed"}
    finally:
        server.close()
        await server.wait_closed()


async def test_plain_http_gets_a_json_400_and_garbage_a_closed_connection_each_logged_once(
    files: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "logdist.tls")
    tls = ServerTls(TlsConfig(files["cert"], files["key"]), "test")
    server = await tls.serve(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 400 ")
            assert b'"code":"plain_http_to_tls"' in answer
            assert b"use https://" in answer
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\x00\x01garbage that is no handshake" * 10)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        # Still serving.
        assert await talk(port, trusting(files)) == ("-", b"ping")
    finally:
        server.close()
        await server.wait_closed()
    assert tls.refused == {"plain_http": 3, "not_tls": 3}
    logged = [r.getMessage() for r in caplog.records if "tls_refused" in r.getMessage()]
    assert len(logged) == 2, logged
    assert any("reason=plain_http" in m for m in logged)
    assert any("reason=not_tls" in m for m in logged)


async def test_a_slow_or_half_handshake_is_cut_off_and_holds_nothing_up(
    files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tls_module, "HANDSHAKE_TIMEOUT", 0.3)
    tls = ServerTls(TlsConfig(files["cert"], files["key"]), "test")
    server = await tls.serve(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        # A ClientHello's first bytes, then nothing.
        half = await asyncio.open_connection("127.0.0.1", port)
        half[1].write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        # Meanwhile a whole client is served at once.
        assert await asyncio.wait_for(talk(port, trusting(files)), 2) == ("-", b"ping")
        for reader, writer in [*silent, half]:
            assert await asyncio.wait_for(reader.read(), 3) == b""
            writer.close()
        assert tls.refused["timeout"] == 21
        assert not server.handshaking
    finally:
        server.close()
        await server.wait_closed()


async def test_mutual_tls_refuses_no_certificate_a_stranger_and_an_expired_one(
    ca: trustme.CA, files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stranger's CA is in "the system's store": only --tls-client-ca may sign clients.
    stranger = trustme.CA()
    stranger.cert_pem.write_to_path(str(tmp_path / "system.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "system.pem"))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    ca.cert_pem.write_to_path(str(tmp_path / "clients.pem"))
    cfg = TlsConfig(files["cert"], files["key"], str(tmp_path / "clients.pem"))
    tls = ServerTls(cfg, "test")
    server = await tls.serve(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    def client(issuer: trustme.CA | None, **issue: Any) -> ssl.SSLContext:
        ctx = trusting(files)
        if issuer is not None:
            cert = issuer.issue_cert("client-7", common_name="client-7", **issue)
            cert.configure_cert(ctx)
        return ctx

    yesterday = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    try:
        assert await talk(port, client(ca)) == ("client-7", b"ping")
        for ctx in (
            client(None),
            client(stranger),
            client(ca, not_before=yesterday - datetime.timedelta(days=2), not_after=yesterday),
        ):
            # TLS 1.3: the refusal comes as the client reads.
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                await talk(port, ctx)
        await asyncio.sleep(0.05)
        assert tls.refused == {"no_client_certificate": 1, "client_certificate_refused": 2}
        assert tls.handshakes == 1
    finally:
        server.close()
        await server.wait_closed()


async def test_a_renewed_certificate_is_served_without_a_restart_and_a_bad_one_is_not(
    ca: trustme.CA, files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tls_module, "RELOAD_EVERY", 0.0)
    tls = ServerTls(TlsConfig(files["cert"], files["key"]), "test")
    server = await tls.serve(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def serial() -> int:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=trusting(files))
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        from cryptography import x509

        return x509.load_der_x509_certificate(der).serial_number

    try:
        first = await serial()
        renewed = ca.issue_cert("127.0.0.1")
        folder = Path(files["cert"]).parent
        renewed.private_key_pem.write_to_path(str(folder / "server.key"))
        renewed.cert_chain_pems[0].write_to_path(str(folder / "server.pem"))
        second = await serial()
        assert second != first
        assert tls.reloads == 1
        # A half-written renewal (a key that does not match) keeps the last good pair.
        Path(files["key"]).write_bytes(trustme.CA().issue_cert("x").private_key_pem.bytes())
        os.utime(files["key"])
        assert await serial() == second
        assert tls.reloads == 1
    finally:
        server.close()
        await server.wait_closed()


def test_files_that_do_not_load_are_one_clear_error(files: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="cannot load the certificate /nope.pem"):
        ServerTls(TlsConfig("/nope.pem", files["key"]), "test")
    with pytest.raises(ConfigError, match="cannot load client_ca"):
        ServerTls(TlsConfig(files["cert"], files["key"], files["key"]), "test")
    with pytest.raises(ConfigError, match="cert and key go together"):
        TlsConfig(files["cert"], None)
    with pytest.raises(ConfigError, match="ca: cannot load /nope"):
        client_context(ClientConfig(ca="/nope"), "test")


def test_insecure_turns_verification_off_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "logdist.tls")
    ctx = client_context(ClientConfig(insecure=True), "emitter e1")
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
    assert "tls_insecure" in caplog.text and "emitter e1" in caplog.text
    caplog.clear()
    ctx = client_context(ClientConfig(), "emitter e1")
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert not caplog.text


def test_the_listener_binds_like_create_server(files: dict[str, str]) -> None:
    async def main() -> None:
        tls = ServerTls(TlsConfig(files["cert"], files["key"]), "test")
        server = await tls.serve(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(OSError):
                await tls.serve(Echo, "127.0.0.1", port)
        finally:
            server.close()
            await server.wait_closed()
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:  # noqa: F841
            pass

    with pytest.raises(ConnectionRefusedError):
        asyncio.run(main())
