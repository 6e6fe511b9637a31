"""Delivery to real servers through the real CLI: Debian's clickhouse-server takes `records`
rows over its HTTP port; Debian's rsyslog and syslog-ng take `syslog` frames. Each is started
by the test with its own config, ports and data dirs (scripts/test installs them)."""

from __future__ import annotations

import socket
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import Procs, free_port, get, post, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLICKHOUSE = "/usr/sbin/clickhouse-server"
RSYSLOGD = "/usr/sbin/rsyslogd"
# syslog-ng conflicts with rsyslog as a Debian package: scripts/test unpacks it here.
SYSLOG_NG = ROOT / ".tools" / "syslog-ng"
TS = "2026-12-06T19:30:15.123Z"
PACKETS, PER_PACKET = 100, 5


def packets(bad: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    out = []
    for i in range(PACKETS):
        messages = [
            {
                "ts": "not a time" if (i, j) == bad else TS,
                "level": ("INFO", "WARN", "ERROR")[j % 3],
                "service": "checkout",
                "host": f"web-{i % 3}",
                "message": f"order {i}-{j} paid",
                "user": f"u{i}",
            }
            for j in range(PER_PACKET)
        ]
        out.append({"packetId": f"p{i}", "emitter": "shop", "messages": messages})
    return out


def distributor(procs: Procs, spec: str) -> str:
    proc = procs.start(
        "distributor", "distributor", "serve", "--port", "0", "--analyzer", spec,
        "--max-refusals", "1", "--parse-workers", "1",
    )  # fmt: skip
    return proc.url


CLICKHOUSE_CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  <path>{data}/</path>
  <tmp_path>{data}/tmp/</tmp_path>
  <mark_cache_size>5368709</mark_cache_size>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <profiles><default></default></profiles>
  <quotas><default></default></quotas>
</yandex>
"""


def clickhouse(port: int, query: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", query.encode(), timeout=10) as r:
        return str(r.read().decode())


def test_clickhouse_gets_every_message_once_as_a_row_and_its_refusal_is_a_dead_letter(
    procs: Procs,
) -> None:
    data = procs.workdir / "clickhouse"
    (data / "tmp").mkdir(parents=True)
    http = free_port()
    config = data / "config.xml"
    config.write_text(CLICKHOUSE_CONFIG.format(http=http, tcp=free_port(), data=data))
    procs.spawn("clickhouse", [CLICKHOUSE, f"--config-file={config}"], None)
    wait_for(lambda: _answers(http), 60, "clickhouse to answer")
    clickhouse(
        http,
        "CREATE TABLE logs (ts DateTime, level String, service String, host String,"
        " message String, emitter String, packetId String, index UInt32, user String)"
        " ENGINE = MergeTree ORDER BY ts",
    )
    query = urllib.parse.quote("INSERT INTO logs FORMAT JSONEachRow")
    url = distributor(
        procs,
        f"ch=http://127.0.0.1:{http}/?query={query}&input_format_skip_unknown_fields=1"
        ";format=records;timestamp_format=clickhouse",
    )
    post(f"{url}/log-packets", packets(bad=(42, 3)))
    n = PACKETS * PER_PACKET
    wait_for(lambda: clickhouse(http, "SELECT count() FROM logs").strip() == str(n - 1), 60, "rows")
    wait_for(lambda: get(f"{url}/dead-letters")["total"] == 1, 30, "the refused row")

    rows = clickhouse(
        http,
        "SELECT packetId, index, toString(ts), level, service, host, message, emitter, user"
        " FROM logs ORDER BY packetId, index FORMAT TSV",
    ).splitlines()
    expected = sorted(
        "\t".join([p["packetId"], str(j), "2026-12-06 19:30:15", m["level"], m["service"],
                   m["host"], m["message"], "shop", m["user"]])
        for p in packets() for j, m in enumerate(p["messages"]) if (p["packetId"], j) != ("p42", 3)
    )  # fmt: skip
    assert sorted(rows) == expected  # every message once, with its columns
    (summary,) = get(f"{url}/dead-letters")["letters"]
    letter = get(f"{url}/dead-letters/{urllib.parse.quote(summary['id'], safe='')}")
    assert letter["id"] == "p42#3" and letter["messages"] == 1  # the refused row alone
    (refusal,) = letter["refusals"]
    # ClickHouse 18 answers a bad DateTime with 500 and its exception (records.py reads it).
    assert refusal["status"] in (400, 500) and refusal["answer"].startswith("Code: ")


def _answers(port: int) -> bool:
    try:
        return clickhouse(port, "SELECT 1").strip() == "1"
    except OSError:
        return False


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


# One line a message: PRI|APP-NAME|HOSTNAME|MSGID|SD|MSG, as each receiver writes its fields.
RSYSLOG_CONF = """\
global(workDirectory="{work}")
module(load="imtcp")
input(type="imtcp" port="{port}" address="127.0.0.1")
template(name="fields" type="string"
         string="%pri%|%app-name%|%hostname%|%msgid%|%structured-data%|%msg%\\n")
action(type="omfile" file="{out}" template="fields")
"""
SYSLOG_NG_CONF = """\
@version: 3.38
options {{ keep-hostname(yes); }};
source s {{ syslog(ip("127.0.0.1") port({port}) transport("tcp")); }};
destination d {{ file("{out}"
  template("${{PRI}}|${{PROGRAM}}|${{HOST}}|${{MSGID}}|${{SDATA}}|${{MESSAGE}}\\n")); }};
log {{ source(s); destination(d); }};
"""


def start_receiver(procs: Procs, kind: str, port: int, out: Path) -> None:
    work = procs.workdir / kind
    work.mkdir()
    conf = work / f"{kind}.conf"
    if kind == "rsyslog":
        conf.write_text(RSYSLOG_CONF.format(work=work, port=port, out=out))
        argv = [RSYSLOGD, "-n", "-f", str(conf), "-i", str(work / "pid")]
    else:
        conf.write_text(SYSLOG_NG_CONF.format(port=port, out=out))
        modules = next((SYSLOG_NG / "usr/lib/syslog-ng").glob("3.*"))
        argv = ["env", f"LD_LIBRARY_PATH={SYSLOG_NG / 'usr/lib/syslog-ng'}",
                str(SYSLOG_NG / "usr/sbin/syslog-ng"), "-F", "--no-caps", "-f", str(conf),
                f"--module-path={modules}", "-R", str(work / "persist"),
                "-p", str(work / "pid"), "-c", str(work / "ctl")]  # fmt: skip
    procs.spawn(kind, argv, None)
    wait_for(lambda: _listening(port), 30, f"{kind} to listen")


@pytest.mark.parametrize("kind", ["rsyslog", "syslog-ng"])
def test_a_syslog_receiver_gets_every_message_once_as_rfc5424(procs: Procs, kind: str) -> None:
    if kind == "syslog-ng" and not (SYSLOG_NG / "usr/sbin/syslog-ng").exists():
        pytest.fail("syslog-ng is not unpacked in .tools/syslog-ng: run scripts/test")
    port, out = free_port(), procs.workdir / f"{kind}.out"
    start_receiver(procs, kind, port, out)
    url = distributor(procs, f"siem=tcp://127.0.0.1:{port};format=syslog;facility=local4")
    post(f"{url}/log-packets", packets())
    n = PACKETS * PER_PACKET
    wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= n, 60, "every message")

    got = sorted(out.read_text().splitlines())
    pri = {"INFO": 20 * 8 + 6, "WARN": 20 * 8 + 4, "ERROR": 20 * 8 + 3}
    expected = sorted(
        f'{pri[m["level"]]}|checkout|{m["host"]}|shop|[logdist@32473 packetId="{p["packetId"]}"'
        f' index="{j}" user="{m["user"]}"]|{m["message"]}'
        for p in packets() for j, m in enumerate(p["messages"])
    )  # fmt: skip
    assert got == expected  # each once, framed, with PRI, APP-NAME, HOSTNAME, MSGID and SD
