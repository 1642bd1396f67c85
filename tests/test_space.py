"""What a query's projection T is compared with: the training images' image projections U, their tags' projections V
(the paper's wording, §3.4.1) or the mean of both (``--space``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from annot.errors import ProjectionError
from annot.evaluation.evaluate import evaluate
from annot.features.text import text_view
from annot.features.words import load_word_vectors
from annot.fitting.cv import cross_validate
from annot.indexer import build_index
from annot.indexer.grow import add_images, refit
from annot.projection import correlation_rows, load_projection, space_rows
from annot.schema.queries import label_matrix
from annot.settings import Space
from annot.store import StoreDir
from conftest import candidate, fake_settings, invoke


def test_space_rows_are_the_correlation_rows_of_their_side_or_their_mean() -> None:
    rng = np.random.default_rng(0)
    U, V, T = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)), correlation_rows(rng.normal(size=(3, 4)))
    np.testing.assert_allclose(space_rows(U, V, "image"), correlation_rows(U))
    np.testing.assert_allclose(space_rows(U, V, "text"), correlation_rows(V))
    # with "both" a query's similarity is the mean of its correlations with U and with V
    both = T @ space_rows(U, V, "both").T
    np.testing.assert_allclose(both, (T @ correlation_rows(U).T + T @ correlation_rows(V).T) / 2, rtol=1e-5)
    with pytest.raises(ProjectionError, match="space must be one of image, text, both"):
        space_rows(U, V, "tags")


def stored_and_tag_rows(store: Path, words: Path) -> tuple[np.ndarray, np.ndarray]:
    """The image index's rows, and the correlation rows of the stored projection applied to each image's text view."""
    with StoreDir.open(store) as s:
        m = s.manifest()
        ids = s.read_array(m.index.ids)
        index = s.read_index(m.index.file)
        rows = np.stack([index.reconstruct(int(i)) for i in ids])
        projection = load_projection(m.settings.projection.kind, s.read_arrays(m.projection.file), s.path(m.projection.file.path))
        vocabulary = m.vocabulary.words
        labels = label_matrix(s.db, ids.tolist(), list(m.vocabulary.tag_ids))
    E, missing = load_word_vectors(str(words)).matrix(vocabulary)
    has_vector = np.array([w not in missing for w in vocabulary])
    return rows, correlation_rows(projection.transform_y(text_view(labels, E, has_vector, m.settings.text.view)))


@pytest.mark.slow
@pytest.mark.parametrize("projection", ["linear-cca", "kcca"])
def test_text_space_indexes_the_projections_of_each_images_tags(synthetic: dict[str, Path], tmp_path: Path,
                                                                projection: str) -> None:
    store = tmp_path / "text.annot"
    build_index(synthetic["train"], store, fake_settings(synthetic, k=3, projection=projection, space="text"))
    assert json.loads((store / "manifest.json").read_text())["settings"]["projection"]["space"] == "text"
    rows, expected = stored_and_tag_rows(store, synthetic["words"])
    np.testing.assert_allclose(rows, expected, atol=1e-5)
    assert evaluate(store, synthetic["test"], record=False).summary.recall > 0.5


@pytest.mark.slow
def test_images_added_to_or_refitted_in_a_text_space_store_get_their_tags_rows(synthetic: dict[str, Path], tmp_path: Path) -> None:
    lines = synthetic["train"].read_text().splitlines()
    a, b = synthetic["folder"] / f"a-{tmp_path.name}.jsonl", synthetic["folder"] / f"b-{tmp_path.name}.jsonl"
    a.write_text("\n".join(lines[:100]) + "\n")
    b.write_text("\n".join(lines[100:]) + "\n")
    store = tmp_path / "grow.annot"
    build_index(a, store, fake_settings(synthetic, k=3, space="text"))
    assert add_images(b, store).added == 60
    rows, expected = stored_and_tag_rows(store, synthetic["words"])
    assert len(rows) == 160
    np.testing.assert_allclose(rows, expected, atol=1e-5)
    assert refit(store).refitted  # a refit re-projects every image through the new projection, still on the text side
    rows, expected = stored_and_tag_rows(store, synthetic["words"])
    np.testing.assert_allclose(rows, expected, atol=1e-5)


@pytest.mark.slow
def test_cross_validation_scores_each_space_and_the_cli_indexes_it(synthetic: dict[str, Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n, vocabulary = 120, 6
    labels = rng.random((n, vocabulary)) < 0.3
    labels[np.arange(n), rng.integers(0, vocabulary, n)] = True
    X = (labels @ rng.normal(size=(vocabulary, 10)) + 0.5 * rng.normal(size=(n, 10))).astype(np.float32)
    E = rng.normal(size=(vocabulary, 5)).astype(np.float32)
    results = cross_validate(X, labels, E, np.ones(vocabulary, bool),
                             [candidate(method="nn", text="bv", space=s) for s in Space], folds=3)
    assert {r.candidate.projection.space for r in results} == set(Space)
    assert len({round(r.f1, 9) for r in results}) > 1  # the spaces are scored on their own rows

    s = tmp_path / "both.annot"
    result = invoke("index", synthetic["train"], "--store", s, "--encoder", "fake", "--words", synthetic["words"],
                    "--k", "3", "--space", "both", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads((s / "manifest.json").read_text())["settings"]["projection"]["space"] == "both"
    result = invoke("index", synthetic["train"], "--store", s, "--encoder", "fake", "--words", synthetic["words"],
                    "--space", "tags")
    assert result.exit_code == 2 and "--space must be one of image, text, both" in result.output
    assert json.loads((s / "manifest.json").read_text())["settings"]["projection"]["space"] == "both"  # nothing overwritten
