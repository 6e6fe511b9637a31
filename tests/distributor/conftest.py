from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from logdist.config import AnalyzerRef, DistributorConfig, HealthConfig
from logdist.distributor.node import Distributor
from logdist.distributor.web.app import make_app
from logdist.distributor.web.keys import DISTRIBUTOR
from tests.support.serving import FrontServer

Client = TestClient[Any, Any]
FAST_HEALTH = HealthConfig(interval=0.05, timeout=0.5, rise=1, fall=2)
MakeDistributor = Callable[..., Awaitable[Client]]
# An input read in the distributor itself, and in two parse processes (which start processes).
EITHER_WAY = pytest.mark.parametrize(
    "parse_workers",
    [
        pytest.param(0, id="in-process"),
        pytest.param(2, id="parse-processes", marks=pytest.mark.e2e),
    ],
)


@pytest.fixture
def make_distributor(aiohttp_client: Any) -> MakeDistributor:
    """A distributor app on a test server: `await make_distributor({"a1": (url, w)}, **cfg)`;
    an analyzer's tuple may end with its `Delivery`."""

    async def make(analyzers: dict[str, tuple[Any, ...]] | None = None, **kwargs: Any) -> Client:
        refs = tuple(AnalyzerRef(aid, *spec) for aid, spec in (analyzers or {}).items())
        kwargs.setdefault("health", FAST_HEALTH)
        # Tests that leave packets undelivered should not wait 10 s for them at teardown.
        kwargs.setdefault("drain_timeout", 0.5)
        # Inputs read here unless a test asks for parse processes (spawning them takes a second).
        kwargs.setdefault("parse_workers", 0)
        cfg = DistributorConfig(analyzers=refs, **kwargs)
        client: Client = await aiohttp_client(FrontServer(make_app(cfg)))
        return client

    return make


def service(client: Client) -> Distributor:
    app = client.app
    assert app is not None
    distributor: Distributor = app[DISTRIBUTOR]
    return distributor


async def all_up(client: Client) -> bool:
    rows = await (await client.get("/registry")).json()
    return all(r["health"] == "up" for r in rows)
