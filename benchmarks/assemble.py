"""Write the raw result tables of every benchmark into BENCHMARKS.md, between markers, leaving the prose alone.

    python benchmarks/assemble.py

BENCHMARKS.md ends with an appendix of ``<!-- results:NAME -->`` ... ``<!-- /results -->`` blocks; each is replaced
by ``benchmarks/results/NAME.md`` (and its wall time, when the JSON beside it records one). A results file without
a block gets a new block at the end. The benchmark scripts call this after writing their results.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).parent
APPENDIX = "## Appendix: raw result tables (written by the benchmark scripts)"
BLOCK = re.compile(r"<!-- results:(?P<name>[\w.+-]+) -->\n.*?<!-- /results -->", re.DOTALL)


def block(name: str) -> str:
    table = (HERE / "results" / f"{name}.md").read_text().strip()
    meta = HERE / "results" / f"{name}.json"
    extra = ""
    if meta.is_file():
        data = json.loads(meta.read_text())
        if isinstance(data, dict):
            seconds = data.get("total_seconds") or data.get("train_seconds")
            settings = data.get("chosen")
            if seconds:
                extra += f"\n\nWall time: {seconds} s."
            if settings:
                extra += f" Settings chosen by cross-validation: `{json.dumps(settings)}`."
    return f"<!-- results:{name} -->\n### `{name}`\n\n{table}{extra}\n<!-- /results -->"


def assemble(path: Path = HERE.parent / "BENCHMARKS.md") -> list[str]:
    """Refresh every block; returns the names written."""
    text = path.read_text()
    names = sorted(p.stem for p in (HERE / "results").glob("*.md"))
    if APPENDIX not in text:
        text = text.rstrip() + f"\n\n{APPENDIX}\n"
    present = {m.group("name") for m in BLOCK.finditer(text)}
    text = BLOCK.sub(lambda m: block(m.group("name")) if m.group("name") in names else m.group(0), text)
    for name in names:
        if name not in present:
            text = text.rstrip() + "\n\n" + block(name) + "\n"
    path.write_text(text)
    return names


def write_results(name: str, data: object, head: list[str], rows: list[str]) -> None:
    """Write ``results/NAME.json`` (``data``) and ``results/NAME.md`` (a table of ``head`` and the ``| ... |`` lines
    ``rows``), print the table and refresh BENCHMARKS.md's appendix."""
    here = HERE / "results"
    here.mkdir(exist_ok=True)
    (here / f"{name}.json").write_text(json.dumps(data, indent=2))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *rows]
    (here / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    assemble()


if __name__ == "__main__":
    print("\n".join(assemble()))
