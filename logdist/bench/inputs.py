"""Scenarios (g) and (h): the inputs other programs use, through logdist's distributor.

(g) OTLP/HTTP: one ExportLogsServiceRequest of RECORDS records, built with the generated
    classes of `opentelemetry-proto` and replayed by wrk over OTLP_CONNECTIONS to POST
    /v1/logs, a resource attribute of fixed width rewritten each request so every request is
    new (the distributor derives packet ids from a request's bytes, and analyzers count a
    repeated id once).
(h) syslog: RFC 5424 messages, octet-counted (RFC 6587), written as fast as the distributor
    reads them over CONNECTIONS TCP connections by `python -m logdist.bench.inputs` (threads
    sending prebuilt buffers) for the run's seconds.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from logdist.bench.scenarios import LUA_THREADS

RECORDS = 512
CONNECTIONS = 8
OTLP_CONNECTIONS = 16
# The resource attribute rewritten each request: RUN (12) + thread (4) + counter (16).
PLACEHOLDER = b"R" * 32

OTLP_LUA = (
    """
local f = assert(io.open(BODY, "rb"))
local body = f:read("*all")
f:close()
local head = body:sub(1, OFFSET)
local tail = body:sub(OFFSET + 33)
"""
    + LUA_THREADS
    + """
request = function()
  counter = counter + 1
  local mark = string.format("%-12s%04d%016d", RUN, tid, counter)
  return wrk.format("POST", "/v1/logs", {["Content-Type"] = "application/x-protobuf"},
    head .. mark .. tail)
end
"""
)


def _kv(key: str, value: str | bytes) -> KeyValue:
    text = value.decode() if isinstance(value, bytes) else value
    return KeyValue(key=key, value=AnyValue(string_value=text))


def otlp_body() -> tuple[bytes, int]:
    """One export request of RECORDS records and the offset of its placeholder."""
    now = time.time_ns()
    severities = [(9, "INFO"), (9, "INFO"), (9, "INFO"), (13, "WARN"), (17, "ERROR")]
    records = [
        LogRecord(
            time_unix_nano=now + i * 1000,
            severity_number=severities[i % 5][0],  # type: ignore[arg-type]
            severity_text=severities[i % 5][1],
            body=AnyValue(string_value=f"order {i} paid in full by customer {i * 7 % 1000}"),
            attributes=[_kv("http.route", "/checkout"), _kv("order.id", str(i))],
            trace_id=bytes(16),
            span_id=bytes(8),
        )
        for i in range(RECORDS)
    ]
    resource = Resource(
        attributes=[
            _kv("service.name", "checkout"),
            _kv("host.name", "web-7"),
            _kv("bench.request", PLACEHOLDER),
        ]
    )
    body = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=resource, scope_logs=[ScopeLogs(log_records=records)])]
    ).SerializeToString()
    return body, body.index(PLACEHOLDER)


def otlp_lua(work: Path, run: str) -> Path:
    body, offset = otlp_body()
    path = work / "otlp-body.bin"
    path.write_bytes(body)
    lua = work / f"otlp-{run}.lua"
    head = f'BODY = "{path}"\nOFFSET = {offset}\nRUN = "{run[-12:]}"\n'
    lua.write_text(head + OTLP_LUA)
    return lua


def syslog_buffer(messages: int) -> bytes:
    """`messages` RFC 5424 messages, octet-counted, as `logger --rfc5424 --octet-count` sends."""
    out = []
    for i in range(messages):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{i % 1000:03d}Z"
        msg = (
            f"<{(16 + i % 8) * 8 + (6, 6, 6, 4, 3)[i % 5]}>1 {stamp} web-{i % 16} checkout"
            f" {1000 + i % 50} ORDER - order {i} paid in full by customer {i * 7 % 1000}"
        ).encode()
        out.append(b"%d %s" % (len(msg), msg))
    return b"".join(out)


def run_syslog(port: int, seconds: float, connections: int = CONNECTIONS) -> dict[str, Any]:
    """The load of (h) from a process of its own (its CPU is the load's, not logdist's)."""
    out = subprocess.run(
        [sys.executable, "-m", "logdist.bench.inputs", "--port", str(port)]
        + ["--seconds", str(seconds), "--connections", str(connections)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def _send(
    port: int, chunk: int, deadline: float, counts: list[int], errors: list[str], slot: int
) -> None:
    buffer = syslog_buffer(chunk)
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            while time.monotonic() < deadline:
                sock.sendall(buffer)
                counts[slot] += chunk
    except OSError as exc:
        errors.append(f"connection {slot}: {exc}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Write syslog to a distributor (bench (h)).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    args = parser.parse_args()
    chunk = 2000  # messages a write (about 200 KB)
    counts = [0] * args.connections
    errors: list[str] = []
    deadline = time.monotonic() + args.seconds
    started = time.monotonic()
    threads = [
        threading.Thread(target=_send, args=(args.port, chunk, deadline, counts, errors, i))
        for i in range(args.connections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    print(
        json.dumps(
            {
                "requests": args.connections,
                "errors": len(errors),
                "error": errors[0] if errors else None,
                "sent_messages": sum(counts),
                "seconds": round(elapsed, 2),
                "p50_ms": None,
                "p99_ms": None,
            }
        )
    )


if __name__ == "__main__":
    main()
