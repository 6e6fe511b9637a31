"""Configuration: one frozen dataclass per daemon, loaded from TOML, overridden by CLI flags.

Each setting is declared once, in `daemons.py` and `tables.py`: its default, its check and
its flag; the TOML loader (`topology.py`) and the command line (`logdist.cli.settings`) both
read that field.
This package's face is its names below: `from logdist.config import DistributorConfig`.
"""

from logdist.config.daemons import AnalyzerConfig, DistributorConfig, EmitterConfig
from logdist.config.fields import Flag, parse_duration, parse_messages, setting
from logdist.config.refs import ANALYZER_SPEC, AnalyzerRef, parse_analyzer_ref
from logdist.config.tables import ClusterConfig, HealthConfig, SyslogConfig
from logdist.config.topology import (
    DEFAULT_CONFIG,
    LocalCluster,
    Topology,
    load_topology,
    topology_from_dict,
)

__all__ = [
    "ANALYZER_SPEC",
    "DEFAULT_CONFIG",
    "AnalyzerConfig",
    "AnalyzerRef",
    "ClusterConfig",
    "DistributorConfig",
    "EmitterConfig",
    "Flag",
    "HealthConfig",
    "LocalCluster",
    "SyslogConfig",
    "Topology",
    "load_topology",
    "parse_analyzer_ref",
    "parse_duration",
    "parse_messages",
    "setting",
    "topology_from_dict",
]
