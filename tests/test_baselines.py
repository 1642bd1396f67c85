"""The baselines of Table 1 as scorers: each checked against its definition on small planted data."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from annot.errors import AnnotError
from annot.methods.baselines import BASELINES, TrainingData
from annot.methods.baselines.base import distance_scales, l1_distances, sq_l2_distances
from annot.methods.baselines.metric import TwoPassKNNML, jaccard, learn_dimension_weights
from annot.methods.baselines.neighbours import JEC, MBRM, Frequency, TwoPassKNN
from annot.methods.baselines.svm import SVMDMBRM
from annot.methods.baselines.tagprop import TagProp
from annot.retrieval.scoring import cca_knn_scores

CLUSTER_TAGS = [(0, 1), (2, 3), (4, 5, 0), (6, 7), (8, 9), (10, 11, 2)]


def planted(n_per: int = 30, p: int = 16, noise: float = 0.25, seed: int = 0
            ) -> tuple[TrainingData, NDArray[np.float32], list[tuple[int, ...]]]:
    """Clusters of unit vectors, each cluster with its own tags; plus 2 held-out queries per cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(CLUSTER_TAGS), p))
    X, labels, Q, qtags = [], [], [], []
    for c, tags in enumerate(CLUSTER_TAGS):
        for i in range(n_per + 2):
            x = centres[c] + noise * rng.normal(size=p)
            x /= np.linalg.norm(x)
            row = np.zeros(12, bool)
            row[list(tags)] = True
            if i < 2:
                Q.append(x)
                qtags.append(tags)
            else:
                row[rng.integers(0, 12)] |= rng.random() < 0.1  # a little label noise
                X.append(x)
                labels.append(row)
    return TrainingData(np.array(X, np.float32), np.array(labels)), np.array(Q, np.float32), qtags


@pytest.fixture(scope="module")
def data() -> tuple[TrainingData, NDArray[np.float32], list[tuple[int, ...]]]:
    return planted()


def hits(scored: list, qtags: list[tuple[int, ...]]) -> float:  # type: ignore[type-arg]
    """Fraction of the planted tags found among each query's words (5 of 12, the evaluation protocol's n)."""
    found = [len(set(s.words.tolist()) & set(t)) / len(t) for s, t in zip(scored, qtags, strict=True)]
    return float(np.mean(found))


def test_distances_match_their_definitions() -> None:
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(5, 7)).astype(np.float32), rng.normal(size=(9, 7)).astype(np.float32)
    np.testing.assert_allclose(l1_distances(A, B), np.abs(A[:, None] - B[None]).sum(-1), rtol=1e-5)
    np.testing.assert_allclose(sq_l2_distances(A, B), ((A[:, None] - B[None]) ** 2).sum(-1), rtol=1e-4, atol=1e-4)
    scales = distance_scales(B)
    assert scales.shape == (2,) and (scales > 0).all()


def test_frequency_prior_ignores_the_image(data) -> None:  # type: ignore[no-untyped-def]
    train, Q, _ = data
    b = Frequency(train)
    b.fit()
    scored, _ = b.annotate(Q, 5)
    expected = np.argsort(-train.frequency, kind="stable")[:5]
    for s in scored:
        np.testing.assert_array_equal(s.words, expected)
        assert (np.diff(s.scores) <= 0).all()


def test_jec_transfers_the_nearest_neighbours_tags_then_by_cooccurrence_and_local_frequency() -> None:
    # training rows: 0 is nearest to the query; 1..4 are the next neighbours; 5.. far away
    labels = np.zeros((8, 6), bool)
    labels[0, [0, 1]] = True              # nearest: words 0 and 1
    labels[1, [2, 3]] = True
    labels[2, [2, 4]] = True
    labels[3, [3]] = True
    labels[4, [5]] = True
    labels[5:, [0, 2]] = True             # word 2 co-occurs with word 0 in training; word 3 never does
    labels[6, 1] = True
    X = np.eye(8, 8, dtype=np.float32)
    q = np.zeros((1, 8), np.float32)
    b = JEC(TrainingData(X, labels))
    b.fit()
    d = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 1.0, 1.0], np.float32)
    s = b.transfer(d, 4)
    # stage 1: words 0 (frequency 4) then 1 (frequency 2); stage 2: word 2 (co-occurs with 0, local count 2) first
    assert s.words[:2].tolist() == [0, 1]
    assert s.words[2] == 2
    assert s.words[3] in (3, 4, 5) and s.scores[2] > s.scores[3]
    assert (np.diff(s.scores) <= 0).all()
    assert s.voters[0].tolist() == [0] and sorted(s.voters[2].tolist()) == [1, 2]
    _, D = b.annotate(q, 4)
    assert D is not None and D.shape == (1, 8)


def test_two_pass_knn_is_the_group_wise_neighbourhood_vote(data) -> None:  # type: ignore[no-untyped-def]
    train, Q, qtags = data
    b = TwoPassKNN(train)
    b.fit()
    assert b.hyper["K1"] in TwoPassKNN.K1_GRID and b.hyper["tau"] in TwoPassKNN.TAU_GRID
    assert 0 < b.validation["f1"] <= 1
    scored, D = b.annotate(Q, 5)
    assert D is not None
    scores, _, _ = cca_knn_scores(D, train.labels, int(b.hyper["K1"]), float(b.hyper["tau"]))
    for q, s in enumerate(scored):
        np.testing.assert_allclose(s.scores, scores[q, s.words])
        for w, voters in zip(s.words, s.voters, strict=True):  # at most K1 voters from each word's group
            assert len(voters) >= 1 and train.labels[voters, w].all()
    assert hits(scored, qtags) > 0.9


def test_mbrm_scores_are_the_relevance_model(data) -> None:  # type: ignore[no-untyped-def]
    train, Q, qtags = data
    b = MBRM(train)
    b.fit()
    beta, mu = float(b.hyper["beta"]), float(b.hyper["mu"])
    D = sq_l2_distances(Q, train.X)
    got = b.scores(D, beta, mu)
    N, N_w = len(train.labels), train.frequency
    P_V = (mu * train.labels + N_w[None, :]) / (mu + N)  # smoothed Bernoulli, per training image
    expected = np.exp(-D.astype(np.float64) / beta) @ P_V / N
    ratio = got / expected
    np.testing.assert_allclose(ratio, ratio[:, :1].repeat(ratio.shape[1], 1), rtol=1e-6)  # equal up to a per-query factor
    scored, _ = b.annotate(Q, 5)
    assert hits(scored, qtags) > 0.9


@pytest.mark.slow
def test_metric_learning_weights_the_informative_dimensions() -> None:
    rng = np.random.default_rng(3)
    n, informative = 240, 6
    groups = rng.integers(0, 6, n)
    signal = np.eye(6)[groups] * 1.0 + 0.1 * rng.normal(size=(n, informative))
    noise = 1.0 * rng.normal(size=(n, 10))
    X = np.hstack([signal, noise]).astype(np.float32)
    labels = np.eye(6, dtype=bool)[groups]
    w, losses = learn_dimension_weights(X, labels, epochs=80)
    assert losses[-1] < losses[0]
    assert w[:informative].mean() > 3 * w[informative:].mean()
    assert jaccard(labels[:1], labels[:1])[0] == 1.0


@pytest.mark.slow
def test_two_pass_knn_ml_round_trips_its_weights(data) -> None:  # type: ignore[no-untyped-def]
    train, Q, qtags = data
    b = TwoPassKNNML(train)
    b.fit()
    assert b.hyper["loss_last"] < b.hyper["loss_first"]
    again = TwoPassKNNML(train)
    again.restore(b.params(), b.arrays())
    s1, _ = b.annotate(Q, 5)
    s2, _ = again.annotate(Q, 5)
    for a, c in zip(s1, s2, strict=True):
        np.testing.assert_array_equal(a.words, c.words)
    assert hits(s1, qtags) > 0.9


@pytest.mark.slow
def test_tagprop_learns_weights_and_predicts_planted_tags(data) -> None:  # type: ignore[no-untyped-def]
    train, Q, qtags = data
    b = TagProp(train)
    b.fit()
    assert b.hyper["variant"] in ("distance", "rank")
    assert (b.theta >= 0).all()
    scored, D = b.annotate(Q, 5)
    assert D is not None and (np.isfinite(D).sum(axis=1) == b.hyper["K"]).all()  # only the K neighbours vote
    for s in scored:
        assert ((s.scores > 0) & (s.scores <= 1)).all()  # probabilities σ(α x + β)
        assert abs(s.weights.sum() - 1.0) < 1e-6          # π over the K neighbours sums to one
    assert hits(scored, qtags) > 0.9
    again = TagProp(train)
    again.restore(b.params(), b.arrays())
    np.testing.assert_array_equal(again.annotate(Q, 5)[0][0].words, scored[0].words)


@pytest.mark.slow
def test_svm_dmbrm_combines_svm_and_relevance_model(data) -> None:  # type: ignore[no-untyped-def]
    train, Q, qtags = data
    b = SVMDMBRM(train)
    b.fit()
    assert b.hyper["lambda"] in (0.0, 0.25, 0.5, 0.75, 1.0) and b.hyper["C"] in (0.1, 1.0)
    assert b.coef.shape == (12, train.X.shape[1]) and b.platt.shape == (12, 2)
    assert (b.platt[train.frequency > 3, 0] > 0).all()  # a larger margin means a likelier word
    scored, _ = b.annotate(Q, 5)
    assert hits(scored, qtags) > 0.9
    again = SVMDMBRM(train)
    again.restore(b.params(), b.arrays())
    np.testing.assert_array_equal(again.annotate(Q, 5)[0][1].words, scored[1].words)


@pytest.mark.slow
def test_every_baseline_beats_the_frequency_prior(data) -> None:  # type: ignore[no-untyped-def]
    train, Q, qtags = data
    floor = Frequency(train)
    floor.fit()
    base = hits(floor.annotate(Q, 5)[0], qtags)
    for name, cls in BASELINES.items():
        if name == "freq":
            continue
        b = cls(train)
        b.fit()
        assert hits(b.annotate(Q, 5)[0], qtags) > base + 0.3, name


def test_a_method_without_enough_training_images_says_why() -> None:
    X = np.eye(4, dtype=np.float32)[:2]
    labels = np.array([[True, False], [False, False]])  # one tagged image
    with pytest.raises(AnnotError, match="svm-dmbrm needs at least 6 tagged training images; the store has 1"):
        SVMDMBRM(TrainingData(X, labels))
    with pytest.raises(AnnotError, match="2pknn needs at least 2"):
        TwoPassKNN(TrainingData(X, labels))
    Frequency(TrainingData(X, labels)).fit()  # the prior needs one
