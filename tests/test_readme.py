from __future__ import annotations

from logdist.cli import reference


def test_the_cli_reference_is_generated_from_the_cli() -> None:
    doc = reference.DOC.read_text()
    assert reference.current(doc) == reference.section(), (
        "docs/cli.md is stale: run python -m logdist.cli.reference --write"
    )


def test_the_readme_links_the_reference_documents() -> None:
    readme = reference.README.read_text()
    for doc in ("docs/cli.md", "docs/http-api.md", "docs/inputs.md", "docs/benchmark.md"):
        assert f"]({doc})" in readme
        assert (reference.ROOT / doc).exists()


def test_readme_opens_with_the_two_setup_commands() -> None:
    readme = reference.README.read_text()
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split()[0] for line in first_block.splitlines()] == [
        "scripts/demo",
        "scripts/test",
    ]
