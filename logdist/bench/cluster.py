"""Scenario (j): logdist's cluster mode as a front end — three nats-servers clustered on
loopback (JetStream, every stream message on all three, as `logdist up configs/cluster.toml`
runs them) and two distributor replicas, the load spread over both — measured beside one
distributor with its spool. The CPU of the replicas and of the NATS servers is measured
apart, for the per-message costs the README's scaling model uses."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

from logdist.bench.proxies import FrontEnd, PortTaken, start_logdist, wait_port
from logdist.config import LocalCluster
from logdist.local import natsd
from logdist.local.ports import free_run

REPLICAS = 2
SERVERS = 3


def start_cluster(work: Path, ports: dict[str, int], fmt: str | None = None) -> FrontEnd:
    for attempt in range(3):
        first = free_run(2 * SERVERS)  # one run for both: two runs picked apart could overlap
        spec = LocalCluster(
            distributors=REPLICAS,
            nats_servers=SERVERS,
            nats_port=first,
            routes_port=first + SERVERS,
        )
        base = work / f"nats-{time.time_ns()}"
        nats = [
            subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _, argv in natsd.write_configs(spec, base)
        ]
        try:
            for i, proc in enumerate(nats):
                wait_port(spec.nats_port + i, proc=proc)
            break
        except PortTaken:  # a port of the run was taken meanwhile: another run
            for proc in nats:
                proc.kill()
                proc.wait()
            if attempt == 2:
                raise
            print(f"  (a port of {first}-{first + 2 * SERVERS - 1} was taken: another run)")
    servers = ",".join(spec.nats_urls())
    replicas = []
    try:
        for k in range(1, REPLICAS + 1):
            fe = start_logdist(
                work, ports, "--cluster", servers, "--id", f"d{k}", "--cluster-replicas",
                str(SERVERS), fmt=fmt,
            )  # fmt: skip
            replicas.append(fe)
        for fe in replicas:
            _wait_ready(fe.port)
    except BaseException:
        for proc in [p for fe in replicas for p in fe.procs] + nats:
            proc.kill()
        raise
    procs = [p for fe in replicas for p in fe.procs]
    return FrontEnd(
        "logdist cluster",
        replicas[0].port,
        procs + nats,
        ports=[fe.port for fe in replicas],
        groups=[procs, nats],
        parts={
            "replicas": [p.pid for p in procs],
            "nats": [p.pid for p in nats],
            # Each server apart: the busiest is the stream's leader, which every message
            # passes through (the ceiling of one stream).
            **{f"nats n{i + 1}": [p.pid] for i, p in enumerate(nats)},
        },
    )


def _wait_ready(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as resp:
            if json.load(resp)["cluster"]["ready"]:
                return
        time.sleep(0.2)
    raise RuntimeError(f"replica on {port} did not join the cluster in {timeout:g} s")
