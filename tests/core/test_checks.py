from __future__ import annotations

import pytest

from logdist.core.checks import check_network, check_origin, control_url, origin_of
from logdist.errors import ConfigError, InvalidRequest


@pytest.mark.parametrize(
    ("value", "origin"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("HTTP://LocalHost:8000", "http://localhost:8000"),
        ("http://example.com", "http://example.com:80"),
        ("https://example.com:443", "https://example.com:443"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("null", None),
        ("file://", None),
        ("http://h:notaport", None),
    ],
)
def test_origins_are_normalised_so_spellings_of_one_compare_equal(
    value: str, origin: str | None
) -> None:
    assert origin_of(value) == origin


def test_an_allow_list_takes_origins_only() -> None:
    assert check_origin("https://logs.example") == "https://logs.example:443"
    for bad in ("logs.example", "https://logs.example/dashboard", "null"):
        with pytest.raises(ConfigError, match="allow_origins"):
            check_origin(bad)


def test_networks_are_cidr() -> None:
    assert check_network("10.1.2.3/8") == "10.0.0.0/8"
    assert check_network("192.0.2.7") == "192.0.2.7/32"
    with pytest.raises(ConfigError, match="emitter_networks: 'ten' is not a network"):
        check_network("ten")


def test_a_control_url_must_point_at_the_registering_address() -> None:
    assert control_url("http://127.0.0.1:7001", "127.0.0.1", ()) == "http://127.0.0.1:7001"
    assert control_url("http://localhost:7001/", "127.0.0.1", ()) == "http://localhost:7001/"
    assert control_url("http://10.0.0.5:7001", "::ffff:10.0.0.5", ()) == "http://10.0.0.5:7001"
    for url, peer in [
        ("http://10.0.0.9:7001", "10.0.0.5"),  # another machine
        ("http://169.254.169.254/latest", "10.0.0.5"),  # a cloud metadata service
        ("http://127.0.0.1:7001", "10.0.0.5"),  # the distributor's own loopback
        ("http://localhost:7001", "10.0.0.5"),
    ]:
        with pytest.raises(InvalidRequest, match=r"registration came from \(10.0.0.5\)"):
            control_url(url, peer, ())


def test_host_names_cannot_be_checked_and_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="a host name .'emitter.internal'. cannot be checked"):
        control_url("http://emitter.internal:7001", "10.0.0.5", ("10.0.0.0/8",))


def test_the_operators_networks_are_allowed() -> None:
    nets = ("10.0.0.0/8", "fd00::/8")
    assert control_url("http://10.9.9.9:7001", "192.0.2.1", nets) == "http://10.9.9.9:7001"
    assert control_url("http://[fd00::5]:7001", "192.0.2.1", nets) == "http://[fd00::5]:7001"
    with pytest.raises(InvalidRequest, match="--emitter-networks; got 11.0.0.1"):
        control_url("http://11.0.0.1:7001", "192.0.2.1", nets)


def test_an_emitter_on_every_address_is_reached_at_the_registering_one() -> None:
    assert control_url("http://0.0.0.0:7001", "10.0.0.5", ()) == "http://10.0.0.5:7001"
    assert control_url("http://[::]:7001", "fd00::5", ()) == "http://[fd00::5]:7001"
