from __future__ import annotations

from logdist.cli import reference


def test_readme_cli_reference_is_generated_from_the_cli() -> None:
    readme = reference.README.read_text()
    assert reference.current(readme) == reference.section(), (
        "README's CLI reference is stale: run python -m logdist.cli.reference --write"
    )


def test_readme_opens_with_the_two_setup_commands() -> None:
    readme = reference.README.read_text()
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split()[0] for line in first_block.splitlines()] == [
        "scripts/demo",
        "scripts/test",
    ]
