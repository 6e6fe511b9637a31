"""What every client command shares: --url, --token, --json, and running a client call."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import orjson
import typer

from logdist.admin_client import DEFAULT_URL, AdminClient, ClientFailure

T = TypeVar("T")

UrlOption = Annotated[
    str,
    typer.Option("--url", envvar="LOGDIST_URL", help="The distributor's base URL.", metavar="URL"),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="LOGDIST_TOKEN", help="The distributor's admin token.", show_default=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the distributor's JSON answer.")]
DEFAULT = DEFAULT_URL


def call(url: str, token: str | None, fn: Callable[[AdminClient], Awaitable[T]]) -> T:
    """Run `fn` with a client; a refusal exits 1, an unreachable distributor exits 3."""

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
