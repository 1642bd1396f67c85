"""The docs say what the code does: the CLI reference is the commands' own help, and the README's Python API runs."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

import annot

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_the_cli_reference_is_the_commands_help() -> None:
    from annot.cli.reference import reference

    page = (ROOT / "docs" / "cli.md").read_text()
    assert page == reference(), "docs/cli.md is stale: run `make docs`"
    assert "## `annot index`" in page and "--frequency-power" in page


@pytest.mark.slow
def test_the_readme_python_api_runs_as_written(synthetic: dict[str, Path], tmp_path: Path) -> None:
    block = re.search(r"## Python API\n\n```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert block is not None
    code = block.group(1)
    assert 5 <= len(code.strip().splitlines()) <= 15
    # the files the lines name, made from the synthetic corpus (the default encoder and word vectors, for real)
    for name in ("train", "test"):
        lines = [json.loads(line) for line in synthetic[name].read_text().splitlines()]
        (tmp_path / f"{name}.jsonl").write_text("".join(
            json.dumps({**e, "image": str(synthetic["folder"] / e["image"])}) + "\n" for e in lines))
    (tmp_path / "vocabulary.txt").write_text("sky\nsea\ntree\ngrass\nsand\nsnow\ncity\nsun\n")
    shutil.copy(synthetic["folder"] / json.loads(synthetic["test"].read_text().splitlines()[0])["image"],
                tmp_path / "photo.jpg")
    (tmp_path / "photos").mkdir()
    for line in synthetic["test"].read_text().splitlines()[1:7]:
        shutil.copy(synthetic["folder"] / json.loads(line)["image"], tmp_path / "photos")
    printed: list[str] = []
    names: dict[str, object] = {"print": lambda *a: printed.append(" ".join(map(str, a)))}
    here = Path.cwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, "README.md", "exec"), names)  # noqa: S102 - the README's own example, as a user runs it
        hits = names["hits"]
        photo = names["store"].photo(hits[0].image_id)  # type: ignore[attr-defined, index]
    finally:
        os.chdir(here)
    tags = re.findall(r"\('(\w+)', ([0-9.]+)\)", printed[0])
    assert printed[0].startswith("photo.jpg [(") and len(tags) == 3  # three tags and their confidence
    assert all(0.0 <= float(c) <= 1.0 for _, c in tags)
    f1, n_plus = re.fullmatch(r"F1 ([0-9.]+), N\+ (\d+)", printed[1]).groups()  # type: ignore[union-attr]
    assert 30 < float(f1) <= 100 and 0 < int(n_plus) <= 8
    assert names["report"].annotated == 6  # type: ignore[attr-defined]
    assert 0 < len(hits) <= 5 and all(h.kind == "library" for h in hits)  # type: ignore[attr-defined]
    assert all(any(t.tag == "sky" for t in h.tags) for h in hits)  # type: ignore[attr-defined]  # the evidence
    assert annot.PhotoTag("sky", 1.0, "confirmed") in photo.tags  # type: ignore[attr-defined]


# each result row of the README and the benchmark result it quotes: (results file, row of it or None for the file's)
README_RESULTS = {
    "annot defaults (`make demo`)": ("corel5k-efficientnet-lite0-stages-cover.json", "CCA-KNN (W2V+BV)"),
    "annot `--projection kcca`": ("corel5k-efficientnet-lite0-stages-kcca-cover.json",
                                  "KCCA + CCA-KNN (best text view)"),
    "annot KCCA, held-out standardised scores": ("target.json", None),
}


def one_decimal(value: float) -> str:
    """As the README rounds a number written with two decimals (half up: 58.35 is 58.4)."""
    from decimal import ROUND_HALF_UP, Decimal

    return str(Decimal(str(value)).quantize(Decimal("0.1"), ROUND_HALF_UP))


def test_the_readmes_results_are_the_benchmarks() -> None:
    """Every annot row of the README's results table quotes benchmarks/results/ (P, R, F1 to one decimal, N+)."""
    rows = [line.split("|")[1:-1] for line in (ROOT / "README.md").read_text().splitlines()
            if line.startswith("| annot ")]
    assert sorted(r[0].strip() for r in rows) == sorted(README_RESULTS)
    for name, _, p, r, f1, n_plus in ((c.strip() for c in row) for row in rows):
        file, row = README_RESULTS[name]
        data = json.loads((ROOT / "benchmarks" / "results" / file).read_text())
        test = data["rows"][row]["test"] if row else data["test"]
        assert [p, r, f1] == [one_decimal(test[k]) for k in ("P", "R", "F1")], (name, test)
        assert int(n_plus) == test["N+"], (name, test)
