"""TLS with the other programs of a pipeline: Debian's rsyslog with rsyslog-gnutls sending
RFC 5425 to the distributor's syslog TLS port and taking the syslog output over tls://,
Debian's nats-server serving cluster mode over tls://, and Chromium loading the dashboard
over HTTPS (trusting the test certificate by its key's SPKI hash)."""

from __future__ import annotations

import base64
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Browser, expect, sync_playwright

from tests.support.cluster import NATS_SERVER, listening
from tests.support.procs import Procs, free_port, wait_for
from tests.support.tls import Certs, https, https_get

pytestmark = pytest.mark.e2e

RSYSLOGD = "/usr/sbin/rsyslogd"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

SENDER = """\
global(workDirectory="{work}" DefaultNetstreamDriverCAFile="{ca}")
module(load="imfile")
input(type="imfile" File="{lines}" Tag="checkout" Facility="local3" Severity="warning")
action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp"
       StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name"
       StreamDriverPermittedPeers="localhost"
       TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"
       action.resumeRetryCount="-1")
"""
RECEIVER = """\
global(workDirectory="{work}" DefaultNetstreamDriverCAFile="{ca}"
       DefaultNetstreamDriverCertFile="{cert}" DefaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1"
       StreamDriver.AuthMode="anon")
input(type="imtcp" port="{port}" address="127.0.0.1")
template(name="fields" type="string" string="%app-name%|%msg%\\n")
action(type="omfile" file="{out}" template="fields")
"""


def rsyslog(procs: Procs, name: str, conf: str) -> None:
    work = procs.workdir / name
    work.mkdir()
    (work / "rsyslog.conf").write_text(conf.replace("{work}", str(work)))
    procs.spawn(
        name, [RSYSLOGD, "-n", "-f", str(work / "rsyslog.conf"), "-i", str(work / "pid")], None
    )


def test_rsyslog_sends_rfc5425_in_and_takes_the_syslog_output_over_tls(
    procs: Procs, tmp_path: Path
) -> None:
    certs = Certs(tmp_path / "certs")
    server = certs.issue("distributor")
    receiver = certs.issue("receiver")
    out, port_in, port_out = procs.workdir / "received.log", free_port(), free_port()
    rsyslog(procs, "receiver", RECEIVER.format(
        work="{work}", ca=certs.ca, cert=receiver.cert, key=receiver.key, port=port_out,
        out=out,
    ))  # fmt: skip
    wait_for(lambda: listening(port_out), 20, "the receiving rsyslog")
    d = procs.start(
        "distributor", "distributor", "serve", "--port", "0", "--syslog-tls", str(port_in),
        *server.flags("tls"), "--ca", certs.ca, "--analyzer",
        f"siem=tls://127.0.0.1:{port_out};format=syslog;facility=local4",
    )  # fmt: skip
    n = 2000
    lines = procs.workdir / "checkout.log"
    lines.write_text("".join(f"order {i} paid\n" for i in range(n)))
    rsyslog(procs, "sender", SENDER.format(work="{work}", ca=certs.ca, lines=lines, port=port_in))
    wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= n, 60, "every line")
    got = sorted(out.read_text().splitlines())
    assert got == sorted(f"checkout|order {i} paid" for i in range(n))  # each once
    status = https_get(f"{d.url}/status", certs.context())
    assert status["counters"]["inputs"]["syslog"]["received_messages"] == n
    assert "tls_refused" not in d.output()


def test_cluster_mode_reaches_nats_over_tls(procs: Procs, tmp_path: Path) -> None:
    certs = Certs(tmp_path / "certs")
    nats_pair = certs.issue("nats")
    port = free_port()
    procs.spawn("nats", [
        NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path / "js"),
        "--tls", "--tlscert", nats_pair.cert, "--tlskey", nats_pair.key,
    ], None)  # fmt: skip
    wait_for(lambda: listening(port), 10, "nats-server to listen")
    a1 = procs.start("a1", "analyzer", "serve", "--id", "a1", "--port", "0")
    d = procs.start(
        "distributor", "distributor", "serve", "--port", "0", "--cluster",
        f"tls://127.0.0.1:{port}", "--cluster-replicas", "1", "--ca", certs.ca,
        "--analyzer", f"a1={a1.url}/ingest@1",
    )  # fmt: skip
    packet = {"packetId": "over-nats-tls", "emitter": "t", "messages": [{"message": "m"}]}

    def accepted() -> bool:
        status, _ = https("POST", f"{d.url}/log-packet", certs.context(), packet)
        return status == 202

    wait_for(accepted, 30, "the replica to join the cluster and accept")
    wait_for(lambda: https_get(f"{a1.url}/stats", certs.context())["packets"] == 1, 20, "a1")
    # The same server refuses a client that does not trust its certificate.
    stranger = procs.start(
        "stranger", "distributor", "serve", "--port", "0", "--id", "d2", "--cluster",
        f"tls://127.0.0.1:{port}", "--cluster-replicas", "1",
    )  # fmt: skip
    wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in stranger.output(), 20, "the refusal said")


def spki_hash(cert_path: str) -> str:
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path / "certs")


@pytest.fixture
def browser(certs: Certs) -> Iterator[tuple[Browser, str]]:
    """Chromium trusting the distributor's key (as a CA it does not know) by its SPKI hash."""
    server = certs.issue("distributor")
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--ignore-certificate-errors-spki-list={spki_hash(server.cert)}"]  # fmt: skip
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield b, server.cert
        b.close()


def test_chromium_loads_the_dashboard_over_https_and_follows_logs_over_wss(
    procs: Procs, certs: Certs, browser: tuple[Browser, str]
) -> None:
    b, cert = browser
    key = cert.replace(".pem", ".key")
    a1 = procs.start("a1", "analyzer", "serve", "--id", "a1", "--port", "0")
    d = procs.start(
        "distributor", "distributor", "serve", "--port", "0", "--tls-cert", cert, "--tls-key",
        key, "--analyzer", f"a1={a1.url}/ingest@1",
    )  # fmt: skip
    procs.start("e1", "emitter", "start", "--id", "e1", "--rate", "20", "--distributor", d.url,
                "--ca", certs.ca)  # fmt: skip
    page = b.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    answer = page.goto(f"{d.url}/")
    assert answer is not None and answer.status == 200
    assert page.evaluate("location.protocol") == "https:"
    expect(page.locator('#analyzers tr[data-id="a1"]')).to_be_visible(timeout=10_000)
    expect(page.locator('#emitters tr[data-id="e1"]')).to_be_visible(timeout=10_000)
    # The routed-log stream is a WebSocket on the same TLS port (wss://).
    expect(page.locator("#logs li").first).to_be_visible(timeout=10_000)
    assert errors == []
    page.close()
