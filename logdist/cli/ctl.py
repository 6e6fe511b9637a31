"""`logdist ctl`: change and inspect a running distributor, HAProxy-runtime-API style.

Exit codes: 0 ok, 1 the distributor refused (the message says why), 2 usage, 3 unreachable.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from logdist.cli.client_options import DEFAULT, JsonOption, TokenOption, UrlOption, call, print_json
from logdist.cli.completion import complete_analyzer, complete_emitter
from logdist.cli.views import status_view

app = typer.Typer(
    help="Control a running distributor (exit codes: 0 ok, 1 refused, 2 usage, 3 unreachable).",
    no_args_is_help=True,
)

AnalyzerArg = Annotated[str, typer.Argument(help="Analyzer id.", autocompletion=complete_analyzer)]
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
        Console().print(status_view(result))


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
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add an analyzer at runtime; it takes traffic once its first health probe passes."""
    result = call(url, token, lambda c: c.add(analyzer, analyzer_url, weight))
    done(result, as_json, f"{analyzer}: added at {analyzer_url} with weight {result['weight']:g}")


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
