"""`logdist bench` runs: a smoke test of every scenario, seconds long. It asserts that the
benchmark measures (real deliveries, every front end, the targets judged), never how fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import clean_env

pytestmark = pytest.mark.e2e


def bench(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path / "bench.json"
    env = {**clean_env(), "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin"}
    result = subprocess.run(
        [sys.executable, "-m", "logdist", "bench", "--json", str(out), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result, json.loads(out.read_text())


def test_every_front_end_carries_the_same_work(tmp_path: Path) -> None:
    result, data = bench(
        tmp_path,
        "--seconds",
        "1",
        "-s",
        "a",
        "-s",
        "d",
        "--connections",
        "4",
        "--emitters",
        "30",
        "--fleets",
        "2",
        "--fleet-batch",
        "5",
        "--rounds",
        "2",
        # Another install's logdist beside this one: here the same, the comparison's mechanics.
        "--baseline",
        sys.executable,
    )
    rows = {(r["scenario"], r["front_end"]): r for r in data["rows"]}
    assert set(rows) == {(s, f) for s in "ad" for f in ("logdist", "nginx", "haproxy")} | {
        ("a", "logdist-base")
    }
    assert rows[("a", "logdist-base")]["baseline"] == sys.executable
    for row in rows.values():
        assert row["delivered_packets"] > 0 and row["errors"] == 0
        # Weighted 4:3:2:1 by each front end: every analyzer received some.
        assert all(share > 0 for share in row["shares"].values())
    fleets = rows[("d", "logdist")]["load"]
    # Every one of the 30 emitters registered with logdist and held its lease; its views were
    # watched and metered.
    assert (fleets["emitters_registered"], fleets["emitters_active"], fleets["fleets"]) == (
        30,
        30,
        2,
    )
    assert fleets["ws_frames"] >= 1 and 0 < fleets["status_bytes"] <= 16 * 1024
    assert fleets["control_plane_pct"]["total"] > 0
    assert sum(fleets["latency_ms"].values()) > 0
    # (a) was taken in two slices a front end, in turn; (d) in one.
    assert {rows[("a", f)]["rounds"] for f in ("logdist", "nginx", "haproxy")} == {2}
    assert len(rows[("a", "nginx")]["load"]) == 2 and rows[("d", "nginx")]["rounds"] == 1
    assert data["rounds"] == 2
    assert rows[("a", "nginx")]["vs_nginx"] == 1.0
    targets = {t["target"].split(" ")[0]: t for t in data["targets"]}
    assert {"(a)", "(d)"} <= set(targets)
    assert any("control plane" in t["target"] for t in data["targets"])
    assert "targets" in result.stdout and "logdist" in result.stdout


def test_batches_many_analyzers_and_the_spool(tmp_path: Path) -> None:
    _, data = bench(
        tmp_path,
        "--seconds",
        "1",
        "-s",
        "b",
        "-s",
        "c",
        "-s",
        "e",
        "-s",
        "f",
        "-s",
        "g",
        "-s",
        "h",
        "-s",
        "i",
        "-s",
        "k",
        "--only",
        "logdist",
        "--connections",
        "4",
        "--many",
        "200",
        "--store-fill",
        "20000",
        "--rounds",
        "1",
    )
    by = {
        (r["scenario"], r["front_end"], r.get("like"), r.get("analyzers")): r for r in data["rows"]
    }
    assert by[("b", "logdist", None, None)]["delivered_messages"] > 0
    assert by[("c", "logdist", None, None)]["delivered_messages"] > 0
    many = by[("e", "logdist 200 an.", None, 200)]
    assert many["delivered_packets"] > 0 and by[("e", "logdist 4 an.", None, 4)]["rounds"] == 1
    # Measured idle once the default probe budget saw all 200 up, before (a) ran through it.
    assert many["idle"]["cpu_pct"] > 0 and 0 < many["idle"]["status_bytes"] <= 16 * 1024
    assert {r["analyzers"] for r in data["rows"] if r["front_end"] == "picker"} == {10, 200}
    assert by[("f", "logdist+spool", "a", None)]["delivered_packets"] > 0
    assert by[("f", "logdist+spool", "c", None)]["delivered_packets"] > 0
    # OTLP requests built with opentelemetry-proto, and syslog over 8 connections, delivered
    # as records and messages the analyzers counted.
    otlp, syslog = by[("g", "otlp-in", None, None)], by[("h", "logdist", None, None)]
    assert otlp["delivered_messages"] >= 512 and otlp["records_per_request"] == 512
    assert otlp["format"] == "otlp"  # into four otlp analyzers, passed through
    # (c)'s load converted for analyzers of each format, counted by them record by record.
    for fmt in ("records", "elasticsearch", "loki", "otlp"):
        assert by[("k", f"logdist>{fmt}", "c", None)]["delivered_messages"] > 0, fmt
    assert syslog["delivered_messages"] > 0 and syslog["load"]["sent_messages"] > 0
    assert syslog["errors"] == 0
    # (c) into storing analyzers: every message delivered is in a store; then searches over
    # the filled stores answered, none partial.
    stored = by[("i", "logdist", "c", None)]
    assert stored["delivered_messages"] > 0
    assert stored["stored_messages"] == stored["counted_messages"] >= stored["delivered_messages"]
    search = by[("i", "search", None, None)]
    assert search["fill"]["messages"] >= 20_000 and search["partial"] == 0
    assert search["histogram"]["total"] == search["fill"]["messages"]
    assert search["search"]["mean_found"] > 0
    names = {t["target"].split(" ")[0] for t in data["targets"]}
    assert {"(b)", "(c)", "(e)", "(f)", "(g)", "(h)", "(i)", "(k)"} <= names
    assert any(t["target"].startswith("(e) idle CPU with 200") for t in data["targets"])


def test_the_cluster_beside_one_distributor_with_its_spool(tmp_path: Path) -> None:
    _, data = bench(
        tmp_path, "--seconds", "1", "-s", "j", "--only", "logdist", "--connections", "4",
        "--rounds", "1",
    )  # fmt: skip
    by = {(r["scenario"], r["front_end"], r.get("like")): r for r in data["rows"]}
    for key in ("a", "c"):
        clustered = by[("j", "logdist cluster", key)]
        assert clustered["delivered_messages"] > 0 and clustered["errors"] == 0
        # The replicas' and the three NATS servers' CPU, apart, a message.
        parts = {"replicas", "nats", "nats n1", "nats n2", "nats n3"}
        assert set(clustered["cpu_us_per_message"]) == parts
        assert clustered["cpu_parts"]["nats"] > 0
        assert by[("f", "logdist+spool", key)]["delivered_messages"] > 0
    # One message a packet in (a): a packet the analyzers saw twice (ids repeated across the
    # two wrk processes, say) would count as a packet and not as a message.
    a = by[("j", "logdist cluster", "a")]
    assert a["delivered_packets"] == a["delivered_messages"]
    targets = [t for t in data["targets"] if t["target"].startswith("(j)")]
    assert len(targets) == 2 and targets[1]["goal"] == ">= 0.5"


def test_unknown_scenario_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "logdist", "bench", "-s", "z"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert result.returncode == 2 and "unknown scenario z" in result.stderr


def test_foreign_analyzers_get_the_same_bodies_from_every_front_end(tmp_path: Path) -> None:
    result, data = bench(
        tmp_path,
        "--analyzers",
        "foreign",
        "--seconds",
        "1",
        "--connections",
        "4",
        "--rounds",
        "1",
    )
    rows = {(r["scenario"], r["front_end"]): r for r in data["rows"]}
    assert set(rows) == {(s, f) for s in "ac" for f in ("logdist", "nginx", "haproxy")}
    assert data["analyzers"] == "foreign"
    for row in rows.values():
        assert row["delivered_messages"] > 0 and row["errors"] == 0
        assert all(share > 0 for share in row["shares"].values())
    targets = {t["target"] for t in data["targets"]}
    assert "(c) delivered messages/s, logdist / nginx" in targets
    assert "(a) message-share error, points" in targets
    assert "foreign analyzers" in result.stdout


def test_foreign_analyzers_refuse_the_scenarios_that_measure_logdists_own(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "logdist", "bench", "--analyzers", "foreign", "-s", "e"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert result.returncode == 2 and "with --analyzers foreign" in result.stderr


def test_tls_on_both_sides_beside_nginx_and_without_tls(tmp_path: Path) -> None:
    _, data = bench(
        tmp_path, "--seconds", "1", "-s", "l", "--only", "logdist", "--only", "nginx",
        "--connections", "4", "--rounds", "1",
    )  # fmt: skip
    by = {(r["scenario"], r["front_end"], r.get("like")): r for r in data["rows"]}
    # Every row delivered through TLS (the analyzers serve only TLS) and without errors.
    for key in (("l", "logdist-tls", "a"), ("l", "nginx-tls", "a"), ("l", "logdist-tls", "c"),
                ("l", "logdist", "c")):  # fmt: skip
        assert by[key]["delivered_messages"] > 0 and by[key]["errors"] == 0, key
        assert by[key]["tls"] is (key[1] in ("logdist-tls", "nginx-tls"))
    for front in ("logdist-tls", "nginx-tls"):
        hs = by[("l", front, "handshakes")]
        assert hs["handshakes_per_s"] > 0 and hs["errors"] == 0
        # A request a connection: as many delivered packets as handshakes (and those in
        # flight when wrk stopped counting, one a connection at most).
        assert hs["requests"] <= hs["delivered_packets"] <= hs["requests"] + 16
    names = [t["target"] for t in data["targets"] if t["target"].startswith("(l)")]
    assert len(names) == 4 and names[0].endswith("logdist-TLS / nginx-TLS")
