"""What every client command shares: --url, --token, --json, the TLS options (--ca,
--client-cert, --client-key, --insecure) and running a client call."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import ssl
import sys
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer

from logdist.admin_client import DEFAULT_URL, AdminClient, ClientFailure
from logdist.cli.common import config_errors
from logdist.config.fields import read_token
from logdist.config.tables import ClientConfig
from logdist.net.tls import client_context

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
    with config_errors():
        return read_token(path, None, "token file")


# The TLS options of the command being run (see `add_tls_options`).
CLIENT_TLS: ContextVar[ClientConfig | None] = ContextVar("client_tls", default=None)

TLS_OPTIONS = {
    "ca": typer.Option(
        "--ca",
        envvar="LOGDIST_CA",
        help="Trust an https:// distributor whose certificate this CA (PEM) signed, instead"
        " of the system's store (`logdist up --tls` prints its CA's path).",
        show_default=False,
    ),
    "client_cert": typer.Option(
        "--client-cert",
        envvar="LOGDIST_CLIENT_CERT",
        help="A client certificate (PEM) for a distributor that asks for one (mutual TLS).",
        show_default=False,
    ),
    "client_key": typer.Option(
        "--client-key",
        envvar="LOGDIST_CLIENT_KEY",
        help="The client certificate's private key (PEM).",
        show_default=False,
    ),
    "insecure": typer.Option(
        "--insecure",
        envvar="LOGDIST_INSECURE",
        help="Do not verify the distributor's certificate (warns every time).",
    ),
}


def add_tls_options(app: typer.Typer) -> None:
    """Give every command of `app` (and of its groups) that takes --url the TLS options."""
    for info in app.registered_commands:
        if info.callback is not None and "url" in inspect.signature(info.callback).parameters:
            info.callback = _with_tls(info.callback)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            add_tls_options(group.typer_instance)


def _with_tls(fn: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(fn, eval_str=True)
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values()]
    for name, option in TLS_OPTIONS.items():
        kind = bool if name == "insecure" else Path | None
        default = False if name == "insecure" else None
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[kind, option],
            )  # fmt: skip
        )

    @functools.wraps(fn)
    def command(**kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in TLS_OPTIONS}
        paths = {k: None if v is None or k == "insecure" else str(v) for k, v in given.items()}
        with config_errors():
            cfg = ClientConfig(
                paths["ca"], paths["client_cert"], paths["client_key"], bool(given["insecure"])
            )
        CLIENT_TLS.set(cfg)
        return fn(**kwargs)

    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def client_tls() -> ssl.SSLContext:
    """The context of this command's --ca, --client-cert and --insecure; a file that does not
    load is one line and exit 2."""
    with config_errors():
        return client_context(CLIENT_TLS.get() or ClientConfig(), "logdist")


def call(url: str, token: str | None, fn: Callable[[AdminClient], Awaitable[T]]) -> T:
    """Run `fn` with a client; a refusal exits 1, an unreachable distributor exits 3."""

    token = client_token(token)
    tls = client_tls()

    async def main() -> T:
        async with AdminClient(url, token, tls=tls) as client:
            return await fn(client)

    try:
        return asyncio.run(main())
    except ClientFailure as exc:
        typer.echo(f"logdist: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None


def print_json(data: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()
