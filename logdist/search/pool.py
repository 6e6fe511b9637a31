"""Search across the pool: `GET /logs/search`, `/logs/histogram`, `/logs/context`.

Every analyzer whose health answer said it keeps a store is asked at once, with a deadline;
the answers are merged newest first (a message two analyzers stored shown once), and an
analyzer that did not answer in time, answered an error or is not reachable is named in
`partial` — never skipped silently. The stores all order messages by (ts, packetId, index),
so the cursor of a merged page means the same to each of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
import orjson

from logdist.core.registry import Analyzer
from logdist.errors import NotFound
from logdist.search.fts import check_fts
from logdist.search.query import (
    LEVEL_NUMBER,
    MAX_LIMIT,
    Query,
    cursor_after,
    histogram_body,
    invalid,
    merge,
    page_answer,
    parse_query,
    ts_ms,
)


def store_url(ingest_url: str, route: str) -> str:
    """The store route beside an ingest URL: `http://h/api/ingest` -> `http://h/api/search`."""
    parts = urlsplit(ingest_url)
    base = parts.path.rsplit("/", 1)[0] if "/" in parts.path else ""
    return urlunsplit((parts.scheme, parts.netloc, f"{base}/{route}", "", ""))


class Answered:
    """What each analyzer asked answered, and who did not."""

    def __init__(self) -> None:
        self.bodies: dict[str, dict[str, Any]] = {}
        self.partial: list[dict[str, str]] = []


class PoolSearch:
    def __init__(
        self,
        analyzers: Iterable[Analyzer],
        session: aiohttp.ClientSession,
        deadline: float,
    ) -> None:
        self.analyzers = list(analyzers)
        self.session = session
        self.deadline = deadline

    def targets(self, query: Query) -> list[Analyzer]:
        """The analyzers known to keep a store (the ones named, when some are)."""
        known = {a.id: a for a in self.analyzers}
        for aid in query.analyzers:
            if aid not in known:
                ids = sorted(known)
                listed = ", ".join(ids[:20]) + (f" … ({len(ids)} in all)" if len(ids) > 20 else "")
                raise invalid("analyzer", f"unknown analyzer {aid!r}; known: {listed}")
        chosen = [known[aid] for aid in query.analyzers] if query.analyzers else self.analyzers
        return [a for a in chosen if a.store]

    def storeless(self, query: Query) -> list[dict[str, str]]:
        """Analyzers named in the query that keep no store: said in `partial`."""
        known = {a.id: a for a in self.analyzers}
        return [
            {"analyzer": aid, "error": "keeps no store (its health does not say store: true)"}
            for aid in query.analyzers
            if not known[aid].store
        ]

    async def ask(self, analyzers: list[Analyzer], route: str, params: dict[str, str]) -> Answered:
        """GET `route` of every analyzer in `analyzers` at once, within the deadline; an
        answer without the route's list (`items`, or `buckets`) is named in `partial`."""
        answered = Answered()
        query = urlencode(params)
        needs = "buckets" if route == "histogram" else "items"

        async def one(a: Analyzer) -> None:
            url = f"{store_url(a.url, route)}?{query}"
            headers = dict(a.delivery.headers)
            try:
                async with self.session.get(url, headers=headers) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        answered.partial.append(
                            {"analyzer": a.id, "error": f"HTTP {resp.status}: {_said(body)}"}
                        )
                        return
                    data = orjson.loads(body)
                    if not isinstance(data, dict) or not isinstance(data.get(needs), list):
                        answered.partial.append(
                            {"analyzer": a.id, "error": f"its answer has no {needs!r} list"}
                        )
                        return
                    answered.bodies[a.id] = data
            except (aiohttp.ClientError, OSError, orjson.JSONDecodeError) as exc:
                answered.partial.append({"analyzer": a.id, "error": _described(exc)})

        tasks = {asyncio.ensure_future(one(a)): a for a in analyzers}
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=self.deadline)
            for task in pending:
                task.cancel()
                answered.partial.append(
                    {
                        "analyzer": tasks[task].id,
                        "error": f"no answer within {self.deadline:g} s",
                    }
                )
            for task in done:
                task.result()
        answered.partial.sort(key=lambda p: p["analyzer"])
        return answered

    async def search(self, query: Query) -> dict[str, Any]:
        targets = self.targets(query)
        answered = await self.ask(targets, "search", query.params())
        pages = [body["items"] for body in answered.bodies.values()]
        items = merge(pages, query.limit, query.ascending)
        # A store's full page holds `limit` distinct messages, so the merged page is full
        # whenever any store may have more; a short one had all there is.
        cursor = cursor_after(items[-1]) if len(items) == query.limit else None
        partial = sorted(answered.partial + self.storeless(query), key=lambda p: p["analyzer"])
        return page_answer(items, cursor, partial)

    async def histogram(self, query: Query) -> dict[str, Any]:
        targets = self.targets(query)
        partial: list[dict[str, str]] = []
        if query.since is None or query.until is None:
            # The stored range first, so that every store counts into the same buckets.
            probe = await self.ask(targets, "histogram", replace(query, buckets=1).params())
            partial = probe.partial
            # Each store says the range it counted (its buckets are rounded wider).
            ranges = [
                b
                for b in probe.bodies.values()
                if b["buckets"]
                and ts_ms(b.get("since"), {}) is not None
                and ts_ms(b.get("until"), {}) is not None
            ]
            starts = [str(b["since"]) for b in ranges]
            ends = [str(b["until"]) for b in ranges]
            if not starts:
                partial += self.storeless(query)
                return {"buckets": [], "total": 0, "partial": partial}
            since = query.since if query.since is not None else _ms(min(starts))
            until = query.until if query.until is not None else _ms(max(ends))
            query = replace(query, since=since, until=until)
            targets = [a for a in targets if a.id in probe.bodies]
        answered = await self.ask(targets, "histogram", query.params())
        counts: dict[tuple[int, int], int] = {}
        assert query.since is not None and query.until is not None
        for body in answered.bodies.values():
            for number, bucket in enumerate(body["buckets"]):
                for level, n in bucket["counts"].items():
                    if level not in LEVEL_NUMBER or not isinstance(n, int):
                        continue  # not a store's answer; nothing to add up
                    key = (number, LEVEL_NUMBER[level])
                    counts[key] = counts.get(key, 0) + n
        out = histogram_body(query.since, query.until, query.buckets, counts)
        out["partial"] = sorted(
            partial + answered.partial + self.storeless(query), key=lambda p: p["analyzer"]
        )
        return out

    async def context(self, packet: str, index: int, before: int, after: int) -> dict[str, Any]:
        targets = [a for a in self.analyzers if a.store]
        params = {"packetId": packet, "index": str(index), "before": "0", "after": "0"}
        found = await self.ask(targets, "context", params)
        partial = [p for p in found.partial if "HTTP 404" not in p["error"]]
        if not found.bodies:
            raise NotFound(
                f"no analyzer has stored message {packet!r} #{index}",
                {"partial": partial} if partial else None,
            )
        anchor = next(iter(found.bodies.values()))["items"][0]
        key = (_ms(anchor["ts"]), packet, index)
        near = Query(emitter=anchor["emitter"], cursor=key, limit=max(1, min(before, MAX_LIMIT)))
        older, newer = await asyncio.gather(
            self.search(near),
            self.search(replace(near, ascending=True, limit=max(1, min(after, MAX_LIMIT)))),
        )
        items = [*reversed(older["items"][:before]), anchor, *newer["items"][:after]]
        seen = {p["analyzer"] for p in partial}
        for p in older["partial"] + newer["partial"]:
            if p["analyzer"] not in seen:
                seen.add(p["analyzer"])
                partial.append(p)
        return {
            "items": items,
            "anchor": min(before, len(older["items"])),
            "partial": sorted(partial, key=lambda p: p["analyzer"]),
        }


def _ms(text: str) -> int:
    ms = ts_ms(text, {})
    assert ms is not None
    return ms


def _said(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode(errors="replace")
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    return body[:200].decode(errors="replace")


def _described(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"not reachable: {exc.os_error.strerror or exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def parse(params: Any) -> Query:
    """The request's query; a bad parameter is a 422 naming it (a full-text query SQLite
    cannot read too, before any analyzer is asked)."""
    query = parse_query(params, int(time.time() * 1000))
    check_fts(query.q)
    return query
