"""Out of core and index choice: streamed fit equals the in-memory one; approximate indexes check their recall."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from annot.errors import AnnotError
from annot.evaluation.evaluate import evaluate
from annot.features.text import normalize_features, text_view
from annot.features.words import load_word_vectors
from annot.fitting.fit import load_training_set, training_chunks
from annot.indexer import build_index
from annot.model import StoreModel
from annot.projection import correlation_rows
from annot.projection.cca import LinearCCA
from annot.retrieval.ann import (
    build_ann,
    choose_factory,
    exact_neighbours,
    exact_search,
    pool_depth,
    recall_at,
    search_values,
    set_search,
    tag_agreement,
    tune_search,
)
from annot.retrieval.scoring import pooled_tagger
from annot.settings import parse_bytes
from annot.store import StoreDir
from conftest import fake_settings, invoke


def test_parse_bytes_and_choose_factory() -> None:
    assert parse_bytes("4GB") == 4 << 30 and parse_bytes("512M") == 512 << 20 and parse_bytes("1000") == 1000
    with pytest.raises(ValueError, match="cannot read 'lots'"):
        parse_bytes("lots")
    from annot.settings import IndexSettings, SettingsError

    with pytest.raises(SettingsError, match="index.memory_budget"):
        IndexSettings(memory_budget="lots")
    assert choose_factory(4_500, 310, 4 << 30) == "Flat"
    assert choose_factory(1_000_000, 310, 4 << 30) == "IVF1024,Flat"  # 1.2 GB of vectors: under half the budget
    assert choose_factory(1_000_000, 256, 1 << 30).startswith("IVF1024,PQ")  # does not fit: compressed codes
    assert choose_factory(1_000_000, 310, 1 << 30) == "OPQ64_320,IVF1024,PQ64"  # 64 does not divide 310: rotate first
    with pytest.raises(AnnotError, match="do not fit"):
        choose_factory(10_000_000_000, 256, 1 << 30)


def clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, d))
    return correlation_rows(centres[rng.integers(0, 40, n)] + 0.4 * rng.normal(size=(n, d)))


@pytest.mark.parametrize("factory", ["IVF32,Flat", "HNSW16"])
@pytest.mark.slow
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

    labels = (rows @ np.random.default_rng(1).normal(size=(24, 30))) > 0.5  # tags that follow the clusters
    frequency = labels.sum(axis=0).astype(np.int64)
    score = pooled_tagger(sparse.csr_matrix(labels), frequency, 5, 0.1, 0.5)

    def tagger(D: np.ndarray, found: np.ndarray) -> np.ndarray:
        return score(D, np.where(found >= 0, found - 100, -1))

    deep = tune_search(index, factory, chunks, queries, query_ids, depth=400, tagger=tagger, agreement=0.99)
    assert deep.depth == 400 and deep.tag_agreement is not None and deep.tag_agreement >= 0.99
    name, values = search_values(index, factory, 400)  # type: ignore[misc]
    chosen = values.index(deep.search[name])
    if name == "nprobe":
        assert chosen > 0 and deep.search[name] > info.search[name]  # the tags need a wider search than the top 10
    else:
        assert deep.search[name] >= 400  # HNSW searches at least as wide as the pool it returns

    def agreement_at(value: int) -> float:  # recomputed: tags of the exact and the approximate pools, self left out
        set_search(index, {name: value})
        pools = [exact_search(chunks, queries, 401), index.search(queries, 401)]
        tags = []
        for similarity, found in pools:
            found = np.where(found == query_ids[:, None], -1, found)
            tags.append(tagger(np.where(found >= 0, 1 - similarity, np.inf).astype(np.float32), found))
        return tag_agreement(tags[0], tags[1])

    assert agreement_at(deep.search[name]) == pytest.approx(deep.tag_agreement, abs=1e-4)
    if chosen:
        assert agreement_at(values[chosen - 1]) < 0.99  # the smallest setting that agrees
    assert deep.tried[-1] == (deep.search[name], deep.tag_agreement) and all(a < 0.99 for _, a in deep.tried[:-1])
    assert [v for v, _ in deep.tried] == values[: chosen + 1]
    speed = tune_search(index, factory, chunks, queries, query_ids, depth=400, tagger=tagger, agreement=0)
    assert speed.tag_agreement is None  # speed first: recall@10 as without tags (HNSW never searches below the pool)
    assert speed.search == (info.search if name == "nprobe" else {name: 400})
    set_search(index, deep.search)
    assert recall_at(index, queries, query_ids, exact_neighbours(chunks, queries, 401), 400) == pytest.approx(deep.recall_at_depth, abs=1e-4)


def test_tag_agreement() -> None:
    exact = np.array([[1, 2, 3, 4, 5], [7, 8, -1, -1, -1]])
    assert tag_agreement(exact, exact) == 1.0
    assert tag_agreement(exact, np.array([[5, 4, 3, 9, 9], [8, 7, 1, 2, 3]])) == pytest.approx(5 / 7)  # order is free


@pytest.mark.slow
def test_rotated_product_quantiser_for_a_dimension_pq_does_not_divide() -> None:
    rows = clustered(3000, 24, 1)
    ids = np.arange(7, 3007, dtype=np.int64)

    def chunks():  # type: ignore[no-untyped-def]
        return iter([(rows, ids)])

    index = build_ann("OPQ16_32,IVF8,PQ16", 24, chunks, rows)  # 24 dimensions rotated to 32 for 16 sub-quantisers
    info = tune_search(index, "OPQ16_32,IVF8,PQ16", chunks, rows[:200], ids[:200])
    assert index.ntotal == 3000 and info.search == {"nprobe": 8}  # lossy codes: the widest search, and its recall
    exact = exact_neighbours(chunks, rows[:200], 11)
    assert recall_at(index, rows[:200], ids[:200], exact, 10) == pytest.approx(info.recall_at_10, abs=1e-4)
    assert 0.3 < info.recall_at_10 < 0.95
    _, found = index.search(rows[:5], 3)
    assert found[:, 0].tolist() == ids[:5].tolist()  # each vector's own code is still its nearest


def test_pool_depth() -> None:
    assert pool_depth(4_493, 16) == 4_493  # an exact index answers from every image
    assert pool_depth(4_493, 16, exact=False) == 2_000  # an approximate one from its pool, as large corpora do
    assert pool_depth(1_000, 16, exact=False) == 1_000
    assert pool_depth(1_000_000, 16) == 2_000 and pool_depth(1_000_000, 60) == 3_000
    assert pool_depth(1_000_000, 16, depth=500) == 500 and pool_depth(300, 16, depth=500) == 300


def test_streamed_fit_equals_the_in_memory_fit(built_store: Path) -> None:
    with StoreDir.open(built_store) as store:
        m = store.manifest()
        model = StoreModel(store)
        cache = model.feature_cache()
        words = load_word_vectors(m.words.source)
        training = load_training_set(store, cache, model.ids, m.vocabulary.words, m.vocabulary.tag_ids, words)
        chunked = list(training_chunks(store, cache, training.image_ids, list(training.tag_ids), chunk_rows=37))
    assert len(chunked) > 3 and sum(len(ids) for ids, _, _ in chunked) == len(training.image_ids)
    settings = m.settings
    X = normalize_features(training.X, settings.projection.normalization)
    Y = text_view(training.labels, training.E, training.has_vector, settings.text.view)
    memory = LinearCCA(None, settings.projection.reg, settings.projection.reg).fit(X, Y)
    np.testing.assert_allclose(model.projection.canonical_correlations_, memory.canonical_correlations_, atol=1e-9)
    np.testing.assert_allclose(np.abs(model.projection.x_weights_), np.abs(memory.x_weights_), rtol=1e-6, atol=1e-9)
    assert sorted(model.ids.tolist()) == sorted(training.image_ids.tolist())


@pytest.mark.slow
def test_float16_features_and_an_approximate_index_in_a_store(synthetic: dict[str, Path], built_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "half.annot"
    config = fake_settings(synthetic, k=3, temperature=0.1, feature_dtype="float16", index="IVF4,Flat")
    build_index(synthetic["train"], store, config)
    part = next((store / "features" / "fake-exif").glob("part-*[0-9].npy"))
    assert np.load(part).dtype == np.float16
    manifest = json.loads((store / "manifest.json").read_text())
    n = manifest["counts"]["train_images"]
    index, tuning = manifest["index"], manifest["index"]["tuning"]
    assert index["factory"] == "IVF4,Flat" and tuning["recall_depth"] == min(n - 1, 2000)
    assert tuning["tag_agreement"] >= 0.9 and manifest["settings"]["index"]["tag_agreement"] == 0.9  # the default
    assert tuning["tried"][-1] == [index["search"]["nprobe"], tuning["tag_agreement"]]
    assert index["search"]["nprobe"] in (1, 2, 4) and manifest["settings"]["feature_dtype"] == "float16"
    half = evaluate(store, synthetic["test"], record=False)
    exact = evaluate(shutil.copytree(built_store, tmp_path / "exact.annot"), synthetic["test"], record=False)
    assert abs(half.summary.f1 - exact.summary.f1) < 0.05
    with pytest.raises(AnnotError, match="FAISS refuses 'IVF-nonsense'"):
        build_index(synthetic["train"], store, fake_settings(synthetic, index="IVF-nonsense"))
    assert json.loads((store / "manifest.json").read_text())["index"]["factory"] == "IVF4,Flat"  # the store is unchanged
    before = (store / "manifest.json").read_text()
    result = invoke("index", synthetic["train"], "--store", store, "--encoder", "fake", "--words", synthetic["words"],
                    "--index", "IVF4,Flat", "--tag-agreement", "1.5")
    assert result.exit_code != 0 and "--tag-agreement must be <= 1 and >= 0, got 1.5" in result.output
    assert (store / "manifest.json").read_text() == before
