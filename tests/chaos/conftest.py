from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TABLE: list[dict[str, Any]] = []


@pytest.fixture
def report(artifacts: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Each scenario fills in its row; the table is printed and written to test-artifacts/."""
    row: dict[str, Any] = {"scenario": request.node.name.removeprefix("test_")}
    yield row
    TABLE.append(row)
    (artifacts / "chaos.json").write_text(json.dumps(TABLE, indent=2))
    print(f"\n{'scenario':<58} {'sent':>6} {'delivered':>9} {'dups':>5} {'lost':>5}")
    for r in TABLE:
        print(
            f"{r['scenario']:<58} {r.get('sent', '-'):>6} {r.get('delivered_unique', '-'):>9}"
            f" {r.get('duplicates', '-'):>5} {r.get('lost', '-'):>5}"
        )
