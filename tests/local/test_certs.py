"""`logdist up --tls`'s local CA and certificates (cryptography), and `tls = true` in a
topology: what each daemon serves and trusts."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from logdist.config import load_topology
from logdist.config.tables import TlsConfig
from logdist.errors import ConfigError
from logdist.local.certs import LocalCA, local_names
from logdist.net.tls import ServerTls


def test_the_ca_is_kept_and_a_certificate_is_made_again_only_when_it_must_be(
    tmp_path: Path,
) -> None:
    ca = LocalCA(tmp_path)
    pair = ca.issue("distributor", local_names("127.0.0.1"))
    assert (tmp_path / "ca.key").stat().st_mode & 0o077 == 0
    assert pair.key.stat().st_mode & 0o077 == 0
    before = pair.cert.read_bytes()
    again = LocalCA(tmp_path)
    assert again.path.read_bytes() == ca.path.read_bytes()  # trusted once, trusted still
    assert again.issue("distributor", local_names("127.0.0.1")).cert.read_bytes() == before
    # Bound elsewhere: the certificate must name that address too.
    assert again.issue("distributor", local_names("10.1.2.3")).cert.read_bytes() != before
    # A CA made anew (its files lost) signs new certificates.
    (tmp_path / "ca.pem").unlink()
    fresh = LocalCA(tmp_path)
    assert fresh.issue("distributor", local_names("10.1.2.3")).cert.read_bytes() != before


async def test_a_daemon_certificate_verifies_for_the_names_it_is_reached_by(
    tmp_path: Path,
) -> None:
    ca = LocalCA(tmp_path)
    pair = ca.issue("analyzer-a1", local_names("127.0.0.1"))
    tls = ServerTls(TlsConfig(str(pair.cert), str(pair.key)), "test")
    server = await tls.serve(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    trust = ssl.create_default_context(cafile=str(ca.path))
    try:
        for name in ("127.0.0.1", "localhost"):
            _, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=trust, server_hostname=name
            )
            writer.close()
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection(
                "127.0.0.1", port, ssl=trust, server_hostname="evil.example"
            )
    finally:
        server.close()
        await server.wait_closed()


TOPOLOGY = """
tls = {tls}
[distributor]
port = 8100
[[analyzers]]
id = "a1"
port = 9101
[[analyzers]]
id = "ext"
url = "https://logs.example/ingest"
[[emitters]]
id = "e1"
"""


def test_tls_true_gives_every_daemon_its_certificate_and_https_between_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.toml"
    path.write_text(TOPOLOGY.format(tls='{dir = "certs"}'))
    topo = load_topology(path)
    d = topo.distributor
    assert topo.tls == "certs"
    assert (d.tls.cert, d.tls.key, d.client.ca) == (
        "certs/distributor.pem", "certs/distributor.key", "certs/ca.pem",
    )  # fmt: skip
    assert [a.url for a in d.analyzers] == [
        "https://127.0.0.1:9101/ingest",
        "https://logs.example/ingest",
    ]
    assert topo.analyzers[0].tls.cert == "certs/analyzer-a1.pem"
    (e,) = topo.emitters
    assert e.distributor == ("https://127.0.0.1:8100",)
    assert (e.tls.cert, e.client.ca) == ("certs/emitter-e1.pem", "certs/ca.pem")
    assert topo.certificates() == [
        ("distributor", "127.0.0.1"), ("analyzer-a1", "127.0.0.1"), ("emitter-e1", "127.0.0.1"),
    ]  # fmt: skip
    path.write_text(TOPOLOGY.format(tls="false"))
    plain = load_topology(path)
    assert plain.tls is None and plain.distributor.analyzers[0].url.startswith("http://")


def test_a_bad_tls_value_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(TOPOLOGY.format(tls='"yes"'))
    with pytest.raises(ConfigError, match="tls must be true or a table with dir"):
        load_topology(path)
