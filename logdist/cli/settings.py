"""A daemon's flags, built from its settings' fields (`logdist.config.setting`).

`@flags(DistributorConfig)` puts one option for each field that has a flag where the command's
`settings` parameter stands, nested tables (health, syslog, cluster) in place with their
table's name before theirs (`--health-interval`); the command receives the flags the user gave
as `settings`, and `settings.apply(cfg)` lays them over a config. A new setting is one field.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import typer

from logdist.config.fields import Option, options

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Settings:
    """The flags a user gave, as typed; `apply` lays them over a config."""

    given: dict[Option, Any]

    def gave(self, name: str) -> bool:
        """Whether the user gave the flag of field `name` (of the command's own settings)."""
        return any(option.path == (name,) for option in self.given)

    def apply(self, cfg: Any) -> Any:
        """`cfg` with the flags applied; a bad value is a ConfigError."""
        values = {option.path: option.value(raw) for option, raw in self.given.items()}
        return _apply(cfg, values, ())


# Where a command declares `settings` (the flags take its place).
NO_FLAGS = Settings({})


def _apply(cfg: Any, given: dict[tuple[str, ...], Any], at: tuple[str, ...]) -> Any:
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        path = (*at, f.name)
        if path in given:
            changes[f.name] = given[path]
        elif any(p[: len(path)] == path for p in given):
            changes[f.name] = _apply(getattr(cfg, f.name), given, path)
    return dataclasses.replace(cfg, **changes) if changes else cfg


def show_default(value: Any) -> str:
    """A field's default as --help shows it."""
    if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    if isinstance(value, tuple) and len(value) == 2:
        return f"{value[0]}" if value[0] == value[1] else f"{value[0]}-{value[1]}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _parameter(option: Option, default: Any) -> inspect.Parameter:
    flag = option.flag
    shown: str | bool
    if flag.show_default is not None:
        shown = flag.show_default
    else:
        shown = False if default is None else show_default(default)
    typer_option = typer.Option(
        *option.decls,
        help=flag.help,
        show_default=shown,
        metavar=flag.metavar,
        envvar=flag.envvar,
        min=flag.minimum,
        max=flag.maximum,
    )
    return inspect.Parameter(
        "__".join(option.path),
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[option.cli_type | None, typer_option],
    )


def flags(cls: type[Any]) -> Callable[[F], F]:
    """Give a command one option for each setting of `cls` in place of its `settings`
    parameter."""
    defaults = cls()
    generated = list(options(cls))

    def default_of(option: Option) -> Any:
        value = defaults
        for name in option.path:
            value = getattr(value, name)
        return value

    def wrap(fn: F) -> F:
        signature = inspect.signature(fn, eval_str=True)
        params: list[inspect.Parameter] = []
        for p in signature.parameters.values():
            if p.name == "settings":
                params.extend(_parameter(o, default_of(o)) for o in generated)
            else:
                params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
        by_param = {"__".join(o.path): o for o in generated}

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            given = {o: kwargs.pop(p) for p, o in by_param.items()}
            return fn(
                **kwargs, settings=Settings({o: v for o, v in given.items() if v is not None})
            )

        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command  # type: ignore[return-value]

    return wrap
