"""`logdist ctl`: change and inspect a running distributor, HAProxy-runtime-API style.

Exit codes: 0 ok, 1 the distributor refused (the message says why), 2 usage, 3 unreachable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer

from logdist.admin_client import AdminClient
from logdist.cli import deadletters, limits
from logdist.cli.client_options import DEFAULT, JsonOption, TokenOption, UrlOption, call, print_json
from logdist.cli.common import fail
from logdist.cli.completion import complete_analyzer, complete_emitter
from logdist.cli.views import analyzers_table, console, emitters_table, status_view
from logdist.core.delivery import (
    COMPRESSIONS,
    FORMATS,
    HEALTH_MODES,
    OPTION_KEYS,
    check_choice,
    check_health_url,
    delivery_from,
    parse_header_line,
)
from logdist.errors import InvalidRequest

app = typer.Typer(
    help="Control a running distributor (exit codes: 0 ok, 1 refused, 2 usage, 3 unreachable).",
    no_args_is_help=True,
)

app.add_typer(deadletters.app, name="dead-letters")
limits.register(app)

AnalyzerArg = Annotated[str, typer.Argument(help="Analyzer id.", autocompletion=complete_analyzer)]
FormatOption = Annotated[
    str | None,
    typer.Option(
        "--format",
        metavar="FORMAT",
        show_default=False,
        help="How it takes packets: auto (its /health says), ndjson, json-array (batches),"
        " json (one packet a POST); or its own protocol: records, elasticsearch, loki,"
        " splunk-hec, otlp, syslog (docs/outputs.md).",
    ),
]
OptionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-o",
        metavar="KEY=VALUE",
        show_default=False,
        help="An option of its format, e.g. index=logs (elasticsearch), labels=service,level"
        " (loki), timestamp_format=clickhouse (records); KEY= resets it; repeatable.",
    ),
]
HeaderOption = Annotated[
    list[str] | None,
    typer.Option(
        "--header",
        "-H",
        metavar="'NAME: VALUE'",
        show_default=False,
        help="A request header on every forward and probe, e.g. 'Authorization: Bearer x';"
        " repeatable. Values are secrets: shown as *** everywhere.",
    ),
]
HealthUrlOption = Annotated[
    str | None,
    typer.Option(
        "--health-url",
        metavar="URL",
        show_default=False,
        help="Probe this URL instead of the /health beside its ingest URL.",
    ),
]
HealthModeOption = Annotated[
    str | None,
    typer.Option(
        "--health",
        metavar="MODE",
        show_default=False,
        help="active (probes) or passive (judged by its forwards alone).",
    ),
]
CompressionOption = Annotated[
    str | None,
    typer.Option(
        "--compression", metavar="NAME", show_default=False, help="none or gzip (forwards)."
    ),
]


def format_options(pairs: list[str] | None) -> dict[str, Any]:
    """`--option KEY=VALUE`s as a dict (an empty VALUE: back to its default)."""
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, eq, value = pair.partition("=")
        if not eq or key.strip() not in OPTION_KEYS:
            raise fail(
                f"--option wants KEY=VALUE with KEY one of {', '.join(OPTION_KEYS)}, got {pair!r}",
                2,
            )
        out[key.strip()] = value.strip() or None
    return out


def delivery_options(
    fmt: str | None,
    headers: list[str] | None,
    health_url: str | None,
    health: str | None,
    compression: str | None,
    options: list[str] | None = None,
) -> dict[str, Any]:
    """The delivery flags given, checked here: a bad one is one line and exit 2."""
    out: dict[str, Any] = format_options(options)
    try:
        if fmt is not None:
            out["format"] = check_choice("format", fmt, FORMATS)
            # The options are checked against the format they are given with.
            delivery_from({"format": fmt, **{k: v for k, v in out.items() if v is not None}})
        if headers:
            out["headers"] = dict(parse_header_line(h) for h in headers)
        if health_url is not None:
            out["health_url"] = check_health_url(health_url)
        if health is not None:
            out["health"] = check_choice("health", health, HEALTH_MODES)
        if compression is not None:
            out["compression"] = check_choice("compression", compression, COMPRESSIONS)
    except InvalidRequest as exc:
        raise fail(exc.message, 2) from None
    return out


EmitterArg = Annotated[str, typer.Argument(help="Emitter id.", autocompletion=complete_emitter)]


def done(result: dict[str, Any], as_json: bool, line: str) -> None:
    if as_json:
        print_json(result)
    else:
        typer.echo(line)


@app.command()
def status(
    url: UrlOption = DEFAULT, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """Queue, analyzers (health, weights, shares) and emitters."""
    result = call(url, token, lambda c: c.status())
    if as_json:
        print_json(result)
    else:
        console().print(status_view(result))


QOption = Annotated[str | None, typer.Option("--q", help="Only those whose id contains this.")]
LimitOption = Annotated[int, typer.Option(min=1, max=1000, help="How many a page.")]
CursorOption = Annotated[
    str | None, typer.Option(help="Where to go on from (the previous page says).")
]
EveryOption = Annotated[bool, typer.Option("--all", help="Every page, not only the first.")]
Fetch = Callable[[AdminClient, str | None], Awaitable[dict[str, Any]]]


def list_pages(
    url: str,
    token: str | None,
    key: str,
    fetch: Fetch,
    cursor: str | None,
    every: bool,
    as_json: bool,
    table: Callable[[list[dict[str, Any]], int], Any],
) -> None:
    """`ctl analyzers` and `ctl emitters`: a page (or `every` page) of `key`, as JSON or as
    `table(rows, total)` with how to go on."""

    async def pages(c: AdminClient) -> dict[str, Any]:
        page = await fetch(c, cursor)
        rows = list(page[key])
        while every and page["next"]:
            page = await fetch(c, page["next"])
            rows += page[key]
        return {key: rows, "total": page["total"], "next": page["next"]}

    result = call(url, token, pages)
    if as_json:
        print_json(result)
        return
    console().print(table(result[key], result["total"]))
    if result["next"]:
        typer.echo(f"more: logdist ctl {key} --cursor {result['next']} (or --all)")


@app.command()
def analyzers(
    q: QOption = None,
    health: Annotated[
        str | None, typer.Option(help="Only analyzers in this health: up, down or unknown.")
    ] = None,
    limit: LimitOption = 100,
    cursor: CursorOption = None,
    every: EveryOption = False,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the analyzers by id, a page at a time (filter with --q and --health)."""
    list_pages(
        url,
        token,
        "analyzers",
        lambda c, after: c.analyzers(q, health, limit, after),
        cursor,
        every,
        as_json,
        lambda rows, total: analyzers_table(
            rows, title=f"analyzers: {len(rows):,} shown of {total:,}"
        ),
    )


@app.command()
def emitters(
    q: QOption = None,
    state: Annotated[
        str | None, typer.Option(help="Only emitters in this state: active, paused or gone.")
    ] = None,
    sort: Annotated[
        str, typer.Option(help="By id, or throttled: the most refused 429 first.")
    ] = "id",
    limit: LimitOption = 100,
    cursor: CursorOption = None,
    every: EveryOption = False,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the registered emitters, a page at a time (filter with --q and --state)."""
    list_pages(
        url,
        token,
        "emitters",
        lambda c, after: c.emitters(q, state, limit, after, sort),
        cursor,
        every,
        as_json,
        lambda rows, total: emitters_table(
            rows, f"emitters: {len(rows):,} shown of {total:,} registered"
        ),
    )


def _emitter_command(action: str, verb: str) -> None:
    def command(
        emitter: EmitterArg,
        url: UrlOption = DEFAULT,
        token: TokenOption = None,
        as_json: JsonOption = False,
    ) -> None:
        result = call(url, token, lambda c: c.emitter(emitter, action))
        done(result, as_json, f"{emitter}: {verb}")

    command.__doc__ = (
        f"{verb.capitalize()} an emitter (generation and sending; its buffer is kept)."
    )
    app.command(action)(command)


_emitter_command("pause", "paused")
_emitter_command("resume", "resumed")


@app.command()
def rate(
    emitter: EmitterArg,
    rps: Annotated[float, typer.Argument(help="Packets per second (0 = stop generating).")],
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set an emitter's rate."""
    result = call(url, token, lambda c: c.emitter(emitter, "rate", rps))
    done(result, as_json, f"{emitter}: rate {result.get('rps', rps):g}/s")


def _analyzer_command(action: str, doc: str) -> None:
    def command(
        analyzer: AnalyzerArg,
        url: UrlOption = DEFAULT,
        token: TokenOption = None,
        as_json: JsonOption = False,
    ) -> None:
        result = call(url, token, lambda c: c.set_state(analyzer, action))
        done(result, as_json, f"{analyzer}: {result['state']} (health {result['health']})")

    command.__doc__ = doc
    app.command(action)(command)


_analyzer_command("enable", "Let an analyzer take packets again.")
_analyzer_command("disable", "Stop sending to an analyzer; what waits for it goes to the others.")
_analyzer_command("drain", "Finish what an analyzer holds and give it nothing new.")


@app.command()
def weight(
    analyzer: AnalyzerArg,
    w: Annotated[float, typer.Argument(metavar="W", help="New weight (> 0).")],
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change an analyzer's weight; it takes effect at once."""
    result = call(url, token, lambda c: c.weight(analyzer, w))
    done(
        result,
        as_json,
        f"{analyzer}: weight {result['weight']:g} (target {100 * result['target_share']:.1f}%)",
    )


@app.command()
def add(
    analyzer: Annotated[str, typer.Argument(help="New analyzer id.")],
    analyzer_url: Annotated[
        str,
        typer.Argument(metavar="URL", help="Its ingest URL, e.g. http://127.0.0.1:9011/ingest."),
    ],
    weight: Annotated[float, typer.Option("--weight", "-w", help="Its weight.")] = 1.0,
    fmt: FormatOption = None,
    header: HeaderOption = None,
    health_url: HealthUrlOption = None,
    health: HealthModeOption = None,
    compression: CompressionOption = None,
    option: OptionOption = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add an analyzer at runtime; it takes traffic once its first health probe passes
    (with --health passive, at once: the default for formats other than logdist's own)."""
    delivery = delivery_options(fmt, header, health_url, health, compression, option)
    result = call(url, token, lambda c: c.add(analyzer, analyzer_url, weight, **delivery))
    done(
        result,
        as_json,
        f"{analyzer}: added at {analyzer_url} with weight {result['weight']:g},"
        f" format {result['format']}",
    )


@app.command("set")
def set_config(
    analyzer: AnalyzerArg,
    fmt: FormatOption = None,
    header: HeaderOption = None,
    remove_header: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME", show_default=False, help="Drop this header; repeatable."),
    ] = None,
    clear_headers: Annotated[
        bool, typer.Option("--clear-headers", help="Drop every extra header first.")
    ] = False,
    health_url: HealthUrlOption = None,
    default_health_url: Annotated[
        bool,
        typer.Option("--default-health-url", help="Probe the /health beside its ingest URL again."),
    ] = False,
    health: HealthModeOption = None,
    compression: CompressionOption = None,
    option: OptionOption = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change how an analyzer is delivered to; from its next forward on, kept across restarts."""
    changes = delivery_options(fmt, None, health_url, health, compression, option)
    added = delivery_options(None, header, None, None, None).get("headers", {})
    if clear_headers:
        changes["headers"] = {}
    if added:
        changes["add_headers"] = added
    if remove_header:
        changes["remove_headers"] = remove_header
    if default_health_url:
        changes["health_url"] = None
    if not changes:
        raise fail("nothing to change: give --format, --option, --header, --health, ...", 2)
    result = call(url, token, lambda c: c.configure(analyzer, changes))
    names = ", ".join(result["headers"]) or "none"
    options = "".join(f", {k} {v}" for k, v in (result.get("options") or {}).items())
    done(
        result,
        as_json,
        f"{analyzer}: format {result['format']}{options}, headers {names},"
        f" health {result['health_check']}"
        + (f" at {result['health_url']}" if result["health_url"] else "")
        + f", compression {result['compression']}",
    )


@app.command()
def remove(
    analyzer: AnalyzerArg,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Drain an analyzer, then remove it."""
    result = call(url, token, lambda c: c.remove(analyzer))
    done(
        result,
        as_json,
        f"{analyzer}: removed"
        + (
            ""
            if result.get("drained")
            else " (some packets were still in flight; they are retried elsewhere)"
        ),
    )
