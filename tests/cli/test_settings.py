"""A daemon's flags come from its settings' fields: names, defaults, nesting, conversion."""

from __future__ import annotations

import dataclasses

import pytest
import typer
from typer.testing import CliRunner

from logdist.cli.settings import NO_FLAGS, Settings, flags
from logdist.config import AnalyzerConfig, DistributorConfig, EmitterConfig
from logdist.config.fields import Option, argv_of, options
from logdist.errors import ConfigError


def flag(cls: type, name: str) -> Option:
    return next(o for o in options(cls) if name in o.decls)


def given(cls: type, **values: object) -> Settings:
    return Settings({flag(cls, name): value for name, value in values.items()})


def test_nested_tables_have_their_flags_in_place_with_their_names() -> None:
    names = [o.decls[0] for o in options(DistributorConfig)]
    assert (
        names.index("--drain-timeout")
        < names.index("--health-interval")
        < names.index("--admin-token")
    )
    assert {"--rise", "--fall", "--syslog-tcp", "--cluster", "--ack-wait", "--id"} <= set(names)
    assert "--health-rise" not in names and "--stream" not in names  # TOML only


def test_only_the_flags_given_change_the_config() -> None:
    base = DistributorConfig(queue_capacity=7, port=1)
    cfg = given(
        DistributorConfig, **{"--port": 9, "--health-interval": 0.5, "--cluster": "nats://a:1,"}
    ).apply(base)
    assert (cfg.port, cfg.queue_capacity, cfg.health.interval) == (9, 7, 0.5)
    assert cfg.health.rise == base.health.rise
    assert cfg.cluster.servers == ("nats://a:1",)


def test_flag_values_are_converted_and_checked_as_the_config_checks_them() -> None:
    cfg = given(DistributorConfig, **{"--analyzer": ["a1=http://h:1/ingest@2"]}).apply(
        DistributorConfig()
    )
    assert (cfg.analyzers[0].id, cfg.analyzers[0].weight) == ("a1", 2.0)
    store = given(AnalyzerConfig, **{"--store-max-age": "7d"}).apply(AnalyzerConfig())
    assert store.store_max_age == 7 * 86400
    with pytest.raises(ConfigError, match="queue_capacity must be >= 1"):
        given(DistributorConfig, **{"--queue-capacity": 0}).apply(DistributorConfig())
    with pytest.raises(ConfigError, match="--store-segment must be seconds or a duration"):
        given(AnalyzerConfig, **{"--store-segment": "soon"}).apply(AnalyzerConfig())


def test_a_config_made_into_flags_reads_back_the_same() -> None:
    """What `logdist up` puts on a child's command line gives the child the same config."""
    emitter = EmitterConfig(
        id="e7", distributor=("http://a:1", "http://b:2"), messages=(2, 5), rate=2.5, token="s3"
    )
    argv = argv_of(emitter)
    assert "s3" not in argv  # a secret never goes on a command line
    seen: list[EmitterConfig] = []
    app = typer.Typer()

    @app.command()
    @flags(EmitterConfig)
    def start(settings: Settings = NO_FLAGS) -> None:
        seen.append(settings.apply(EmitterConfig()))

    result = CliRunner().invoke(app, argv, env={})
    assert result.exit_code == 0, result.output
    assert seen == [dataclasses.replace(emitter, token=None)]
