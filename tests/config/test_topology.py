from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from logdist.config import (
    AnalyzerRef,
    EmitterConfig,
    HealthConfig,
    load_topology,
    parse_analyzer_ref,
    parse_messages,
)
from logdist.core.delivery import Delivery
from logdist.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_demo_config_describes_three_weighted_analyzers_and_three_emitters() -> None:
    topo = load_topology(ROOT / "configs" / "demo.toml")
    d = topo.distributor
    assert [(a.id, a.url, a.weight) for a in d.analyzers] == [
        ("a1", "http://127.0.0.1:9001/ingest", 0.5),
        ("a2", "http://127.0.0.1:9002/ingest", 0.3),
        ("a3", "http://127.0.0.1:9003/ingest", 0.2),
    ]
    assert [a.port for a in topo.analyzers] == [9001, 9002, 9003]
    assert len(topo.emitters) == 3
    assert {e.distributor for e in topo.emitters} == {("http://127.0.0.1:8000",)}
    assert len({(e.rate, e.messages) for e in topo.emitters}) == 3
    # Syslog in on loopback (it has no token), TCP and UDP.
    assert (d.syslog.host, d.syslog.tcp, d.syslog.udp) == ("127.0.0.1", 5514, 5514)


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ("tcp = 70000", "syslog tcp must be a port number 0-65535, got 70000"),
        ('udp = "514"', "udp has the wrong type"),
        ("max_message_bytes = 100", "syslog max_message_bytes must be >= 480, got 100"),
        ("tls = true", "tls"),
    ],
)
def test_bad_syslog_tables_say_what_is_wrong(tmp_path: Path, table: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_topology(write(tmp_path, f"[distributor.syslog]\n{table}\n"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.toml"
    path.write_text(text)
    return path


def test_external_analyzers_and_every_table(tmp_path: Path) -> None:
    topo = load_topology(
        write(
            tmp_path,
            """
[distributor]
port = 8100
queue_capacity = 50
[distributor.health]
interval = 0.25
fall = 1
[[analyzers]]
id = "far"
url = "http://10.0.0.9:9000/ingest"
weight = 2
[[emitters]]
id = "e9"
messages = "2-4"
rate = 0
""",
        )
    )
    assert topo.analyzers == ()
    assert topo.distributor.analyzers == (AnalyzerRef("far", "http://10.0.0.9:9000/ingest", 2.0),)
    assert topo.distributor.health == HealthConfig(interval=0.25, fall=1)
    assert topo.distributor.queue_capacity == 50
    assert topo.emitters[0].messages == (2, 4)
    assert topo.emitters[0].distributor == ("http://127.0.0.1:8100",)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[distributor]\nport = 'x'", r"\[distributor\]: port has the wrong type"),
        ("[distributor]\nprot = 1", r"unknown key\(s\) prot"),
        ("[distributor]\nport = 70000", "port must be a port number"),
        ("[distributor.health]\nrise = 0", "health rise must be >= 1"),
        ("[[analyzers]]\nid = 'a'\nurl = 'nope'", r"analyzers\[0\].*http"),
        ("[[analyzers]]\nid = 'a'\nurl = 'http://h:1/x'\nport = 3", "unknown key"),
        ("[[analyzers]]\nid = 'a'\nweight = -1", "weight must be > 0"),
        ("[[analyzers]]\nid = 'a'\n[[analyzers]]\nid = 'a'\nport = 9002", "repeated: a"),
        ("[[emitters]]\nmessages = '5-2'", "messages must satisfy"),
        ("[[emitters]]\nrate = -3", "rate must be >= 0"),
        ("[[emitters]]\nid = 'bad id'", "emitter id"),
        ("[nonsense]", r"unknown section\(s\) nonsense"),
        ("analyzers = 3", r"must be an array of tables"),
        ("[distributor\nport = 1", "not valid TOML"),
        ("[[analyzers]]\nid = 'a'\nurl = 'http://h:1/x'\nformat = 'xml'", "format must be one of"),
        ("[[analyzers]]\nid = 'a'\nport = 9\ncompression = 'br'", "compression must be one of"),
        ("[[analyzers]]\nid = 'a'\nurl = 'http://h:1/x'\nheaders = 'X: 1'", "headers must be an"),
        ("[[analyzers]]\nid = 'a'\nurl = 'http://h:1/x'\nhealth_url = 'h/x'", "health_url"),
        ("[[analyzers]]\nid = 'a'\nurl = 'http://h:1/x'\nhealth = 'on'", "active, passive"),
        ("[[analyzers]]\nid = 'a'\nurl = 'http://h:1/x'\nformt = 'json'", "known:.*format"),
        ("[[analyzers]]\nid = 'a'\nstore = 's'\nstore_sync = 'maybe'", "store_sync must be"),
        ("[[analyzers]]\nid = 'a'\nstore_max_age = 'a week'", "store_max_age must be sec"),
        ("[[analyzers]]\nid = 'a'\nstore_max_bytes = 1000", "at least 1 MiB"),
        ("[distributor.cluster]\nservers = ['http://h:4222']", "nats://HOST:PORT"),
        (
            "[distributor.cluster]\nservers = ['nats://h:4222']\nreplicas = 9",
            "replicas must be 1-5",
        ),
        (
            "[distributor]\nspool_dir = 's'\n[distributor.cluster]\nservers = ['nats://h:1']",
            "leave spool_dir",
        ),
        ("[distributor]\nid = 'no spaces'", "distributor id"),
        ("[cluster]\nnats_servers = 2", "1, 3 or 5"),
        ("[cluster]\ndistributors = 0", "distributors must be 1-9"),
        ("[cluster]\nnats_port = 4222\nroutes_port = 4224", "must be 3 or more apart"),
        ("[cluster]\nnats_servers = 1\n[distributor.cluster]\nreplicas = 3", "cannot exceed"),
        ("[cluster]\n[distributor]\nport = 0", "fixed \\[distributor\\] port"),
        ("[[emitters]]\ndistributor = ['http://h:1', 'h:2']", "distributor: .*http"),
        ("[[emitters]]\ndistributor = []", "at least one URL"),
    ],
)
def test_bad_config_is_one_error_naming_the_file_and_key(
    tmp_path: Path, text: str, error: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=error) as info:
        load_topology(path)
    assert str(path) in info.value.message


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_topology(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "a1=http://127.0.0.1:9001/ingest@0.4",
            AnalyzerRef("a1", "http://127.0.0.1:9001/ingest", 0.4),
        ),
        ("a1=http://127.0.0.1:9001/ingest", AnalyzerRef("a1", "http://127.0.0.1:9001/ingest", 1.0)),
        ("a1=http://u@h:9/x@2", AnalyzerRef("a1", "http://u@h:9/x", 2.0)),
        ("a1=http://u@h:9/x", AnalyzerRef("a1", "http://u@h:9/x", 1.0)),
    ],
)
def test_analyzer_flag(spec: str, expected: AnalyzerRef) -> None:
    assert parse_analyzer_ref(spec) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "a2=http://h:9200/ingest@2;format=ndjson;header=Authorization: Bearer x"
            ";compression=gzip",
            AnalyzerRef(
                "a2",
                "http://h:9200/ingest",
                2.0,
                Delivery("ndjson", (("Authorization", "Bearer x"),), compression="gzip"),
            ),
        ),
        (
            "a3=http://h/in;header=X-A: 1;header=X-B: 2;health=passive",
            AnalyzerRef(
                "a3",
                "http://h/in",
                1.0,
                Delivery(headers=(("X-A", "1"), ("X-B", "2")), health="passive"),
            ),
        ),
        (
            "a4=http://h/in;v=1@3;health_url=http://h/ready",
            AnalyzerRef("a4", "http://h/in;v=1", 3.0, Delivery(health_url="http://h/ready")),
        ),
    ],
)
def test_analyzer_flag_with_delivery_options(spec: str, expected: AnalyzerRef) -> None:
    assert parse_analyzer_ref(spec) == expected


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("a1", "ID=URL"),
        ("=http://h/x", "ID=URL"),
        ("a1=", "ID=URL"),
        ("a1=ftp://h/x@1", "http"),
        ("a1=http://h/x@0", "weight"),
        ("a1=http://h/x;format=xml", "--analyzer a1: format must be one of"),
        ("a1=http://h/x;header=Authorization Bearer", "no colon"),
        ("a1=http://h/x;health_url=/ready", "health_url"),
    ],
)
def test_bad_analyzer_flag(spec: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_analyzer_ref(spec)


def test_every_analyzer_may_say_how_it_is_delivered_to(tmp_path: Path) -> None:
    topo = load_topology(
        write(
            tmp_path,
            """
[[analyzers]]
id = "search"
url = "http://127.0.0.1:9200/bulk"
format = "ndjson"
compression = "gzip"
health_url = "http://127.0.0.1:9200/_cluster/health"
headers = { Authorization = "Bearer s3cret" }

[[analyzers]]
id = "local"
port = 9101
format = "json"
health = "passive"
""",
        )
    )
    search, local = topo.distributor.analyzers
    assert search.delivery == Delivery(
        "ndjson",
        (("Authorization", "Bearer s3cret"),),
        "http://127.0.0.1:9200/_cluster/health",
        "active",
        "gzip",
    )
    assert local.delivery == Delivery(format="json", health="passive")
    assert [a.id for a in topo.analyzers] == ["local"]  # started by `up`, as before


@pytest.mark.parametrize(("value", "expected"), [(5, (5, 5)), ("5", (5, 5)), ("1-20", (1, 20))])
def test_messages(value: object, expected: tuple[int, int]) -> None:
    assert parse_messages(value) == expected


@pytest.mark.parametrize("value", ["0", "a-b", "3-1", 1.5, True, "1-200000"])
def test_bad_messages(value: object) -> None:
    with pytest.raises(ConfigError):
        parse_messages(value)


def test_a_bad_value_set_after_construction_is_refused() -> None:
    with pytest.raises(ConfigError, match="distributor"):
        dataclasses.replace(EmitterConfig(), distributor=("localhost:8000",))


def test_up_passes_every_analyzer_setting_of_the_topology_to_its_child(tmp_path: Path) -> None:
    from logdist.local.supervisor import analyzer_argv

    topo = load_topology(
        write(
            tmp_path,
            """
[[analyzers]]
id = "flaky"
port = 9100
output = "flaky.ndjson"
dedupe_window = 50
fail_rate = 0.25
delay = 0.5
store = "st/flaky"
store_max_bytes = 1073741824
store_max_age = "7d"
store_segment = "10m"
store_sync = "normal"
""",
        )
    )
    argv = analyzer_argv(topo.analyzers[0])
    flags = dict(zip(argv[5::2], argv[6::2], strict=False))
    assert flags == {
        "--id": "flaky",
        "--host": "127.0.0.1",
        "--port": "9100",
        "--dedupe-window": "50",
        "--output": "flaky.ndjson",
        "--max-body-bytes": str(64 << 20),
        "--fail-rate": "0.25",
        "--delay": "0.5",
        "--store": "st/flaky",
        "--store-segment": "600.0",
        "--store-sync": "normal",
        "--store-max-bytes": "1073741824",
        "--store-max-age": "604800.0",
    }


def test_origins_and_emitter_networks_from_toml(tmp_path: Path) -> None:
    topo = load_topology(
        write(
            tmp_path,
            '[distributor]\nallow_origins = ["https://logs.example"]\n'
            'emitter_networks = ["10.0.0.0/8", "192.0.2.7"]\n',
        )
    )
    assert topo.distributor.allow_origins == ("https://logs.example:443",)
    assert topo.distributor.emitter_networks == ("10.0.0.0/8", "192.0.2.7/32")
    for text, words in [
        ('[distributor]\nallow_origins = ["logs.example"]\n', "is not an origin"),
        ('[distributor]\nemitter_networks = ["ten"]\n', "is not a network"),
        ("[distributor]\nemitter_networks = [1]\n", "wrong type"),
    ]:
        with pytest.raises(ConfigError, match=words):
            load_topology(write(tmp_path, text))


def test_the_fleet_topology_describes_two_fleets() -> None:
    topo = load_topology(ROOT / "configs" / "fleet.toml")
    assert [(e.id, e.fleet, e.rate) for e in topo.emitters] == [
        ("web", 2000, 1.0),
        ("db", 1000, 1.0),
    ]
    assert topo.distributor.emitter_lease == 60.0
    with pytest.raises(ConfigError, match="fleet must be 0-1000000"):
        EmitterConfig(fleet=-1)


def test_the_cluster_table(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[distributor]\nid = 'd2'\n[distributor.cluster]\n"
        "servers = ['nats://127.0.0.1:4222', 'nats://127.0.0.1:4223']\n"
        "replicas = 3\nack_wait = 10\nstream = 'LOGS'\n",
    )
    d = load_topology(path).distributor
    assert d.id == "d2" and d.cluster.servers == ("nats://127.0.0.1:4222", "nats://127.0.0.1:4223")
    assert (d.cluster.replicas, d.cluster.ack_wait, d.cluster.stream) == (3, 10.0, "LOGS")


def test_a_cluster_topology_gives_its_emitters_every_replica(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[cluster]\ndistributors = 2\n[distributor]\nport = 8100\n"
        "[[emitters]]\nid = 'e1'\n"
        "[[emitters]]\nid = 'e2'\ndistributor = 'http://10.0.0.1:8000'\n",
    )
    topo = load_topology(path)
    assert topo.cluster is not None and topo.cluster.nats_servers == 3
    assert topo.cluster.nats_urls()[2] == "nats://127.0.0.1:4224"
    assert topo.replica_urls() == ("http://127.0.0.1:8100", "http://127.0.0.1:8101")
    assert topo.emitters[0].distributor == topo.replica_urls()
    assert topo.emitters[1].distributor == ("http://10.0.0.1:8000",)


def test_analyzers_of_other_formats_take_their_options_from_toml_and_specs(
    tmp_path: Path,
) -> None:
    topo = load_topology(
        write(
            tmp_path,
            """
[[analyzers]]
id = "hec"
url = "https://splunk:8088/services/collector/event"
format = "splunk-hec"
host = "gateway"
index = "main"
headers = { Authorization = "Splunk t0k3n" }
[[analyzers]]
id = "siem"
url = "tcp://127.0.0.1:6514"
format = "syslog"
facility = "local4"
[[analyzers]]
id = "a1"
host = "127.0.0.1"
port = 9101
""",
        )
    )
    hec, siem, local = topo.distributor.analyzers
    assert hec.delivery.settings() == {
        "index": "main",
        "source": None,
        "sourcetype": "_json",
        "host": "gateway",
    }
    assert siem.delivery.option("facility") == "local4" and siem.url == "tcp://127.0.0.1:6514"
    assert topo.analyzers[0].host == "127.0.0.1"  # a local analyzer's host is where it listens
    spec = parse_analyzer_ref(
        "ck=http://ch:8123/?query=INSERT@2;format=records;timestamp_format=unix"
    )
    assert (spec.url, spec.weight, spec.delivery.option("timestamp_format")) == (
        "http://ch:8123/?query=INSERT",
        2.0,
        "unix",
    )
    with pytest.raises(ConfigError, match="format loki has no option 'index'"):
        parse_analyzer_ref("l=http://loki:3100/loki/api/v1/push;format=loki;index=x")


def test_tokens_come_from_files_so_that_none_is_on_a_command_line(tmp_path: Path) -> None:
    from logdist.config import DistributorConfig, EmitterConfig

    admin, ingest = tmp_path / "admin", tmp_path / "ingest"
    admin.write_text("s3cret-admin\n")
    ingest.write_text("s3cret-ingest\nignored\n")
    cfg = DistributorConfig(admin_token_file=str(admin), ingest_token_file=str(ingest))
    assert (cfg.admin_token, cfg.ingest_token) == ("s3cret-admin", "s3cret-ingest")
    emitter = EmitterConfig(token="old", token_file=str(ingest))
    assert emitter.token == "s3cret-ingest"  # the file wins
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="holds no token"):
        DistributorConfig(admin_token_file=str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="cannot read"):
        DistributorConfig(ingest_token_file=str(tmp_path / "missing"))
