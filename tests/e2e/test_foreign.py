"""Analyzers that are not logdist's, end to end: formats, a bearer token, passive health,
refused data and dead letters, with the real CLI and a plain aiohttp service."""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import Proc, Procs, free_port, get, post, wait_for

pytestmark = pytest.mark.e2e

FOREIGN = str(Path(__file__).parents[1] / "support" / "foreign_analyzer.py")
READY = re.compile(r"foreign analyzer listening url=(\S+)")
TOKEN = "tok-e2e-5a9d0c"


def start_foreign(procs: Procs, name: str, *args: str, port: int = 0) -> Proc:
    output = procs.workdir / f"{name}.ndjson"
    argv = [sys.executable, FOREIGN, "--port", str(port), "--output", str(output), *args]
    return procs.spawn(name, argv, READY)


def received_ids(procs: Procs, name: str) -> list[str]:
    path = procs.workdir / f"{name}.ndjson"
    if not path.exists():
        return []
    return [json.loads(line)["packetId"] for line in path.read_bytes().splitlines() if line]


def requests_of(proc: Proc) -> dict[str, Any]:
    result: dict[str, Any] = get(f"{proc.url}/_requests")
    return result


def packets(n: int, prefix: str, poison: set[int] | None = None) -> list[dict[str, Any]]:
    return [
        {
            "packetId": f"{prefix}{i}",
            "emitter": "curl",
            "messages": [
                {
                    "level": "INFO",
                    "message": "poison" if poison and i in poison else f"line {j} of {i}",
                }
                for j in range(1 + i % 3)
            ],
        }
        for i in range(n)
    ]


def send(url: str, batch: list[dict[str, Any]]) -> None:
    body = b"\n".join(json.dumps(p, separators=(",", ":")).encode() for p in batch)
    req = urllib.request.Request(
        f"{url}/log-packets",
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-ndjson"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 202


def distributor(procs: Procs, *args: str) -> Proc:
    return procs.start(
        "distributor",
        "distributor",
        "serve",
        "--port",
        "0",
        "--health-interval",
        "0.2",
        "--rise",
        "1",
        "--fall",
        "2",
        *args,
    )


def wait_up(d: Proc, n: int) -> None:
    def up() -> bool:
        rows = get(f"{d.url}/registry")
        return len([r for r in rows if r["health"] == "up"]) == n

    wait_for(up, 15, f"{n} analyzers up")


@pytest.mark.parametrize(
    ("fmt", "how", "ctype"),
    [
        ("ndjson", "toml", "application/x-ndjson"),
        ("json-array", "flag", "application/json"),
        ("json", "flag", "application/json"),  # the seed's analyzer: one object a POST
    ],
)
def test_each_format_delivers_exactly_what_was_sent_with_the_bearer_token(
    procs: Procs, fmt: str, how: str, ctype: str
) -> None:
    foreign = start_foreign(procs, "foreign", "--token", TOKEN)
    ingest = f"{foreign.url}/ingest"
    if how == "toml":
        config = procs.workdir / "foreign.toml"
        config.write_text(
            f"""
[[analyzers]]
id = "x"
url = "{ingest}"
format = "{fmt}"
compression = "gzip"
headers = {{ Authorization = "Bearer {TOKEN}" }}
"""
        )
        d = distributor(procs, "--config", str(config))
    else:
        spec = f"x={ingest}@1;format={fmt};header=Authorization: Bearer {TOKEN}"
        d = distributor(procs, "--analyzer", spec)
    wait_up(d, 1)
    sent = packets(60, "p")
    for start in range(0, 60, 20):
        send(d.url, sent[start : start + 20])
    wait_for(lambda: len(received_ids(procs, "foreign")) == 60, 15, "all 60 delivered")

    lines = (procs.workdir / "foreign.ndjson").read_bytes().splitlines()
    got = sorted((json.loads(line) for line in lines), key=lambda p: p["packetId"])
    assert got == sorted(sent, key=lambda p: p["packetId"])
    seen = requests_of(foreign)
    assert {r["content_type"] for r in seen["requests"]} == {ctype}
    assert {r["authorization"] for r in seen["requests"]} == {f"Bearer {TOKEN}"}
    assert seen["probes"] and {p["authorization"] for p in seen["probes"]} == {f"Bearer {TOKEN}"}
    sizes = [len(r["ids"]) for r in seen["requests"]]
    if fmt == "json":
        assert set(sizes) == {1}
    else:
        assert max(sizes) > 1
    if how == "toml":
        assert {r["content_encoding"] for r in seen["requests"]} == {"gzip"}

    # The token is in no output, log line or API answer.
    shown = [
        json.dumps(get(f"{d.url}/registry")),
        json.dumps(get(f"{d.url}/status")),
        procs.run("ctl", "status", "--url", d.url).stdout,
        procs.run("ctl", "status", "--url", d.url, "--json").stdout,
    ]
    with urllib.request.urlopen(f"{d.url}/metrics", timeout=5) as resp:
        shown.append(resp.read().decode())
    assert '"Authorization": "***"' in shown[0]
    assert fmt in shown[2]  # the format column
    d.stop()
    shown.append(d.output())
    for text in shown:
        assert TOKEN not in text


def test_passive_health_an_analyzer_with_no_health_route(procs: Procs) -> None:
    port = free_port()
    passive = start_foreign(procs, "passive", "--no-health", port=port)
    other = start_foreign(procs, "other")
    d = distributor(
        procs,
        "--analyzer",
        f"p={passive.url}/ingest@1;format=ndjson;health=passive",
        "--analyzer",
        f"o={other.url}/ingest@1;format=ndjson",
    )
    wait_for(
        lambda: all(r["health"] in ("up", "unknown") for r in get(f"{d.url}/registry")),
        10,
        "both routable",
    )
    emitter = procs.start(
        "e1", "emitter", "start", "--id", "e1", "--distributor", d.url, "--rate", "100"
    )

    def health(aid: str) -> str:
        return str(next(r["health"] for r in get(f"{d.url}/registry") if r["id"] == aid))

    wait_for(lambda: len(received_ids(procs, "passive")) >= 50, 15, "passive receives its share")
    assert health("p") == "up"
    assert requests_of(passive)["probes"] == []  # it was never probed
    row = next(r for r in get(f"{d.url}/registry") if r["id"] == "p")
    assert (row["health_check"], row["format"]) == ("passive", "ndjson")

    passive.kill()
    wait_for(lambda: health("p") == "down", 15, "p marked down by forwards alone")
    before = len(received_ids(procs, "other"))
    wait_for(lambda: len(received_ids(procs, "other")) > before + 50, 15, "the other carries on")

    had = len(received_ids(procs, "passive"))
    start_foreign(procs, "passive", "--no-health", port=port)
    wait_for(lambda: health("p") == "up", 20, "p up again after a trial")
    wait_for(lambda: len(received_ids(procs, "passive")) > had + 20, 15, "p receives again")

    post(f"{d.url}/emitter/e1/rate", {"rps": 0})

    def emitter_drained() -> bool:
        m = get(f"{d.url}/emitter/e1/metrics")
        return not m["buffer_len"] and not m["in_flight"]

    # The emitter first (what it still holds would reach the distributor after), then it.
    wait_for(emitter_drained, 20, "emitter drained")
    wait_for(lambda: get(f"{d.url}/status")["queue"]["unacked"] == 0, 20, "distributor drained")
    sent = set(get(f"{emitter.url}/sent?ids=1")["ids"])
    got = set(received_ids(procs, "passive")) | set(received_ids(procs, "other"))
    assert sent and sent <= got  # nothing lost


def test_refused_packets_become_dead_letters_and_replay_delivers_them(procs: Procs) -> None:
    analyzers = [start_foreign(procs, f"r{i}", "--refuse", "poison") for i in range(3)]
    spool = procs.workdir / "spool"
    args = [
        arg
        for i, a in enumerate(analyzers)
        for arg in ("--analyzer", f"r{i}={a.url}/ingest@1;format=ndjson")
    ]
    d = distributor(procs, *args, "--spool-dir", str(spool))
    wait_up(d, 3)
    sent = packets(300, "q", poison={7, 150, 299})
    for start in range(0, 300, 100):
        send(d.url, sent[start : start + 100])
    wait_for(lambda: get(f"{d.url}/status")["queue"]["unacked"] == 0, 20, "settled")

    good = {p["packetId"] for p in sent} - {"q7", "q150", "q299"}
    got = [pid for i in range(3) for pid in received_ids(procs, f"r{i}")]
    assert set(got) == good
    rows = get(f"{d.url}/registry")
    assert [(r["health"], r["downs"]) for r in rows] == [("up", 0)] * 3  # nobody flapped

    def ctl(*args: str) -> Any:
        result = procs.run("ctl", "dead-letters", *args, "--url", d.url)
        assert result.returncode == 0, result.stderr
        return result.stdout

    listed = json.loads(ctl("list", "--json"))
    assert sorted(x["id"] for x in listed["letters"]) == ["q150", "q299", "q7"]
    assert all(sorted(x["analyzers"]) == ["r0", "r1", "r2"] for x in listed["letters"])
    assert "mapping conflict" in ctl("list")
    shown = json.loads(ctl("show", "q7"))
    assert shown["packet"] == sent[7]
    assert [r["status"] for r in shown["refusals"]] == [400, 400, 400]
    on_disk = (spool / "dead-letters" / "dead-letters.ndjson").read_text()
    assert on_disk.count("\n") == 3 and '"packetId":"q150"' in on_disk
    status = procs.run("ctl", "status", "--url", d.url).stdout
    assert "dead letters" in status

    # The analyzers are fixed: replay two, purge the third.
    for a in analyzers:
        post(f"{a.url}/_accept")
    assert "replayed 2; 1 left" in ctl("replay", "q7", "q150")
    wait_for(
        lambda: {"q7", "q150"} <= {pid for i in range(3) for pid in received_ids(procs, f"r{i}")},
        15,
        "replayed packets delivered",
    )
    assert "purged 1; 0 left" in ctl("purge")
    unknown = procs.run("ctl", "dead-letters", "show", "nope", "--url", d.url)
    assert unknown.returncode == 1 and "no dead letter 'nope'" in unknown.stderr
    metrics = procs.run("ctl", "status", "--url", d.url, "--json").stdout
    assert json.loads(metrics)["counters"]["dead_letters"] == 3


def test_ctl_set_changes_delivery_at_runtime_and_bad_values_exit_2(procs: Procs) -> None:
    foreign = start_foreign(procs, "f", "--token", TOKEN)
    d = distributor(procs, "--analyzer", f"f={foreign.url}/ingest@1", "--state-dir", "state")
    time.sleep(0.5)
    assert get(f"{d.url}/registry")[0]["health"] == "down"  # 401 on its /health
    result = procs.run(
        "ctl",
        "set",
        "f",
        "--url",
        d.url,
        "--format",
        "ndjson",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--compression",
        "gzip",
    )
    assert result.returncode == 0, result.stderr
    assert "format ndjson, headers Authorization, health active, compression gzip" in result.stdout
    assert TOKEN not in result.stdout
    wait_up(d, 1)
    send(d.url, packets(30, "s"))
    wait_for(lambda: len(received_ids(procs, "f")) == 30, 15, "delivered with the token")
    assert requests_of(foreign)["requests"][-1]["content_encoding"] == "gzip"

    for bad, words in [
        (["--format", "xml"], "format must be one of"),
        (["--header", "Authorization Bearer x"], "no colon"),
        (["--health-url", "ftp://h/x"], "health_url"),
        ([], "nothing to change"),
    ]:
        result = procs.run("ctl", "set", "f", "--url", d.url, *bad)
        assert result.returncode == 2, (bad, result.stdout, result.stderr)
        assert words in result.stderr and result.stderr.count("\n") == 1

    # Kept across a restart.
    d.stop()
    again = procs.start(
        "distributor", "distributor", "serve", "--port", "0", "--state-dir", "state"
    )
    row = get(f"{again.url}/registry")[0]
    assert (row["format"], row["compression"], row["headers"]) == (
        "ndjson",
        "gzip",
        {"Authorization": "***"},
    )
