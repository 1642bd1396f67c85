"""The HTML report: its content, and what headless Chromium actually shows of it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annot.errors import AnnotError
from annot.evaluation.evaluate import evaluate
from annot.evaluation.report import build_report, run_reliability


@pytest.fixture(scope="module")
def evaluated(built_store: Path, synthetic: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    store = tmp_path_factory.mktemp("report") / "s.annot"
    shutil.copytree(built_store, store)
    return store, evaluate(store, synthetic["test"]).run_id  # type: ignore[return-value]


def test_page_holds_summary_charts_and_gallery(evaluated: tuple[Path, int]) -> None:
    store, run_id = evaluated
    page = build_report(store, run_id, gallery=12)
    assert len(re.findall(r'<rect class="bar"', page)) == 8  # one bar per vocabulary word
    assert len(re.findall(r'<circle class="point"', page)) == 8
    assert page.count('class="card"') == 12 and page.count("data:image/jpeg;base64,") == 12
    assert "http://" not in page and "https://" not in page  # nothing fetched at view time
    assert 'class="ours"' in page
    # the reliability diagram: every predicted tag (40 images x 5) in one of its bins, the ECE printed as measured
    from annot.store import StoreDir

    with StoreDir.open(store) as s:
        measured = run_reliability(s, run_id)
    assert measured is not None and sum(b["n"] for b in measured["bins"]) == measured["n"] == 200
    assert 0.0 <= measured["ece"] < 0.25
    assert len(re.findall(r'<rect class="bin"', page)) == len(measured["bins"])
    assert f'id="ece">{100 * measured["ece"]:.1f}<' in page


def test_published_rows_appear_for_a_known_dataset(evaluated: tuple[Path, int], tmp_path: Path) -> None:
    from annot.evaluation.published import PUBLISHED, published_for

    name, rows = published_for("/data/corel5k/test.jsonl")
    assert name == "corel5k" and rows["CCA-KNN (VGG-16, W2V)"] == (42, 52, 46, 201)
    assert published_for("/elsewhere/test.jsonl") == ("", {})
    assert set(PUBLISHED) == {"corel5k", "espgame", "iaprtc12"}


def test_unknown_run_is_a_clear_error(evaluated: tuple[Path, int]) -> None:
    with pytest.raises(AnnotError, match="no run 99"):
        build_report(evaluated[0], 99)


@pytest.mark.browser
def test_chromium_renders_charts_and_images(evaluated: tuple[Path, int], tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "headless Chromium is part of the test set-up (make test installs Debian's chromium)"
    store, run_id = evaluated
    page = tmp_path / "report.html"
    page.write_text(build_report(store, run_id, gallery=12))
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1200,2200", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    bar_blue = (np.abs(pixels - [0x3B, 0x7D, 0xD8]).sum(axis=2) < 30).sum()
    point_orange = (np.abs(pixels - [0xD8, 0x66, 0x3B]).sum(axis=2) < 120).sum()
    assert bar_blue > 2000, "the F1 bars are not on screen"
    assert point_orange > 100, "the precision/recall points are not on screen"
    # the gallery thumbnails are the synthetic images: their saturated tag colours must be visible
    hit_green = (np.abs(pixels - [0xC8, 0xF0, 0xC8]).sum(axis=2) < 20).sum()
    assert hit_green > 500, "no right tags marked in the gallery"
    colours = {tuple(p) for p in pixels[1200:, :, :].reshape(-1, 3)[::7]}
    assert len(colours) > 500, "the gallery shows no photographs"
