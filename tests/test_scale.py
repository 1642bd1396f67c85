"""Out of core and index choice: streamed fit equals the in-memory one; approximate indexes check their recall."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from annot.errors import AnnotError
from annot.evaluation.evaluate import evaluate
from annot.features.text import normalize_features, text_view
from annot.features.words import load_word_vectors
from annot.indexer import IndexConfig, build_index
from annot.indexer.build import load_training_set
from annot.indexer.features import FeatureCache
from annot.indexer.stream import training_chunks
from annot.projection.cca import LinearCCA
from annot.retrieval.ann import build_ann, choose_factory, exact_neighbours, parse_bytes, recall_at, tune_search
from annot.retrieval.indexes import correlation_rows
from annot.retrieval.model import AnnotationModel
from annot.store import Store


def test_parse_bytes_and_choose_factory() -> None:
    assert parse_bytes("4GB") == 4 << 30 and parse_bytes("512M") == 512 << 20 and parse_bytes("1000") == 1000
    with pytest.raises(AnnotError, match="--memory-budget"):
        parse_bytes("lots")
    assert choose_factory(4_500, 310, 4 << 30) == "Flat"
    assert choose_factory(1_000_000, 310, 4 << 30) == "IVF1024,Flat"  # 1.2 GB of vectors: under half the budget
    assert choose_factory(1_000_000, 256, 1 << 30).startswith("IVF1024,PQ")  # does not fit: compressed codes
    with pytest.raises(AnnotError, match="do not fit"):
        choose_factory(10_000_000_000, 256, 1 << 30)


def clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, d))
    return correlation_rows(centres[rng.integers(0, 40, n)] + 0.4 * rng.normal(size=(n, d)))


@pytest.mark.parametrize("factory", ["IVF32,Flat", "HNSW16"])
def test_approximate_index_is_tuned_to_the_recall_target(factory: str) -> None:
    rows = clustered(6000, 24, 0)
    ids = np.arange(100, 6100, dtype=np.int64)

    def chunks():  # type: ignore[no-untyped-def]
        return ((rows[lo : lo + 2500], ids[lo : lo + 2500]) for lo in range(0, len(ids), 2500))

    index = build_ann(factory, 24, chunks, rows[::3])
    assert index.ntotal == 6000
    queries, query_ids = rows[:300], ids[:300]
    info = tune_search(index, factory, chunks, queries, query_ids)
    assert info.recall_at_10 is not None and info.recall_at_10 >= 0.95
    exact = exact_neighbours(chunks, queries, 11)
    assert recall_at(index, queries, query_ids, exact, 10) == pytest.approx(info.recall_at_10, abs=1e-4)
    brute = np.argsort(-(queries @ rows.T), axis=1)[:, :11] + 100
    np.testing.assert_array_equal(np.sort(exact, axis=1), np.sort(brute, axis=1))  # the chunked scan is exact


def test_streamed_fit_equals_the_in_memory_fit(built_store: Path) -> None:
    with Store.open(built_store, read_only=True) as store:
        m = store.manifest()
        cache = FeatureCache(store.features_dir / m["encoder"]["key"], m["encoder"]["dim"])
        words = load_word_vectors(m["words"]["source"])
        training = load_training_set(store, cache, tuple(m["vocabulary"]["words"]), words, m["text"])
        chunked = list(training_chunks(store, cache, training.image_ids, training.tag_ids, chunk_rows=37))
        model = AnnotationModel(store)
    assert len(chunked) > 3 and sum(len(ids) for ids, _, _ in chunked) == len(training.image_ids)
    X = normalize_features(training.X, m["projection"]["normalization"])
    Y = text_view(training.labels, training.E, training.has_vector, m["text"])
    memory = LinearCCA(None, m["projection"]["reg_x"], m["projection"]["reg_y"]).fit(X, Y)
    np.testing.assert_allclose(model.projection.canonical_correlations_, memory.canonical_correlations_, atol=1e-9)
    np.testing.assert_allclose(np.abs(model.projection.x_weights_), np.abs(memory.x_weights_), rtol=1e-6, atol=1e-9)
    assert sorted(model.ids.tolist()) == sorted(training.image_ids.tolist())


def test_float16_features_and_an_approximate_index_in_a_store(synthetic: dict[str, Path], built_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "half.annot"
    config = IndexConfig(encoder="fake", words=str(synthetic["words"]), k=3, temperature=0.1, feature_dtype="float16",
                         index="IVF4,Flat")
    build_index(synthetic["train"], store, config)
    part = next((store / "features" / "fake").glob("part-*[0-9].npy"))
    assert np.load(part).dtype == np.float16
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["index"]["kind"] == "IVF4,Flat" and manifest["index"]["recall_at_10"] >= 0.95
    assert manifest["index"]["search"]["nprobe"] in (1, 2, 4) and manifest["feature_dtype"] == "float16"
    half = evaluate(store, synthetic["test"], record=False)
    exact = evaluate(shutil.copytree(built_store, tmp_path / "exact.annot"), synthetic["test"], record=False)
    assert abs(half.summary.f1 - exact.summary.f1) < 0.05
    with pytest.raises(AnnotError, match="not a FAISS index_factory"):
        build_index(synthetic["train"], store, IndexConfig(encoder="fake", words=str(synthetic["words"]), index="IVF-nonsense"))
    assert json.loads((store / "manifest.json").read_text())["index"]["kind"] == "IVF4,Flat"  # the store is unchanged
