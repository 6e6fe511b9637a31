"""The CLI reference (docs/cli.md), generated from the CLI itself (as datasette does with cog).

python -m logdist.cli.reference          # print it
python -m logdist.cli.reference --write  # rewrite docs/cli.md between the markers
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

START = "<!-- cli-reference:start -->"
END = "<!-- cli-reference:end -->"
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOC = ROOT / "docs" / "cli.md"
# Plain help text at a fixed width: the same on every machine and terminal.
ENV = {**os.environ, "TYPER_USE_RICH": "0", "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}


def help_text(path: list[str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "logdist", *path, "--help"],
        capture_output=True,
        text=True,
        env=ENV,
        check=True,
    ).stdout
    return out.rstrip()


def subcommands(text: str) -> list[str]:
    _, found, rest = text.partition("\nCommands:\n")
    return re.findall(r"^  (\S+)", rest, flags=re.M) if found else []


def render() -> str:
    # Each help is a process of its own (about a second to start): a level of the command
    # tree at a time, side by side, then printed depth first.
    texts: dict[tuple[str, ...], str] = {}
    level: list[tuple[str, ...]] = [()]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        while level:
            found = list(pool.map(lambda path: help_text(list(path)), level))
            texts.update(zip(level, found, strict=True))
            level = [(*path, name) for path, text in zip(level, found, strict=True)
                     for name in subcommands(text)]  # fmt: skip
    parts: list[str] = []

    def walk(path: tuple[str, ...]) -> None:
        text = texts[path]
        parts.append(f"### `{' '.join(['logdist', *path])}`\n\n```\n{text}\n```\n")
        for name in subcommands(text):
            walk((*path, name))

    walk(())
    return "\n".join(parts)


def section() -> str:
    return f"{START}\n{render()}{END}"


def current(readme: str) -> str:
    start, end = readme.index(START), readme.index(END) + len(END)
    return readme[start:end]


def main() -> None:
    text = DOC.read_text()
    if "--write" in sys.argv[1:]:
        DOC.write_text(text.replace(current(text), section()))
    else:
        print(render())


if __name__ == "__main__":
    main()
