"""TLS through the real CLI, checked with the clients people use: curl with --cacert and
--cert, openssl s_client, the OpenTelemetry SDK's exporter with certificate files, logdist's
own ctl and emitters; certificates from a test CA (trustme) or from `logdist up --tls`."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from tests.support.cluster import listening
from tests.support.procs import LOGDIST, Procs, free_port, wait_for
from tests.support.tls import Certs, https_get

pytestmark = pytest.mark.e2e

CURL = shutil.which("curl") or "/usr/bin/curl"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
PACKET = {"packetId": "curl-1", "emitter": "curl", "messages": [{"message": "over TLS"}]}


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CURL, "-sS", "--max-time", "5", *args], capture_output=True, text=True, timeout=20
    )


def s_client(port: int, *args: str) -> str:
    """openssl s_client's whole account of one connection that sends an HTTP request."""
    run = subprocess.run(
        [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
         "-ign_eof", *args],
        input="GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    return run.stdout + run.stderr


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path / "certs")


def otel_export(endpoint: str, certs: Certs, cert: str, key: str) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": "billing"}))
    exporter = OTLPLogExporter(
        endpoint=endpoint,
        certificate_file=certs.ca,
        client_certificate_file=cert,
        client_key_file=key,
        timeout=5,
    )
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    logger = logging.getLogger("otel-over-tls")
    logger.propagate = False
    handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    for i in range(5):
        logger.info("invoice %d sent", i)
    provider.force_flush()
    provider.shutdown()
    logger.removeHandler(handler)


@pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")
def test_mutual_tls_on_every_hop_with_curl_openssl_ctl_and_the_otel_exporter(
    procs: Procs, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests (under the exporter) lets these override its certificate_file.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    server = certs.issue("server")
    d_client, e_client, person = (certs.issue(n) for n in ("distributor", "e1", "person"))
    mtls = [*server.flags("tls"), "--tls-client-ca", certs.ca, "--ca", certs.ca]
    a1 = procs.start(
        "a1", "analyzer", "serve", "--id", "a1", "--port", "0",
        *server.flags("tls"), "--tls-client-ca", certs.ca,
    )  # fmt: skip
    assert a1.url.startswith("https://")
    d = procs.start(
        "distributor", "distributor", "serve", "--port", "0", "--analyzer",
        f"a1={a1.url}/ingest@1", *mtls, *d_client.flags("client"),
    )  # fmt: skip
    e1 = procs.start(
        "e1", "emitter", "start", "--id", "e1", "--rate", "50", "--distributor", d.url,
        *mtls, *e_client.flags("client"),
    )  # fmt: skip
    ctx = certs.context(person)
    stats = f"{a1.url}/stats"
    wait_for(lambda: https_get(stats, ctx)["emitters"].get("e1"), 20, "e1's packets at a1")

    # curl, with the CA and a client certificate: accepted; without the certificate: refused
    # in the handshake, and the refusal logged once with its reason.
    ok = curl(
        "--cacert", certs.ca, "--cert", person.cert, "--key", person.key,
        "-H", "content-type: application/json", "-d", '{"packetId": "curl-1", "emitter":'
        ' "curl", "messages": [{"message": "over TLS"}]}', f"{d.url}/log-packet",
    )  # fmt: skip
    assert '"status":"accepted"' in ok.stdout, ok
    for _ in range(2):
        refused = curl("--cacert", certs.ca, f"{d.url}/status")
        assert refused.returncode != 0 and '"queue"' not in refused.stdout
    wait_for(lambda: "reason=no_client_certificate" in d.output(), 5, "the refusal logged")
    assert d.output().count("reason=no_client_certificate") == 1
    untrusted = curl(f"{d.url}/health")  # the system's store does not know the test CA
    assert untrusted.returncode == 60, untrusted  # curl: peer certificate cannot be verified
    plain = curl(f"http://127.0.0.1:{d.port}/status")
    assert '"code":"plain_http_to_tls"' in plain.stdout, plain
    wait_for(lambda: https_get(stats, ctx)["emitters"].get("curl"), 10, "curl's packet at a1")

    # openssl s_client: the server's chain verifies against the CA; without a client
    # certificate the connection is closed in the handshake; with one it answers.
    refused_text = s_client(d.port, "-CAfile", certs.ca)
    assert "Verify return code: 0 (ok)" in refused_text
    assert '{"status":"ok"}' not in refused_text
    answered = s_client(d.port, "-CAfile", certs.ca, "-cert", person.cert, "-key", person.key)
    assert '{"status":"ok"}' in answered

    # ctl over mutual TLS; pausing e1 is a call from the distributor to e1's mTLS port.
    tls_args = ["--url", d.url, "--ca", certs.ca, "--client-cert", person.cert,
                "--client-key", person.key]  # fmt: skip
    status = procs.run("ctl", "status", *tls_args)
    assert status.returncode == 0 and "a1" in status.stdout, status
    paused = procs.run("ctl", "pause", "e1", *tls_args)
    assert paused.returncode == 0, paused
    assert https_get(f"{e1.url}/metrics", ctx)["paused"] is True
    bare = procs.run("ctl", "status", "--url", d.url, "--ca", certs.ca)
    assert bare.returncode == 3 and "cannot reach the distributor" in bare.stderr, bare
    assert "give --client-cert and --client-key" in bare.stderr

    # The OpenTelemetry SDK's exporter with the CA and a client certificate.
    asyncio.run(asyncio.to_thread(otel_export, f"{d.url}/v1/logs", certs, person.cert,
                                  person.key))  # fmt: skip
    wait_for(
        lambda: https_get(stats, ctx)["emitters"].get("otlp", {}).get("messages") == 5,
        10,
        "the exporter's 5 records at a1",
    )
    text = subprocess.run(
        [CURL, "-s", "--cacert", certs.ca, "--cert", person.cert, "--key", person.key,
         f"{d.url}/metrics"], capture_output=True, text=True, timeout=10,
    ).stdout  # fmt: skip
    refusals = dict(re.findall(r'logdist_tls_refused_total\{reason="(\w+)"\} (\S+)', text))
    # Two curls, one s_client and ctl without a certificate; curl distrusting us (it sends
    # the alert); one plain request.
    assert float(refusals.pop("no_client_certificate")) >= 4
    assert refusals == {"client_distrusts_us": "1.0", "plain_http": "1.0"}, refusals
    assert e1.stop() == 0 and d.stop() == 0


def serial_served(port: int, ca: str) -> str:
    text = s_client(port, "-CAfile", ca, "-showcerts")
    pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
    assert pem, text
    out = subprocess.run(
        [OPENSSL, "x509", "-noout", "-serial"], input=pem.group(0), capture_output=True,
        text=True, timeout=10,
    )  # fmt: skip
    return out.stdout.strip()


def test_a_renewed_certificate_is_served_without_a_restart(procs: Procs, certs: Certs) -> None:
    server = certs.issue("server")
    d = procs.start(
        "distributor", "distributor", "serve", "--port", "0", *server.flags("tls")
    )  # fmt: skip
    first = serial_served(d.port, certs.ca)
    renewed = certs.issue("renewed")
    # As certbot or cert-manager renews: the new files take the old ones' place.
    Path(renewed.key).replace(server.key)
    Path(renewed.cert).replace(server.cert)
    wait_for(lambda: serial_served(d.port, certs.ca) != first, 10, "the renewed certificate")
    assert "event=tls_reloaded" in d.output()
    assert https_get(f"{d.url}/health", certs.context())["status"] == "ok"
    # A certificate file that does not load (cut short) keeps the last good one.
    Path(server.cert).write_text(Path(server.cert).read_text()[:200])
    wait_for(
        lambda: (
            https_get(f"{d.url}/health", certs.context())
            and "event=tls_reload_failed" in d.output()
        ),
        10,
        "the failed reload logged",
    )
    assert https_get(f"{d.url}/health", certs.context())["status"] == "ok"


UP_TOPOLOGY = """\
[distributor]
port = {d}

[[analyzers]]
id = "a1"
port = {a1}

[[emitters]]
id = "e1"
rate = 20
"""


def test_up_tls_runs_every_daemon_over_tls_and_prints_how_to_reach_it(procs: Procs) -> None:
    d_port, a_port = free_port(), free_port()
    (procs.workdir / "t.toml").write_text(UP_TOPOLOGY.format(d=d_port, a1=a_port))
    up = procs.spawn("up", [LOGDIST, "up", "t.toml", "--tls", "--no-state"], None)
    wait_for(lambda: "Ctrl-C stops everything" in up.output(), 60, "up's banner")
    text = up.output()
    ca = str(procs.workdir / ".logdist/tls/ca.pem")
    assert "the CA is .logdist/tls/ca.pem" in text
    assert f"curl --cacert .logdist/tls/ca.pem https://127.0.0.1:{d_port}/status" in text
    # The printed curl line works as printed.
    status = subprocess.run(
        [CURL, "-sS", "--cacert", ".logdist/tls/ca.pem", f"https://127.0.0.1:{d_port}/status"],
        capture_output=True, text=True, timeout=10, cwd=procs.workdir,
    )  # fmt: skip
    assert '"queue"' in status.stdout, status
    # Every daemon's port refuses plain HTTP: the distributor's, the analyzer's, e1's.
    e1 = wait_for(
        lambda: re.search(r"event=listening daemon=emitter url=https://\S+:(\d+)", up.output()),
        20,
        "e1 to listen",
    )
    for port in (d_port, a_port, int(e1.group(1))):
        plain = curl(f"http://127.0.0.1:{port}/health")
        assert '"code":"plain_http_to_tls"' in plain.stdout, (port, plain)
    # ctl with the printed CA; e1 delivers over TLS.
    env = {"LOGDIST_CA": ca, "LOGDIST_URL": f"https://127.0.0.1:{d_port}"}
    wait_for(
        lambda: procs.run("ctl", "emitters", "--json", env=env).stdout.count('"e1"') > 0,
        20,
        "e1 registered",
    )
    rate = procs.run("ctl", "rate", "e1", "40", env=env)
    assert rate.returncode == 0 and "40" in rate.stdout, rate
    ctx = ssl.create_default_context(cafile=ca)
    wait_for(lambda: https_get(f"https://127.0.0.1:{a_port}/stats", ctx)["packets"] > 20, 20,
             "a1 receiving")  # fmt: skip
    up.signal(2)
    assert up.popen.wait(30) == 0
    assert not listening(d_port)


def test_a_fleet_sends_and_is_controlled_over_tls(procs: Procs, certs: Certs) -> None:
    server = certs.issue("server")
    tls = [*server.flags("tls"), "--ca", certs.ca]
    a1 = procs.start("a1", "analyzer", "serve", "--id", "a1", "--port", "0", *tls[:4])
    d = procs.start(
        "distributor", "distributor", "serve", "--port", "0", "--analyzer",
        f"a1={a1.url}/ingest@1", *tls,
    )  # fmt: skip
    fleet = procs.start(
        "web", "emitter", "start", "--fleet", "3", "--id", "web", "--rate", "20",
        "--distributor", d.url, *tls,
    )  # fmt: skip
    assert fleet.url.startswith("https://")
    ctx = certs.context()
    wait_for(lambda: len(https_get(f"{d.url}/emitters", ctx)) == 3, 20, "three members")
    paused = procs.run("ctl", "pause", "web-1", "--url", d.url, "--ca", certs.ca)
    assert paused.returncode == 0, paused
    assert https_get(f"{fleet.url}/e/web-1/metrics", ctx)["paused"] is True
    assert https_get(f"{fleet.url}/e/web-2/metrics", ctx)["paused"] is False
    stats = f"{a1.url}/stats"
    wait_for(lambda: len(https_get(stats, ctx)["emitters"]) == 3, 20, "every member delivering")
    assert fleet.stop() == 0
