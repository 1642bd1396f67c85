"""Building a store with the fake encoder, reading it back, annotating, and its atomic, resumable pieces."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from annot.errors import AnnotError, StoreError
from annot.evaluation.evaluate import evaluate
from annot.features.cache import FeatureCache
from annot.indexer import build_index
from annot.library.query import annotate_files
from annot.metrics import per_word_metrics, predictions_matrix, summarize
from annot.model import StoreModel
from annot.settings import BuildSettings, ScoringSettings
from annot.store import StoreDir
from conftest import FakeEncoder, fake_settings


def test_manifest_records_every_setting_and_files_exist(built_store: Path) -> None:
    with StoreDir.open(built_store) as store:
        m = store.manifest()
        assert m.format_version == 2
        assert m.encoder.name == "fake" and m.encoder.dim == 48 and m.encoder.key == "fake-exif"
        assert m.settings.text.view == "w2v+bv" and m.settings.projection.normalization == "none"  # the defaults
        assert m.settings.scoring == ScoringSettings(k=3, temperature=0.1)
        assert m.index.ntotal == 160
        assert len(m.vocabulary.words) == 8
        for _, file in m.files():
            assert store.path(file.path).stat().st_size == file.size
            assert len(file.sha256 or "") == 64
        rho = m.projection.canonical_correlations
        assert all(0 <= c <= 1 for c in rho) and list(rho) == sorted(rho, reverse=True)


def test_settings_of_a_store_are_the_settings_it_was_built_with(built_store: Path, synthetic: dict[str, Path]) -> None:
    built = fake_settings(synthetic, k=3, temperature=0.1)  # as conftest builds it
    with StoreDir.open(built_store) as store:
        kept = store.manifest().settings
    assert kept == built
    assert BuildSettings.from_dict(kept.to_dict()) == kept


def test_model_transfers_a_training_images_own_tags(built_store: Path, synthetic: dict[str, Path]) -> None:
    """A training image's nearest neighbour is itself (distance 0), so nn transfer starts with its own tags."""
    first = json.loads(synthetic["train"].read_text().splitlines()[0])
    model = StoreModel.open(built_store)
    try:
        result = annotate_files(model, [synthetic["folder"] / first["image"]], model.settings.scoring.replace(method="nn"),
                                explain=True)
    finally:
        model.close()
    tags = [t.tag for t in result.annotations[0].tags]
    assert set(tags[: len(first["tags"])]) == set(first["tags"])
    assert result.annotations[0].tags[0].evidence[0].distance == pytest.approx(0.0, abs=1e-4)


def test_eval_beats_the_frequency_prior_and_is_recorded(built_store: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "copy.annot"
    shutil.copytree(built_store, store)
    result = evaluate(store, synthetic["test"])
    assert result.summary.n_images == 40
    # pixels determine tags here, so every true tag is found; 5 guesses for 1-3 true tags bound precision
    assert result.summary.recall > 0.95 and result.summary.n_plus == 8
    prior = np.argsort(-result.metrics.n_truth)[:5]  # the most frequent test words: an optimistic prior
    truth = np.array([[w in json.loads(line)["tags"] for w in result.words] for line in synthetic["test"].read_text().splitlines()])
    prior_f1 = summarize(per_word_metrics(truth, predictions_matrix([prior] * len(truth), len(result.words)))).f1
    assert result.summary.f1 > prior_f1 + 0.2
    with StoreDir.open(store) as s:
        _cols, rows = s.db.read_sql(f"SELECT f1, n_plus FROM runs WHERE id = {result.run_id}")
        assert rows[0][0] == pytest.approx(result.summary.f1)
        _, n = s.db.read_sql(f"SELECT count(*) FROM predictions WHERE run_id = {result.run_id}")
        assert n[0][0] == 40 * 5


def test_eval_refuses_training_images(built_store: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "copy.annot"
    shutil.copytree(built_store, store)
    with pytest.raises(AnnotError, match="training image of this store"):
        evaluate(store, synthetic["train"])


def test_opening_errors(tmp_path: Path, built_store: Path) -> None:
    with pytest.raises(StoreError, match="no such store"):
        StoreDir.open(tmp_path / "missing.annot")
    (tmp_path / "half.annot").mkdir()
    with pytest.raises(StoreError, match="not a complete store"):
        StoreDir.open(tmp_path / "half.annot")
    other = tmp_path / "future.annot"
    shutil.copytree(built_store, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["format_version"] = 99
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="format version 99"):
        StoreDir.open(other)


def test_reindex_with_other_settings_keeps_store_consistent(built_store: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "copy.annot"
    shutil.copytree(built_store, store)
    report = build_index(synthetic["train"], store, fake_settings(synthetic, text="bv"))
    assert report.extracted == 0 and report.cached == 160  # features are reused
    with StoreDir.open(store) as s:
        m = s.manifest()
        assert m.settings.text.view == "bv"
        referenced = {f.path for _, f in m.files()}
        on_disk = {str(p.relative_to(store)) for d in ("models", "indexes", "db") for p in (store / d).iterdir()}
        assert on_disk == referenced  # the previous model's files were removed after the switch


def test_a_failed_rebuild_leaves_the_previous_store_readable(built_store: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "copy.annot"
    shutil.copytree(built_store, store)
    before = (store / "manifest.json").read_bytes()
    with pytest.raises(AnnotError, match="n_components"):
        build_index(synthetic["train"], store, fake_settings(synthetic, components=10_000))
    assert (store / "manifest.json").read_bytes() == before
    model = StoreModel.open(store)
    try:
        assert len(model.predict(np.random.default_rng(0).random((2, 48)).astype(np.float32), model.settings.scoring)) == 2
    finally:
        model.close()


class Interrupt(Exception):
    pass


def test_interrupted_extraction_resumes_with_identical_features(synthetic: dict[str, Path], tmp_path: Path) -> None:
    images = sorted((synthetic["folder"] / "images").glob("train-*.jpeg"))[:50]
    items = list(enumerate(images, start=1))
    encoder = FakeEncoder()
    whole = FeatureCache(tmp_path / "whole", 48)
    whole.extract(items, encoder, batch_size=8, part_size=16)

    cache = FeatureCache(tmp_path / "resumed", 48)
    seen = 0

    def stop_in_second_part(n: int) -> None:
        nonlocal seen
        seen += n
        if seen > 24:
            raise Interrupt

    with pytest.raises(Interrupt):
        cache.extract(items, encoder, batch_size=8, part_size=16, progress=stop_in_second_part)
    assert sorted(cache.cached_ids().tolist()) == list(range(1, 17))  # only the complete first part counts
    report = cache.extract(items, encoder, batch_size=8, part_size=16)
    assert (report.extracted, report.cached) == (34, 16)
    ids = [i for i, _ in items]
    np.testing.assert_array_equal(cache.load(ids), whole.load(ids))


def test_corrupt_images_are_skipped_and_counted_or_fatal_when_strict(synthetic: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    shutil.copytree(synthetic["folder"] / "images", folder / "images")
    lines = synthetic["train"].read_text().splitlines()[:30]
    truncated = folder / "images" / json.loads(lines[0])["image"].split("/")[-1]
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])  # the header survives, the pixels do not: fails at decoding
    (folder / "images" / "notes.jpeg").write_text("not an image")
    lines += [json.dumps({"image": "images/notes.jpeg", "tags": ["sky"]}),
              json.dumps({"image": "images/missing.jpeg", "tags": ["sky"]})]
    corpus = folder / "train.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    report = build_index(corpus, tmp_path / "s.annot", fake_settings(synthetic))
    assert set(report.unreadable) == {str(truncated), str(folder / "images" / "notes.jpeg"), str(folder / "images" / "missing.jpeg")}
    assert report.n_indexed == 29
    with pytest.raises(AnnotError, match=r"missing\.jpeg: no such file|notes\.jpeg: not a readable image|truncated"):
        build_index(corpus, tmp_path / "strict.annot", fake_settings(synthetic, strict=True))


def test_pooled_and_dense_annotation_agree(built_store: Path, synthetic: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from annot.methods import cca_knn

    with StoreDir.open(built_store) as s:
        model = StoreModel(s)
        X = model.feature_cache().load(model.ids[:20])
        scoring = model.settings.scoring.replace(depth=60)
        dense = model.predict(X, scoring)
        monkeypatch.setattr(cca_knn, "EXACT_NEIGHBOURS", 0)  # as if the corpus were large
        pooled = model.method("cca-knn").predict(X, scoring)
    for a, b in zip(dense, pooled, strict=True):
        assert a.words.tolist() == b.words.tolist()
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
        assert [[v[0] for v in w] for w in a.votes] == [[v[0] for v in w] for w in b.votes]


def test_indexed_tags_are_stored_as_csr_arrays_and_damaged_ones_refused(tmp_path: Path) -> None:
    from scipy import sparse

    from annot.model import labels_from_arrays, labels_to_arrays

    labels = np.random.default_rng(3).random((40, 9)) < 0.2
    labels[5] = False  # an image without tags
    arrays = labels_to_arrays(labels)
    csr = sparse.csr_matrix(labels)  # the layout stores written with scipy hold
    assert np.array_equal(arrays["indptr"], csr.indptr) and np.array_equal(arrays["indices"], csr.indices)
    assert np.array_equal(labels_from_arrays(arrays, tmp_path), labels)
    for broken in ({**arrays, "indices": arrays["indices"] + 9}, {**arrays, "indptr": arrays["indptr"][:-1]},
                   {**arrays, "indptr": arrays["indptr"][::-1]}, {k: v for k, v in arrays.items() if k != "shape"}):
        with pytest.raises(StoreError, match="damaged indexed tags"):
            labels_from_arrays(broken, tmp_path)
