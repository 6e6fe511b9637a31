"""What every client command shares: --url, --token, --json, and running a client call."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import orjson
import typer

from logdist.admin_client import DEFAULT_URL, AdminClient, ClientFailure
from logdist.config.daemons import read_token
from logdist.errors import ConfigError

T = TypeVar("T")

UrlOption = Annotated[
    str,
    typer.Option("--url", envvar="LOGDIST_URL", help="The distributor's base URL.", metavar="URL"),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="LOGDIST_TOKEN",
        help="The distributor's admin (or read) token; @FILE reads it from a file's first line,"
        " as does LOGDIST_TOKEN_FILE, so that it is on no command line.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the distributor's JSON answer.")]
DEFAULT = DEFAULT_URL


def client_token(token: str | None) -> str | None:
    """`--token`, `@FILE` read, else LOGDIST_TOKEN_FILE's; a file that cannot be read is one
    line and exit 2."""
    path = token[1:] if token and token.startswith("@") else None
    if token is None:
        path = os.environ.get("LOGDIST_TOKEN_FILE") or None
    if path is None:
        return token
    try:
        return read_token(path, None, "token file")
    except ConfigError as exc:
        typer.echo(f"logdist: {exc.message}", err=True)
        raise typer.Exit(2) from None


def call(url: str, token: str | None, fn: Callable[[AdminClient], Awaitable[T]]) -> T:
    """Run `fn` with a client; a refusal exits 1, an unreachable distributor exits 3."""

    token = client_token(token)

    async def main() -> T:
        async with AdminClient(url, token) as client:
            return await fn(client)

    try:
        return asyncio.run(main())
    except ClientFailure as exc:
        typer.echo(f"logdist: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None


def print_json(data: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()
