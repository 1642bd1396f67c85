"""The photo library's index by size: exact up to a threshold, IVF-SQ8 above it with its nprobe tuned to a measured
recall@20 against exact search; photos added, removed and read back by id either way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.test_teach import beach_photos

import annot
from annot.library import vectors
from annot.library.collection import annotate_photos
from annot.store import StoreDir


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Unit rows around 300 centres, as photos' vectors gather around what they show."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((300, d))
    rows = centres[rng.integers(0, 300, n)] + 0.35 * rng.standard_normal((n, d))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.slow
def test_a_large_library_gets_an_ivf_index_tuned_to_the_recall_target() -> None:
    import faiss

    rows = clustered(60_000, 32)
    ids = np.arange(1_000, 61_000, dtype=np.int64)
    index, info = vectors.build_library_index(rows, ids)
    assert info.factory == "IVF256,SQ8" and info.trained_on == 60_000
    assert info.recall is not None and info.recall >= vectors.RECALL_TARGET
    nprobe = info.search["nprobe"]
    assert [t[0] for t in info.tried][-1] == nprobe and all(r < vectors.RECALL_TARGET for _, r in info.tried[:-1])
    queries = rows[5_000:5_500]  # measured again here, on other photos
    exact = faiss.IndexFlatIP(32)
    exact.add(rows)
    truth = ids[exact.search(queries, 20)[1]]
    vectors.set_library_search(index, info)
    found = index.search(queries, 20)[1]
    assert np.mean([len(set(f) & set(t)) / 20 for f, t in zip(found, truth, strict=True)]) >= 0.93
    back, back_ids = vectors.all_vectors(index)
    assert sorted(back_ids.tolist()) == ids.tolist()
    order = np.argsort(back_ids)
    error = np.abs(back[order] - rows)
    assert np.quantile(error, 0.999) < 0.02 and error.mean() < 0.002  # 8-bit codes, decoded (tails clipped)
    assert vectors.remove(index, ids[:10]) == 10
    assert index.ntotal == 59_990 and not set(index.search(rows[:10], 5)[1].ravel().tolist()) & set(ids[:10].tolist())
    assert np.abs(vectors.vectors_of(index, ids[10:12]) - rows[10:12]).mean() < 0.002
    small, small_info = vectors.build_library_index(rows[:100], ids[:100])
    assert small_info.factory == "Flat" and small.ntotal == 100


@pytest.mark.slow
def test_the_library_switches_to_ivf_when_it_grows(store: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectors, "EXACT_UP_TO", 30)
    photos = sorted(beach_photos(tmp_path / "photos", 48))
    annotate_photos(store, [tmp_path / "photos"])
    with StoreDir.open(store) as s:
        record = s.manifest().collection
        assert record is not None and record.factory == "IVF8,SQ8" and record.ntotal == 48
        assert record.tuning["trained_on"] == 48 and "nprobe" in record.tuning["search"]
    api = annot.open_store(store)
    found = api.search(like=photos[0], n=3, scope="library")
    assert found[0].path == str(photos[0])  # a photo finds itself first
    assert len(api.review(5)) == 5  # density reads vectors back by id
    photos[1].unlink()
    report = annotate_photos(store, [tmp_path / "photos"])
    assert report.missing == [str(photos[1])] and report.total == 47
    assert str(photos[1]) not in {h.path for h in api.search(like=photos[1].with_name("b003.jpg"), n=48,
                                                                scope="library")}
    api.close()
