"""Shared fixtures: a deterministic fake encoder (no weights, no network) and synthetic tagged corpora."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from annot.features.encoders import ImageEncoder, register_encoder

WORDS = ["sky", "sea", "tree", "grass", "sand", "snow", "city", "sun"]
# each word paints its own region of the image in its own colour, so pixels determine tags
COLOURS = {w: c for w, c in zip(WORDS, [(30, 90, 230), (10, 40, 160), (20, 120, 30), (90, 200, 60),
                                        (220, 200, 140), (250, 250, 250), (120, 120, 120), (250, 200, 0)], strict=True)}
REGIONS = {w: (i % 4, i // 4) for i, w in enumerate(WORDS)}


class FakeEncoder(ImageEncoder):
    """Mean colour of each cell of a 4 × 4 grid over the image (16 × 16 by default): 48 deterministic features at any
    input size, as a network's pooled features."""

    name = "fake"
    dim = 48
    input_size = 16
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)

    def encode(self, pixels):  # type: ignore[no-untyped-def]
        import torch

        pooled = torch.nn.functional.adaptive_avg_pool2d(pixels, round((self.dim / 3) ** 0.5))
        return pooled.flatten(1).numpy().astype(np.float32)


register_encoder("fake", lambda weights: FakeEncoder())


@pytest.fixture(scope="session", autouse=True)
def annot_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """ONNX exports of the real encoders go to a folder of this test session, not the user's cache (``ANNOT_CACHE``,
    inherited by the commands the tests start)."""
    cache = tmp_path_factory.mktemp("annot-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANNOT_CACHE", str(cache))
        yield cache


def tiny_backbone(width: int = 16):  # type: ignore[no-untyped-def]
    """A small CNN-R backbone (no pretrained weights): trunk conv at 8 × 8, top conv + pool to ``width`` features."""

    def build(weights):  # type: ignore[no-untyped-def]
        import torch

        from annot.methods.cnnr.network import Backbone

        torch.manual_seed(0)
        trunk = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU())
        top = torch.nn.Sequential(torch.nn.Conv2d(8, width, 3, padding=1), torch.nn.BatchNorm2d(width), torch.nn.ReLU(),
                                  torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(1))
        return Backbone(f"tiny{width}", trunk, top, width, 16, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))

    return build


def _register_backbones() -> None:
    from annot.methods.cnnr.network import register_backbone

    register_backbone("tiny16", tiny_backbone(16))
    register_backbone("tiny24", tiny_backbone(24))


_register_backbones()


def paint(tags: list[str], rng: np.random.Generator, size: int = 64) -> NDArray[np.uint8]:
    image = rng.integers(0, 60, size=(size, size, 3)).astype(np.uint8)
    cell_w, cell_h = size // 4, size // 2
    for tag in tags:
        cx, cy = REGIONS[tag]
        colour = np.array(COLOURS[tag]) + rng.integers(-15, 15, 3)
        image[cy * cell_h : (cy + 1) * cell_h, cx * cell_w : (cx + 1) * cell_w] = np.clip(colour, 0, 255)
    return image


def make_corpus(folder: Path, n: int, seed: int = 0, name: str = "train.jsonl") -> Path:
    """n synthetic JPEGs with 1-3 tags each, and a JSONL file naming them relative to itself."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        tags = list(rng.choice(WORDS, size=int(rng.integers(1, 4)), replace=False))
        path = folder / "images" / f"{name.split('.')[0]}-{i:04d}.jpeg"
        Image.fromarray(paint(tags, rng)).save(path, quality=95)
        lines.append(json.dumps({"image": f"images/{path.name}", "tags": tags}))
    corpus = folder / name
    corpus.write_text("\n".join(lines) + "\n")
    return corpus


def write_word_vectors(path: Path, dim: int = 6, seed: int = 1) -> Path:
    """A word2vec text file covering WORDS (plus one word no tag uses)."""
    rng = np.random.default_rng(seed)
    words = [*WORDS, "unseen"]
    lines = [f"{len(words)} {dim}"] + [w + " " + " ".join(f"{v:.5f}" for v in rng.normal(size=dim)) for w in words]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A train corpus (160 images), a test corpus (40) and a word-vector file, made once per session."""
    folder = tmp_path_factory.mktemp("synthetic")
    return {
        "train": make_corpus(folder, 160, seed=0, name="train.jsonl"),
        "test": make_corpus(folder, 40, seed=1, name="test.jsonl"),
        "words": write_word_vectors(folder / "words.txt"),
        "folder": folder,
    }


def fake_settings(synthetic: dict[str, Path], **flags: object):  # type: ignore[no-untyped-def]
    """Settings for the fake encoder and the synthetic word vectors, with CLI-style ``flags`` (``k=3, text="bv"``)."""
    from annot.settings import build_settings

    return build_settings(**{"encoder": "fake", "words": str(synthetic["words"]), **flags})  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def built_store(synthetic: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store indexed from the synthetic train corpus with the fake encoder (built once; tests must not modify it)."""
    from annot.indexer import build_index

    store = tmp_path_factory.mktemp("stores") / "synthetic.annot"
    build_index(synthetic["train"], store, fake_settings(synthetic, k=3, temperature=0.1))
    return store


def invoke(*args: str | Path):  # type: ignore[no-untyped-def]
    """Run the CLI in process (typer's CliRunner) with string arguments."""
    from typer.testing import CliRunner

    from annot.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture()
def store(built_store: Path, tmp_path: Path) -> Path:
    """A private copy of the built store, for tests that write to it."""
    import shutil

    copy = tmp_path / "s.annot"
    shutil.copytree(built_store, copy)
    return copy



@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's headless chromium through its chromedriver (installed by `make tools`), for a module's tests."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, "Debian's chromium and chromium-driver are part of the test set-up (make tools)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1600", "--disable-extensions", "--no-first-run"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def candidate(**flat: object):  # type: ignore[no-untyped-def]
    """A cross-validation candidate from flat names (``text="bv", normalization="none", k=3``), on the defaults."""
    from annot.settings import build_settings

    names = {"normalization": "normalize"}
    return build_settings(**{names.get(k, k): v for k, v in flat.items()})  # type: ignore[arg-type]
