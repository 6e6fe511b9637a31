"""Cluster mode's moving parts for the tests: Debian's nats-server (started by the test, on its
own ports and data dirs; one alone, or three clustered over loopback routes), distributor
replicas, a pool of analyzers writing what they take to files, and the loss accounting."""

from __future__ import annotations

import functools
import json
import shutil
import socket
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from logdist.config import LocalCluster
from logdist.local.natsd import server_config
from logdist.local.ports import free_run
from tests.support.procs import Proc, Procs, get, request, wait_for

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def send(
    url: str, pid: str, emitter: str = "e1", message: str | None = None
) -> tuple[int, dict[str, str]]:
    """POST one packet to a replica: its status and headers (an error status too)."""
    body = {"packetId": pid, "emitter": emitter, "messages": [{"message": message or pid}]}
    req = urllib.request.Request(
        f"{url}/log-packet",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return int(resp.status), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def nats(procs: Procs, port: int, store: Path) -> Proc:
    """One nats-server with JetStream, alone."""
    assert Path(NATS_SERVER).exists(), "Debian's nats-server is needed: scripts/setup installs it"
    server = procs.spawn(
        "nats",
        [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        None,
    )
    wait_for(lambda: listening(port), 10, "nats-server to listen")
    return server


def one_server(procs: Procs, store: Path) -> str:
    """One nats-server with JetStream on a port of its own, its data in `store`: its URL."""
    port = free_run(1)
    nats(procs, port, store)
    return f"nats://127.0.0.1:{port}"


@dataclass
class NatsCluster:
    """Three nats-servers clustered on loopback, configured as `logdist up` configures its
    own (logdist.local.natsd), each restartable on its own ports and data dir."""

    procs: Procs
    base: Path
    size: int = 3
    servers: list[Proc] = field(default_factory=list)

    def __post_init__(self) -> None:
        first = free_run(2 * self.size)  # one run: two could overlap
        self.spec = LocalCluster(
            distributors=1,
            nats_servers=self.size,
            nats_port=first,
            routes_port=first + self.size,
        )
        self.base.mkdir(parents=True, exist_ok=True)
        for i in range(self.size):
            (self.base / f"n{i + 1}.conf").write_text(server_config(self.spec, i, self.base))
            self.servers.append(self.start(i))
        for port in range(self.spec.nats_port, self.spec.nats_port + self.size):
            wait_for(functools.partial(listening, port), 10, f"nats on {port}")

    @property
    def urls(self) -> str:
        return ",".join(self.spec.nats_urls())

    def start(self, i: int) -> Proc:
        conf = self.base / f"n{i + 1}.conf"
        return self.procs.spawn(f"n{i + 1}", [NATS_SERVER, "-c", str(conf)], None)

    def restart(self, i: int) -> None:
        self.servers[i] = self.start(i)
        wait_for(lambda: listening(self.spec.nats_port + i), 10, f"nats n{i + 1} back")


def replica(
    procs: Procs,
    rid: str,
    servers: str,
    analyzers: dict[str, str],
    *extra: str,
    port: int = 0,
    replicas: int = 1,
) -> Proc:
    d = procs.start(
        rid,
        "distributor",
        "serve",
        "--port",
        str(port),
        "--id",
        rid,
        "--cluster",
        servers,
        "--cluster-replicas",
        str(replicas),
        "--health-interval",
        "0.2",
        *(f"--analyzer={aid}={url}" for aid, url in analyzers.items()),
        *extra,
    )
    wait_for(lambda: get(f"{d.url}/status")["cluster"]["ready"], 40, f"{rid} in the cluster")
    wait_for(lambda: _all_up(d.url, len(analyzers)), 20, f"{rid}'s analyzers up")
    return d


def _all_up(url: str, count: int) -> bool:
    rows = get(f"{url}/registry")
    return len(rows) >= count and all(a["health"] == "up" for a in rows)


@dataclass
class Pool:
    """Analyzers by weight, each appending the packets it takes to a file."""

    procs: Procs
    weights: dict[str, float]
    urls: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for aid in self.weights:
            self.start(aid)

    def start(self, aid: str, *extra: str) -> Proc:
        self.outputs[aid] = self.procs.workdir / f"{aid}.ndjson"
        a = self.procs.start(
            aid, "analyzer", "serve", "--id", aid, "--port", "0", "--output",
            str(self.outputs[aid]), *extra,
        )  # fmt: skip
        self.urls[aid] = f"{a.url}/ingest@{self.weights.get(aid, 1)}"
        return a

    def delivered(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for aid, path in self.outputs.items():
            lines = path.read_bytes().splitlines() if path.exists() else []
            out[aid] = [json.loads(line)["packetId"] for line in lines if line]
        return out


def emitter(procs: Procs, eid: str, replicas: list[str], rate: float) -> Proc:
    return procs.start(
        eid,
        "emitter",
        "start",
        "--id",
        eid,
        "--rate",
        str(rate),
        "--timeout",
        "3",
        "--control-token",
        CONTROL_TOKEN,
        *(a for url in replicas for a in ("--distributor", url)),
    )


# The emitters' control token: the tests call their control ports directly.
CONTROL_TOKEN = "cluster-test-control"


def drain(e: Proc) -> list[str]:
    """Stop generating, wait until every packet generated was acknowledged (202): those ids."""
    status, answer = request("POST", f"{e.url}/rate", {"rps": 0}, token=CONTROL_TOKEN)
    assert status == 200, answer
    wait_for(lambda: get(f"{e.url}/metrics")["buffer_len"] == 0, 60, f"{e.name} drained", 0.2)
    wait_for(lambda: get(f"{e.url}/metrics")["in_flight"] == 0, 30, f"{e.name} idle", 0.2)
    sent = get(f"{e.url}/sent?ids=1")
    assert not sent["ids_truncated"]
    ids: list[str] = sent["ids"]
    return ids


def account(pool: Pool, accepted: list[str], timeout: float = 60) -> Counter[str]:
    """Wait until every accepted packet reached an analyzer; assert none lost; the packets
    each analyzer took (a packet redelivered to another analyzer counts for both)."""
    want = set(accepted)

    def arrived() -> bool:
        return want <= set().union(*map(set, pool.delivered().values()))

    wait_for(arrived, timeout, "every accepted packet at an analyzer", 0.3)
    got = pool.delivered()
    lost = want - set().union(*map(set, got.values()))
    assert not lost, f"lost {len(lost)}"
    return Counter({aid: len(set(ids)) for aid, ids in got.items()})


def assert_shares(counts: Counter[str], weights: dict[str, float], points: float = 1.0) -> None:
    total = sum(counts.values())
    wsum = sum(weights.values())
    for aid, w in weights.items():
        share = counts[aid] / total
        assert abs(share - w / wsum) * 100 <= points, (aid, share, w / wsum, dict(counts))
