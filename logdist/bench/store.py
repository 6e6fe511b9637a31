"""Scenario (i)'s second half: search latency over a pool of filled stores.

`fill` writes `total` messages into four analyzer stores the way an analyzer writes them
(group commits through `Store`), from two processes, with messages a log pipeline would
carry: timestamps over the last seven days, levels mostly INFO, text drawn from a vocabulary
with a few common words and many rare ones. Then four analyzers serve those stores behind one
distributor, and `latency` times through it, one request at a time:

  search     a full-text word, level ERROR, the last 24 hours: the first page (100)
  histogram  the whole stored range, 60 buckets, no filter (the per-minute counts)
"""

from __future__ import annotations

import json
import multiprocessing
import random
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from logdist.analyzer.segments import Item
from logdist.analyzer.store import Store

LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
LEVEL_WEIGHTS = (2, 15, 65, 10, 7, 1)
DAYS = 7
WORDS = 5000
MESSAGES_PER_PACKET = 10
PACKETS_PER_WRITE = 500
# Query words: ranks from the vocabulary's middle (each in ~0.1-1 % of messages).
QUERY_RANKS = range(20, 220, 5)


def vocabulary() -> list[str]:
    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < WORDS:
        w = "".join(rng.choice(letters) for _ in range(rng.randint(4, 9)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def _fill_one(directory: str, analyzer: str, count: int, seed: int, now: float) -> dict[str, Any]:
    rng = random.Random(seed)
    words = vocabulary()
    # Zipf-like: rank r drawn with weight 1 / (r + 1).
    weights = [1.0 / (r + 1) for r in range(len(words))]
    cum: list[float] = []
    acc = 0.0
    for w in weights:
        acc += w
        cum.append(acc)
    services = [f"svc{i}" for i in range(20)]
    hosts = [f"host{i}" for i in range(50)]
    store = Store(directory, analyzer, sync="normal")
    store.open(writer=False)
    started = time.monotonic()
    span = DAYS * 86400
    written = 0
    packet_no = 0
    while written < count:
        items: list[Item] = []
        for _ in range(PACKETS_PER_WRITE):
            ts = now - rng.random() * span
            messages = []
            for j in range(MESSAGES_PER_PACKET):
                text = " ".join(rng.choices(words, cum_weights=cum, k=rng.randint(6, 12)))
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts + j * 0.01))
                messages.append(
                    {
                        "ts": f"{stamp}.{int((ts % 1) * 1000):03d}Z",
                        "level": rng.choices(LEVELS, LEVEL_WEIGHTS)[0],
                        "service": rng.choice(services),
                        "host": rng.choice(hosts),
                        "message": text,
                        "request_id": rng.getrandbits(48),
                    }
                )
            pid = f"{analyzer}-fill-{seed}-{packet_no}"
            packet_no += 1
            emitter = f"e{rng.randrange(100)}"
            body = orjson.dumps({"packetId": pid, "emitter": emitter, "messages": messages})
            items.append((pid, emitter, body))
        store.write(items)
        written += len(items) * MESSAGES_PER_PACKET
    elapsed = time.monotonic() - started
    store.close()
    return {"analyzer": analyzer, "messages": written, "seconds": round(elapsed, 1)}


def fill(directories: dict[str, Path], total: int, processes: int = 2) -> dict[str, Any]:
    """`total` messages spread over the stores in `directories` (analyzer id -> dir)."""
    now = time.time()
    each = -(-total // len(directories))
    started = time.monotonic()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        results = pool.starmap(
            _fill_one,
            [(str(d), aid, each, i, now) for i, (aid, d) in enumerate(directories.items())],
        )
    elapsed = time.monotonic() - started
    messages = sum(r["messages"] for r in results)
    size = sum(f.stat().st_size for d in directories.values() for f in d.iterdir())
    return {
        "messages": messages,
        "seconds": round(elapsed, 1),
        "messages_per_s": round(messages / elapsed),
        "bytes": size,
        "bytes_per_million": round(size / (messages / 1e6)),
    }


def _timed(url: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as resp:
        body = json.load(resp)
    return (time.perf_counter() - started) * 1000, body


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def latency(port: int, rounds: int = 2) -> dict[str, Any]:
    """Search and histogram latencies through the distributor on `port`, in ms."""
    words = vocabulary()
    base = f"http://127.0.0.1:{port}"
    searches: list[float] = []
    found: list[int] = []
    partial = 0
    for _ in range(rounds):
        for rank in QUERY_RANKS:
            query = urllib.parse.urlencode({"q": words[rank], "level": "ERROR", "since": "24h"})
            ms, body = _timed(f"{base}/logs/search?{query}&limit=100")
            searches.append(ms)
            found.append(len(body["items"]))
            partial += len(body["partial"])
    histograms: list[float] = []
    totals: set[int] = set()
    for _ in range(10 * rounds):
        ms, body = _timed(f"{base}/logs/histogram?buckets=60")
        histograms.append(ms)
        totals.add(body["total"])
        partial += len(body["partial"])
    return {
        "search": {
            "queries": len(searches),
            "p50_ms": _p(searches, 0.5),
            "p95_ms": _p(searches, 0.95),
            "max_ms": round(max(searches), 1),
            "mean_found": round(sum(found) / len(found), 1),
        },
        "histogram": {
            "queries": len(histograms),
            "p50_ms": _p(histograms, 0.5),
            "p95_ms": _p(histograms, 0.95),
            "max_ms": round(max(histograms), 1),
            "total": max(totals),
        },
        "partial": partial,
    }
