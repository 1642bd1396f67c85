"""The CLI reference page (``docs/cli.md``), made from the commands' own help text: ``python -m
annot.cli.reference > docs/cli.md`` (``make docs``); a test fails when the page is stale."""

from __future__ import annotations

from typer.main import get_command
from typer.testing import CliRunner

from annot.cli.main import app

WIDTH = "100"


def _help(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": WIDTH, "NO_COLOR": "1", "TERM": "dumb"},
                                color=False)
    return "\n".join(line.rstrip() for line in result.output.strip("\n").splitlines())


def reference() -> str:
    """Markdown: every command's usage, description and options, in the order ``annot --help`` lists them."""
    parts = ["# `annot` command reference", "",
             "Generated from the commands' help text (`make docs`); `annot COMMAND --help` prints the same.", "",
             "```text", _help(), "```"]
    for name in get_command(app).commands:  # type: ignore[attr-defined]
        parts += ["", f"## `annot {name}`", "", "```text", _help(name), "```"]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(reference(), end="")
