"""What the benchmark scripts share: writing a result table beside its data."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def write_results(name: str, data: object, head: list[str], rows: list[str]) -> None:
    """Write ``results/NAME.json`` (``data``) and ``results/NAME.md`` (a table of ``head`` and the ``| ... |`` lines
    ``rows``), and print the table."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *rows]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
