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


def tree_memory(pid: int) -> int:
    """Memory (bytes) of a process and all its descendants: the sum of their proportional set sizes (Linux /proc),
    so that pages a forked worker shares with its parent are counted once, not once per process."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
        except OSError:
            continue
        line = next((x for x in rollup.splitlines() if x.startswith("Pss:")), None)
        total += int(line.split()[1]) * 1024 if line else 0
    return total
