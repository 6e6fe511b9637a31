from __future__ import annotations

from logdist.cli import reference


def test_the_readme_links_the_reference_documents() -> None:
    readme = reference.README.read_text()
    for doc in (
        "docs/cli.md",
        "docs/http-api.md",
        "docs/inputs.md",
        "docs/outputs.md",
        "docs/operating.md",
        "docs/benchmark.md",
    ):
        assert f"]({doc})" in readme
        assert (reference.ROOT / doc).exists()


def test_the_readme_is_a_ten_minute_read() -> None:
    """Reference material goes to docs/; the README stays what a newcomer reads at once."""
    assert len(reference.README.read_text().splitlines()) <= 600


def test_readme_opens_with_the_two_setup_commands() -> None:
    readme = reference.README.read_text()
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split()[0] for line in first_block.splitlines()] == [
        "scripts/demo",
        "scripts/test",
    ]


def test_the_readme_layout_matches_the_tree() -> None:
    readme = reference.README.read_text()
    block = readme.split("## Layout\n", 1)[1].split("```\n", 2)[1]
    listed = {line.split()[0] for line in block.splitlines() if line.startswith("logdist/")}
    package = reference.ROOT / "logdist"
    tree = {
        f"{path.parent.relative_to(reference.ROOT).as_posix()}/"
        for path in package.rglob("__init__.py")
        if path.parent != package
    } | {
        f"logdist/{path.name}"
        for path in package.glob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    }
    assert listed == tree, (
        f"README's Layout lists {sorted(listed - tree)} that are not in the tree"
        f" and leaves out {sorted(tree - listed)}"
    )
