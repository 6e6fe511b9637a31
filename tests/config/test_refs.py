"""An analyzer as it is kept (state directory, control bucket): one codec, both ways."""

from __future__ import annotations

import pytest

from logdist.config.refs import AnalyzerRef, analyzer_of, analyzer_row, parse_analyzer_ref
from logdist.core.delivery import Delivery
from logdist.core.registry import AdminState, Registry


def test_a_kept_row_reads_back_as_the_same_analyzer() -> None:
    delivery = Delivery(
        format="ndjson", headers=(("Authorization", "Bearer x"),), compression="gzip"
    )
    ref = AnalyzerRef("a1", "http://h:9/ingest", 2.5, delivery)
    assert analyzer_of(analyzer_row(ref, AdminState.DRAINING)) == (ref, AdminState.DRAINING)
    registry = Registry(now=lambda: 0.0)
    registry.add("a1", ref.url, ref.weight, delivery)
    registry.set_admin("a1", AdminState.DISABLED)
    assert analyzer_of(analyzer_row(registry.get("a1"))) == (ref, AdminState.DISABLED)


@pytest.mark.parametrize(
    ("spec", "url", "weight", "fmt"),
    [
        ("a1=http://h:9/ingest", "http://h:9/ingest", 1.0, "auto"),
        ("a1=http://h:9/ingest@0.4", "http://h:9/ingest", 0.4, "auto"),
        ("a1=http://u@h:9/x;format=ndjson", "http://u@h:9/x", 1.0, "ndjson"),
        ("a1=http://h:9/x?a=1;b@2;format=json", "http://h:9/x?a=1;b", 2.0, "json"),
    ],
)
def test_an_analyzer_spec(spec: str, url: str, weight: float, fmt: str) -> None:
    ref = parse_analyzer_ref(spec)
    assert (ref.id, ref.url, ref.weight, ref.delivery.format) == ("a1", url, weight, fmt)
