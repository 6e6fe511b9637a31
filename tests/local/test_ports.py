from __future__ import annotations

import os
import socket

from logdist.local.ports import Holder, command_of, holders, in_use
from logdist.local.supervisor import busy_message


def test_a_listening_port_is_found_with_the_process_holding_it() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.listen()
        assert in_use("127.0.0.1", port)
        [(name, found_port, holder)] = holders([("d", "127.0.0.1", port), ("x", "127.0.0.1", 0)])
        assert (name, found_port) == ("d", port)
        assert holder is not None and holder.pid == os.getpid()


def test_command_lines_are_named_shortly() -> None:
    argv = ["/srv/.venv/bin/python3", "-m", "logdist", "distributor", "serve", "--port", "8000"]
    assert command_of(argv) == "logdist distributor serve --port 8000"
    assert command_of(["/usr/sbin/nginx", "-g", "daemon off;"]) == "nginx -g daemon off;"
    assert command_of(["x" * 100]) == "x" * 60 + " ..."
    long = [*argv[:5], "--port", "9001", "--host", "127.0.0.1", "--output", "/var/log/a1.ndjson"]
    assert command_of(long) == "logdist distributor serve --port 9001 --host 127.0.0.1 ..."


def test_the_busy_line_names_every_holder_and_what_to_do() -> None:
    line = busy_message(
        [
            ("distributor", 8000, Holder(42, "logdist distributor serve")),
            ("a1", 9001, Holder(43, "logdist analyzer serve --id a1")),
            ("a2", 9002, None),
        ]
    )
    assert line == (
        "logdist up: daemons of an earlier run still hold its ports:"
        " distributor :8000 (pid 42: logdist distributor serve),"
        " a1 :9001 (pid 43: logdist analyzer serve --id a1),"
        " a2 :9002 (held by a process this user cannot see); stop them (kill 42 43)"
        " or change the ports"
    )
    assert busy_message([("a1", 9001, Holder(7, "nginx"))]).startswith(
        "logdist up: something else holds its ports"
    )
