"""`logdist up`'s NATS servers: each on its own ports and data dir, routed to the others,
all on loopback. (The servers themselves run in the cluster and chaos tests.)"""

from __future__ import annotations

from pathlib import Path

from logdist.config import LocalCluster
from logdist.local.natsd import ports, server_config


def test_each_server_listens_on_loopback_and_routes_to_the_others(tmp_path: Path) -> None:
    cluster = LocalCluster(nats_servers=3, nats_port=4300, routes_port=6300)
    second = server_config(cluster, 1, tmp_path)
    assert "server_name: n2\nhost: 127.0.0.1\nport: 4301\n" in second
    assert f'store_dir: "{(tmp_path / "n2").resolve()}"' in second
    assert "port: 6301, routes: [" in second
    assert '"nats-route://127.0.0.1:6300", "nats-route://127.0.0.1:6302"' in second
    assert '6301"' not in second  # not routed to itself
    assert ports(cluster) == [
        ("nats n1", 4300),
        ("nats n2", 4301),
        ("nats n3", 4302),
        ("nats n1 routes", 6300),
        ("nats n2 routes", 6301),
        ("nats n3 routes", 6302),
    ]


def test_a_single_server_has_no_cluster_block(tmp_path: Path) -> None:
    alone = LocalCluster(distributors=1, nats_servers=1, nats_port=4300, routes_port=6300)
    assert "cluster {" not in server_config(alone, 0, tmp_path)
    assert ports(alone) == [("nats n1", 4300)]


def test_with_tls_clients_and_routes_speak_tls_with_up_s_certificate(tmp_path: Path) -> None:
    cluster = LocalCluster(nats_servers=3, nats_port=4300, routes_port=6300)
    conf = server_config(cluster, 0, tmp_path, tls="certs")
    folder = (Path("certs")).resolve()
    block = (
        f'tls {{ cert_file: "{folder}/nats.pem", key_file: "{folder}/nats.key",'
        f' ca_file: "{folder}/ca.pem" }}'
    )
    assert conf.count(block) == 2  # the client port's and, inside `cluster`, the routes'
    assert conf.index("cluster {") < conf.rindex(block)
    assert cluster.nats_urls(tls=True)[0] == "tls://127.0.0.1:4300"
