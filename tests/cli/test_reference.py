from __future__ import annotations

import pytest

from logdist.cli import reference


@pytest.mark.e2e  # runs `logdist ... --help` for every command
def test_the_cli_reference_is_generated_from_the_cli() -> None:
    doc = reference.DOC.read_text()
    assert reference.current(doc) == reference.section(), (
        "docs/cli.md is stale: run python -m logdist.cli.reference --write"
    )
