"""What a setting is: a dataclass field with its default, its check and, for a daemon's command
line, its flag. `setting()` declares all of that once; the TOML loader reads the field's name
and type, and `logdist.cli.settings` builds the flag from the same field."""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints

from logdist.core.checks import check_id
from logdist.errors import ConfigError, InvalidRequest
from logdist.search.query import duration_ms


@dataclass(frozen=True)
class Flag:
    """How a setting appears on the command line."""

    help: str
    # The flag's names; none: `--` and the field's name with dashes (behind its group's prefix).
    decls: tuple[str, ...] = ()
    metavar: str | None = None
    envvar: str | None = None
    # What --help says the default is; None: the field's default (none shown when that is None).
    show_default: str | bool | None = None
    # The type the flag takes, when not the field's (e.g. a list of specs for a tuple of refs).
    cli_type: Any = None
    # The flag's value to the field's value.
    convert: Callable[[Any], Any] | None = None
    # Seconds that may also be written 30s, 15m, 2h, 7d (in TOML and on the command line).
    duration: bool = False
    # The field's value as the flag takes it, when not str(value) (see `argv_of`).
    render: Callable[[Any], str] = str
    # Bounds the command line checks (for settings with no check of their own).
    minimum: float | None = None
    maximum: float | None = None


def setting(default: Any, help: str, **flag: Any) -> Any:
    """A field with its default and its flag (see `Flag`)."""
    return dataclasses.field(default=default, metadata={"flag": Flag(help, **flag)})


def flag_of(f: dataclasses.Field[Any]) -> Flag | None:
    flag = f.metadata.get("flag")
    return flag if isinstance(flag, Flag) else None


@dataclass(frozen=True)
class Option:
    """One setting's flag: where its field is, its names, and the type it takes."""

    path: tuple[str, ...]  # the nested tables, then the field
    flag: Flag
    decls: tuple[str, ...]
    cli_type: Any

    def value(self, given: Any) -> Any:
        """The field's value for what the flag was given."""
        if self.flag.duration:
            return parse_duration(self.decls[0], given)
        if self.flag.convert is not None:
            return self.flag.convert(given)
        return tuple(given) if isinstance(given, list) else given

    def args(self, value: Any) -> list[str]:
        """The flag and the field's `value` as a command line gives them (none for None)."""
        if value is None or value is False:
            return []
        if value is True:
            return [self.decls[0]]
        if get_origin(self.cli_type) is list:
            return [a for item in value for a in (self.decls[0], self.flag.render(item))]
        return [self.decls[0], self.flag.render(value)]


def options(cls: type[Any], at: tuple[str, ...] = ()) -> Iterator[Option]:
    """The flags of `cls`'s fields in their order, a nested table's in its place, named
    `--TABLE-FIELD` unless the field names its own."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from options(hint, (*at, f.name))  # type: ignore[arg-type]
            continue
        flag = flag_of(f)
        if flag is None:
            continue
        name = "-".join((*at, f.name)).replace("_", "-")
        decls = flag.decls or (f"--{name}",)
        yield Option((*at, f.name), flag, decls, flag.cli_type or _cli_type(hint, flag))


def _cli_type(hint: Any, flag: Flag) -> Any:
    if get_origin(hint) in (Union, types.UnionType):
        hint = next(a for a in get_args(hint) if a is not type(None))
    if flag.duration:
        return str
    if get_origin(hint) is tuple:
        return list[get_args(hint)[0]]  # type: ignore[misc]
    return hint


def argv_of(cfg: Any) -> list[str]:
    """The flags that give a daemon `cfg`, as `logdist up` starts it; a secret (a flag with
    an environment variable) is never put on a command line."""
    args: list[str] = []
    for option in options(type(cfg)):
        if option.flag.envvar is None:
            value = cfg
            for name in option.path:
                value = getattr(value, name)
            args += option.args(value)
    return args


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def check_port(name: str, value: int) -> None:
    require(0 <= value <= 65535, f"{name} must be a port number 0-65535, got {value}")


def check_positive(name: str, value: float) -> None:
    require(math.isfinite(value) and value > 0, f"{name} must be > 0, got {value}")


def check_at_least_one(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        require(value >= 1, f"{name} must be >= 1, got {value}")


def checked_id(kind: str, value: str) -> None:
    try:
        check_id(kind, value)
    except InvalidRequest as exc:
        raise ConfigError(exc.message) from None


def parse_duration(name: str, text: str) -> float:
    """Seconds for `90`, `30s`, `15m`, `2h`, `7d`, `1w`, `1h30m`."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    ms = duration_ms(text)
    require(
        ms is not None,
        f"{name} must be seconds or a duration such as 30s, 15m, 2h, 7d; got {text!r}",
    )
    assert ms is not None
    return ms / 1000


def parse_messages(value: object) -> tuple[int, int]:
    """Messages per packet: `N` or `MIN-MAX`."""
    if isinstance(value, tuple):
        lo, hi = value
    elif isinstance(value, int) and not isinstance(value, bool):
        lo = hi = value
    elif isinstance(value, str):
        a, _, b = value.partition("-")
        try:
            lo = int(a)
            hi = int(b) if b else lo
        except ValueError:
            raise ConfigError(f"messages must be N or MIN-MAX, got {value!r}") from None
    else:
        raise ConfigError(f"messages must be N or MIN-MAX, got {value!r}")
    require(
        1 <= lo <= hi <= 100_000, f"messages must satisfy 1 <= MIN <= MAX <= 100000, got {value!r}"
    )
    return (lo, hi)


def read_token(path: str | None, token: str | None, name: str) -> str | None:
    """The token in the file at `path` (its first line), else `token`; ConfigError when the
    file cannot be read or holds none."""
    if path is None:
        return token
    try:
        with open(path, encoding="utf-8") as f:
            line = f.readline().strip()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None
    if not line:
        raise ConfigError(f"{name}: {path} holds no token (its first line is empty)")
    return line
