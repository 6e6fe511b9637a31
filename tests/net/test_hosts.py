"""A daemon answers only the Host names it is reached by here (a DNS-rebinding guard)."""

from __future__ import annotations

import socket

import pytest

from logdist.errors import ConfigError
from logdist.net.hosts import HostRule


@pytest.mark.parametrize(
    "host",
    [
        None,
        "localhost",
        "localhost:8080",
        "LOCALHOST.:8080",
        "app.localhost:3000",
        "127.0.0.1:8080",
        "10.1.2.3",
        "[::1]:8080",
        "[fe80::1]",
        socket.gethostname(),
        f"{socket.gethostname()}:9000",
        "logs.example:443",
        "eu.logs.corp",
    ],
)
def test_names_of_this_machine_addresses_and_the_allowed_ones_pass(host: str | None) -> None:
    rule = HostRule("127.0.0.1", ["logs.example", ".logs.corp"])
    assert rule.allows(host)


@pytest.mark.parametrize("host", ["evil.example:8080", "evil.example", "logs.example.evil", "corp"])
def test_any_other_name_is_refused_naming_the_rule(host: str) -> None:
    rule = HostRule("127.0.0.1", ["logs.example", ".logs.corp"])
    assert not rule.allows(host)
    refusal = rule.refusal(host)
    assert refusal.status == 421 and "--allowed-host" in refusal.message


def test_the_name_it_is_bound_to_passes() -> None:
    assert HostRule("gateway.internal").allows("gateway.internal:8080")
    assert not HostRule("127.0.0.1").allows("gateway.internal:8080")


def test_a_bad_allowed_host_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="allowed host"):
        HostRule("", ["http://logs.example"])
