"""Standardised CCA-KNN scores: each word's Eq. 5 score against its leave-one-out scores on the training images,
the same in the store (index, query, eval, add/remove) as in cross-validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from annot.errors import AnnotError
from annot.evaluation.tune import choose, standard_error, ties
from annot.fitting.cv import CVResult, _fold_standards, within_pool
from annot.fitting.fit import FoldFit
from annot.indexer.corpus import read_corpus
from annot.indexer.grow import remove_images
from annot.methods import cca_knn as cca_knn_module
from annot.methods.cca_knn import CCAKNN, standards_key
from annot.model import StoreModel
from annot.projection import correlation_rows
from annot.retrieval.scoring import (
    cca_knn_scores,
    held_out_standards,
    score_queries,
    standardize,
    top_words,
    word_standards,
)
from annot.settings import Score, ScoringSettings
from conftest import candidate, invoke


def method(model: StoreModel) -> CCAKNN:
    found = model.method("cca-knn")
    assert isinstance(found, CCAKNN)
    return found


def test_standardize_ranks_a_word_by_how_unusual_its_score_is() -> None:
    # word 0 scores high for every image; word 1 low everywhere but twice its usual for the query
    loo = np.array([[1.0, 0.1, 0.5], [1.0, 0.1, 0.3], [1.0, 0.2, 0.4], [1.0, 0.2, 0.2]])
    mean, spread = word_standards(loo)
    normalised = loo / loo.max(axis=1, keepdims=True)
    np.testing.assert_allclose(mean, normalised.mean(axis=0))
    np.testing.assert_allclose(spread, np.maximum(normalised.std(axis=0), 1e-6))  # word 0 never varies: the floor
    scores = np.array([[2.0, 0.6, 0.0]])
    z = standardize(scores, (mean, spread))
    np.testing.assert_allclose(z[0, :2], (scores[0, :2] / 2.0 - mean[:2]) / spread[:2])
    assert z[0, 2] == -np.inf  # no candidate carried it: never a tag
    frequency = np.array([50, 3, 10])
    assert top_words(scores[0], frequency, 1).tolist() == [0]  # Eq. 5 picks the frequent word
    assert top_words(z[0], frequency, 3, floor=-np.inf).tolist() == [1, 0]  # standardised: the rare one, then it


def index_rows(model: StoreModel) -> np.ndarray:
    return np.stack([model.index.reconstruct(int(i)) for i in model.ids])


def test_leave_one_out_scores_leave_each_image_out_of_its_own_candidates(built_store: Path) -> None:
    model = StoreModel.open(built_store)
    try:
        settings = ScoringSettings(score="standardized", k=4, temperature=0.2, frequency_power=0.5)
        loo = method(model).leave_one_out_scores(settings)
        R = index_rows(model)
        F = (1.0 - R @ R.T).astype(np.float32)
        np.fill_diagonal(F, np.inf)
        expected = cca_knn_scores(F, model.labels, 4, 0.2, model.frequency, 0.5)[0]
        np.testing.assert_allclose(loo, expected, rtol=1e-4, atol=1e-8)
        np.fill_diagonal(F, 0.0)  # with itself as a candidate an image would vote for its own tags
        assert not np.allclose(loo, cca_knn_scores(F, model.labels, 4, 0.2, model.frequency, 0.5)[0], rtol=1e-3)
        # a candidate pool: each image's 40 nearest others, as cross-validation's within_pool takes them
        pooled = method(model).leave_one_out_scores(ScoringSettings(k=4, temperature=0.2, frequency_power=0.5, depth=40))
        np.fill_diagonal(F, np.inf)
        expected = cca_knn_scores(within_pool(F, 40), model.labels, 4, 0.2, model.frequency, 0.5)[0]
        np.testing.assert_allclose(pooled, expected, rtol=1e-4, atol=1e-8)
        assert not np.allclose(pooled, loo, rtol=1e-3)
        # rows read back from the exact index are the rows the projection gives the cached features
        model.exact_index = False
        np.testing.assert_allclose(correlation_rows(model.training_rows(model.ids[:20])), R[:20], atol=1e-5)
    finally:
        model.close()


def test_cross_validation_computes_the_standards_the_store_does(built_store: Path) -> None:
    model = StoreModel.open(built_store)
    try:
        settings = ScoringSettings(score="standardized", k=5, temperature=0.1, frequency_power=0.0)
        U = index_rows(model)
        c = candidate(k=5, temperature=0.1, frequency_power=0.0, score="standardized")
        fold = FoldFit(U, U, U, np.arange(len(U)))
        mean, spread = _fold_standards([c], fold, model.labels, model.frequency)[c]
        standards = method(model).standards(settings)
        assert standards is not None
        stored_mean, stored_spread = standards
        np.testing.assert_allclose(mean, stored_mean, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(spread, stored_spread, rtol=1e-4, atol=1e-7)
    finally:
        model.close()


def expected_words(model: StoreModel, X: np.ndarray, settings: ScoringSettings) -> list[list[int]]:
    """Each query's words by hand: Eq. 5 over every training image, standardised by the model's standards."""
    T = model.project(X)
    D = (1.0 - correlation_rows(T) @ index_rows(model).T).astype(np.float32)
    scores = cca_knn_scores(D, model.labels, settings.k, settings.temperature, model.frequency,
                            settings.frequency_power)[0]
    standards = method(model).standards(settings)
    assert standards is not None
    z = standardize(scores, standards)
    return [top_words(row, model.frequency, 5, floor=-np.inf).tolist() for row in z]


@pytest.mark.slow
def test_a_standardized_store_saves_its_standards_and_annotates_with_them(synthetic: dict[str, Path], tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "z.annot"
    result = invoke("index", synthetic["train"], "--store", store, "--encoder", "fake", "--words", synthetic["words"],
                    "--k", "4", "--temperature", "0.2", "--frequency-power", "0", "--score", "standardized", "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["settings"]["scoring"]["score"] == "standardized"
    saved = np.load(store / manifest["standards"]["file"]["path"])
    model = StoreModel.open(store)
    try:
        settings = model.settings.scoring
        assert manifest["standards"]["key"] == standards_key(model, settings)
        fresh = word_standards(method(model).leave_one_out_scores(settings))
        np.testing.assert_allclose(saved["mean"], fresh[0])
        np.testing.assert_allclose(saved["spread"], fresh[1])

        X = model.feature_cache().load(model.ids[:12])
        X = X * np.random.default_rng(0).uniform(0.5, 1.5, X.shape).astype(np.float32)  # new images near the training ones
        words = [p.words.tolist() for p in model.predict(X, settings)]
        assert words == expected_words(model, X, settings)
        eq5 = settings.replace(score="eq5")
        assert words != [p.words.tolist() for p in model.predict(X, eq5)]  # the ranking is not Eq. 5's
        # other settings than the saved ones: computed on the spot, not read from the file
        other = settings.replace(k=2)
        assert [p.words.tolist() for p in model.predict(X, other)] == expected_words(model, X, other)
        # a corpus above the exact-search size scores each query's own pool: the same words
        monkeypatch.setattr(cca_knn_module, "EXACT_NEIGHBOURS", 10)
        method(model)._standards.clear()
        assert [p.words.tolist() for p in model.predict(X, settings)] == words
    finally:
        model.close()

    result = invoke("eval", synthetic["test"], "--store", store, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["params"]["score"] == "standardized"

    remove_images([str(read_corpus(synthetic["train"]).entries[0].path)], store)  # fewer images: new standards
    manifest = json.loads((store / "manifest.json").read_text())
    assert (store / manifest["standards"]["file"]["path"]).exists()
    model = StoreModel.open(store)
    try:
        assert manifest["standards"]["key"] == standards_key(model, model.settings.scoring)
        saved = np.load(store / manifest["standards"]["file"]["path"])
        np.testing.assert_allclose(saved["mean"],
                                   word_standards(method(model).leave_one_out_scores(model.settings.scoring))[0])
    finally:
        model.close()


def test_an_unknown_score_is_refused_and_nothing_is_overwritten(store: Path, synthetic: dict[str, Path]) -> None:
    before = (store / "manifest.json").read_text()
    result = invoke("index", synthetic["train"], "--store", store, "--encoder", "fake", "--words", synthetic["words"],
                    "--score", "zscore")
    assert result.exit_code == 2 and "--score must be one of eq5, standardized, standardized-held-out" in result.output
    assert (store / "manifest.json").read_text() == before
    result = invoke("eval", synthetic["test"], "--store", store, "--score", "zscore")
    assert result.exit_code == 2 and "--score must be one of" in result.output and "'zscore'" in result.output


def cv(f1: float, n_plus: float) -> CVResult:
    return CVResult(candidate(k=int(n_plus)), f1, 0.0, 0.0, n_plus, (f1,))


def test_choose_takes_the_highest_f1_or_the_most_words_at_a_stated_f1() -> None:
    results = [cv(0.47, 190), cv(0.46, 205), cv(0.462, 201), cv(0.44, 220)]
    assert choose(results) is results[0]
    assert choose(results, 0.46) is results[1]
    assert choose(results, 0.461) is results[2]
    assert choose(results, 0.50) is results[0]  # nothing reaches it: the highest F1
    tied = [cv(0.46, 205), cv(0.47, 205)]
    assert choose(tied, 0.45) is tied[1]


def test_ties_are_candidates_within_one_paired_standard_error_of_the_chosen() -> None:
    def folds(*f1: float) -> CVResult:
        return CVResult(candidate(k=len(f1)), float(np.mean(f1)), 0.0, 0.0, 0.0, f1)

    best = folds(0.50, 0.46, 0.48, 0.52, 0.44)  # spread over folds: 0.0316; standard error 0.0141
    assert standard_error(best) == pytest.approx(np.std([0.50, 0.46, 0.48, 0.52, 0.44], ddof=1) / np.sqrt(5))
    shifted = folds(0.49, 0.45, 0.47, 0.51, 0.43)  # behind on every fold by 0.01: the paired spread is 0
    noisy = folds(0.51, 0.44, 0.47, 0.53, 0.43)  # behind by 0.004 on average; the differences' se is 0.006
    ahead = folds(0.52, 0.47, 0.48, 0.52, 0.45)
    far = folds(0.40, 0.40, 0.40, 0.40, 0.40)
    gap = np.subtract(best.fold_f1, noisy.fold_f1)
    assert gap.mean() <= gap.std(ddof=1) / np.sqrt(5)
    tied = ties([best, shifted, noisy, ahead, far], best)
    assert noisy in tied and ahead in tied  # the paired comparison, not the folds' own spread, decides
    assert shifted not in tied and far not in tied and best not in tied
    assert ties([best], best) == [] and standard_error(folds(0.5)) == 0.0


def test_standardized_candidates_are_cross_validated_on_their_own_scores() -> None:
    from annot.fitting.cv import cross_validate

    rng = np.random.default_rng(0)
    n, vocabulary = 150, 8
    labels = rng.random((n, vocabulary)) < np.linspace(0.05, 0.6, vocabulary)  # frequent and rare words
    labels[np.arange(n), rng.integers(0, vocabulary, n)] = True
    X = (labels @ rng.normal(size=(vocabulary, 12)) + 0.7 * rng.normal(size=(n, 12))).astype(np.float32)
    E = rng.normal(size=(vocabulary, 5)).astype(np.float32)
    candidates = [candidate(text="bv", k=8, temperature=0.2, score=s) for s in ("eq5", "standardized")]
    results = {r.candidate.scoring.score: r for r in cross_validate(X, labels, E, np.ones(vocabulary, bool), candidates, folds=3)}
    assert results["standardized"].fold_f1 != results["eq5"].fold_f1
    # on these labels the rare words are recalled more often once each word is measured against its own scores
    assert results["standardized"].n_plus >= results["eq5"].n_plus
    scored = score_queries("cca-knn", np.zeros((1, n), np.float32), labels, labels.sum(0), 5, 8, 0.2,
                           standards=(np.zeros(vocabulary), np.ones(vocabulary)))
    assert len(scored[0].words) == 5


def test_held_out_standards_pool_the_hold_outs_and_leave_out_the_fold_s_own_images() -> None:
    first = (np.array([0, 2, 5]), np.array([[2.0, 1.0, 0.0], [1.0, 1.0, 0.5], [4.0, 0.0, 1.0]]))
    second = (np.array([2, 7]), np.array([[1.0, 0.5, 0.5], [0.0, 3.0, 3.0]]))
    normalised = np.array([[1.0, 0.5, 0.0], [1.0, 1.0, 0.5], [1.0, 0.0, 0.25], [1.0, 0.5, 0.5], [0.0, 1.0, 1.0]])
    mean, spread = held_out_standards([first, second])
    np.testing.assert_allclose(mean, normalised.mean(axis=0))
    np.testing.assert_allclose(spread, normalised.std(axis=0))
    mean, spread = held_out_standards([first, second], leave=np.array([2, 9]))  # image 2 is in both: out of both
    kept = normalised[[0, 2, 4]]
    np.testing.assert_allclose(mean, kept.mean(axis=0))
    np.testing.assert_allclose(spread, np.maximum(kept.std(axis=0), 1e-6))
    with pytest.raises(ValueError, match="at least one held-out image"):
        held_out_standards([second], leave=np.array([2, 7]))


def test_held_out_candidates_are_standardised_against_the_other_hold_outs() -> None:
    from annot.fitting.cv import cross_validate
    from annot.metrics import per_word_metrics, predictions_matrix, summarize

    rng = np.random.default_rng(1)
    n, vocabulary = 180, 8
    labels = rng.random((n, vocabulary)) < np.linspace(0.05, 0.6, vocabulary)
    labels[np.arange(n), rng.integers(0, vocabulary, n)] = True
    X = (labels @ rng.normal(size=(vocabulary, 12)) + 0.7 * rng.normal(size=(n, 12))).astype(np.float32)
    E = rng.normal(size=(vocabulary, 5)).astype(np.float32)
    candidates = [candidate(text="bv", k=8, temperature=0.2, score=s) for s in ("standardized", "standardized-held-out")]
    collect: dict = {}  # type: ignore[type-arg]
    results = {r.candidate.scoring.score: r for r in cross_validate(X, labels, E, np.ones(vocabulary, bool), candidates, folds=4,
                                                            design="cover", holdout=0.2, collect=collect)}
    held_out = results["standardized-held-out"]
    assert held_out.fold_f1 != results["standardized"].fold_f1 and len(held_out.fold_f1) == 4
    parts = collect[candidates[1]]
    assert list(collect) == [candidates[1]] and len(parts) == 4
    assert len(np.intersect1d(parts[0][0], parts[1][0])) > 0  # cover hold-outs share images: leaving them out matters
    for f, (held, raw) in enumerate(parts):
        fitting = np.setdiff1d(np.arange(n), held)
        frequency = labels[fitting].sum(axis=0)
        # by hand: each fold's standards from the other folds' images it does not hold, never from its own
        pooled = np.concatenate([(s / s.max(axis=1, keepdims=True))[~np.isin(rows, held)]
                                 for g, (rows, s) in enumerate(parts) if g != f])
        z = np.where(raw > 0, (raw / raw.max(axis=1, keepdims=True) - pooled.mean(0)) / np.maximum(pooled.std(0), 1e-6),
                     -np.inf)
        predicted = [top_words(row, frequency, 5, floor=-np.inf) for row in z]
        s = summarize(per_word_metrics(labels[held], predictions_matrix(predicted, vocabulary)), len(held))
        assert held_out.fold_f1[f] == pytest.approx(s.f1)
        assert held_out.fold_n_plus[f] == s.n_plus


def held_out_by_hand(model: StoreModel, settings):  # type: ignore[no-untyped-def]
    """The store's held-out standards computed independently: its settings as a candidate, cross-validated on the
    cover hold-outs of its indexed images."""
    from annot.features.words import load_word_vectors
    from annot.fitting.cv import HELD_OUT_FOLDS, HELD_OUT_SIZE, cross_validate
    from annot.fitting.fit import load_training_set

    training = load_training_set(model.store, model.feature_cache(), model.ids, tuple(model.vocabulary),
                                 tuple(model.tag_ids), load_word_vectors(model.manifest.words.source))
    collect: dict = {}  # type: ignore[type-arg]
    cross_validate(training.X, training.labels, training.E, training.has_vector, [settings], folds=HELD_OUT_FOLDS,
                   design="cover", holdout=HELD_OUT_SIZE, collect=collect)
    return held_out_standards(collect[settings]), training


@pytest.mark.slow
def test_a_held_out_standardized_store_fits_its_projection_per_hold_out(synthetic: dict[str, Path], tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "h.annot"
    result = invoke("index", synthetic["train"], "--store", store, "--encoder", "fake", "--words", synthetic["words"],
                    "--k", "4", "--temperature", "0.2", "--frequency-power", "0", "--score", "standardized-held-out",
                    "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads((store / "manifest.json").read_text())
    saved = np.load(store / manifest["standards"]["file"]["path"])
    model = StoreModel.open(store)
    try:
        settings = model.settings.scoring
        assert settings.score == "standardized-held-out" and manifest["standards"]["key"] == standards_key(model, settings)
        assert json.loads(manifest["standards"]["key"])["standards"] == "held-out"
        c = candidate(text="w2v+bv", normalization="none", reg=0.3, k=4, temperature=0.2, frequency_power=0.0,
                      score="standardized-held-out")
        (mean, spread), training = held_out_by_hand(model, c)
        np.testing.assert_allclose(saved["mean"], mean, rtol=1e-6)
        np.testing.assert_allclose(saved["spread"], spread, rtol=1e-6)
        loo = word_standards(method(model).leave_one_out_scores(settings))
        assert not np.allclose(saved["mean"], loo[0])  # not the leave-one-out standards
        assert [p.words.tolist() for p in model.predict(training.X[:8], settings)] != [
            p.words.tolist() for p in model.predict(training.X[:8], settings.replace(score=Score.STANDARDIZED))]
    finally:
        model.close()
    result = invoke("eval", synthetic["test"], "--store", store, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["params"]["score"] == "standardized-held-out"
    result = invoke("eval", synthetic["test"], "--store", store, "--k", "2")  # no held-out standards for K 2
    assert result.exit_code == 1 and "held-out standards are saved for the store's own settings only" in result.output
    assert len(result.output.strip().splitlines()) == 1

    # past the size the hold-out fits are made for: refused before anything changes, by index and by add
    from annot.indexer import build as build_module
    from annot.indexer.grow import add_images

    monkeypatch.setattr(build_module, "HELD_OUT_LINEAR_LIMIT", 100)
    result = invoke("index", synthetic["train"], "--store", tmp_path / "big.annot", "--encoder", "fake", "--words",
                    synthetic["words"], "--score", "standardized-held-out")
    assert result.exit_code != 0 and "at most 100 training images, not 160" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "big.annot").exists()
    before = (store / "manifest.json").read_text()
    count = "SELECT split, count(*) AS n FROM images GROUP BY split ORDER BY split"
    rows = invoke("sql", count, "--store", store, "--json").output
    with pytest.raises(AnnotError, match="at most 100 training images"):
        add_images(synthetic["test"], store)
    assert (store / "manifest.json").read_text() == before
    assert invoke("sql", count, "--store", store, "--json").output == rows
    monkeypatch.undo()

    remove_images([str(read_corpus(synthetic["train"]).entries[0].path)], store)  # fewer images: new standards
    manifest = json.loads((store / "manifest.json").read_text())
    model = StoreModel.open(store)
    try:
        assert manifest["standards"]["key"] == standards_key(model, model.settings.scoring)
        assert not np.allclose(np.load(store / manifest["standards"]["file"]["path"])["mean"], saved["mean"])
    finally:
        model.close()


@pytest.mark.slow
def test_held_out_standards_refit_the_projection_as_the_store_fits_it(synthetic: dict[str, Path], tmp_path: Path) -> None:
    """With Nyström landmarks or another text-kernel width, each hold-out's projection is fitted as the store's is
    (cross-validation fits the model the store would): the saved standards are those of that fit."""
    for flags, settings in ((("--landmarks", "50"), {"landmarks": "50"}),
                            (("--text-kernel", "rbf", "--text-gamma-scale", "2"), {"text_kernel": "rbf",
                                                                                    "text_gamma_scale": 2.0}),
                            (("--gamma-scale", "2"), {"gamma_scale": 2.0})):
        store = tmp_path / f"k{len(flags)}{flags[-1]}.annot"
        result = invoke("index", synthetic["train"], "--store", store, "--encoder", "fake", "--words",
                        synthetic["words"], "--projection", "kcca", "--score", "standardized-held-out", *flags)
        assert result.exit_code == 0, result.output
        manifest = json.loads((store / "manifest.json").read_text())
        saved = np.load(store / manifest["standards"]["file"]["path"])
        assert saved["spread"].shape == (len(manifest["vocabulary"]["words"]),) and (saved["spread"] > 1e-6).all()
        model = StoreModel.open(store)
        try:
            c = candidate(projection="kcca", score="standardized-held-out", **settings)
            assert c.projection == model.settings.projection and c.scoring == model.settings.scoring
            (mean, _), _ = held_out_by_hand(model, c)
            np.testing.assert_allclose(saved["mean"], mean, rtol=1e-6)
        finally:
            model.close()
        result = invoke("eval", synthetic["test"], "--store", store, "--json")
        assert result.exit_code == 0 and json.loads(result.output)["params"]["score"] == "standardized-held-out"
