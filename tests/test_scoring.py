"""Tag scoring: CCA-KNN's semantic neighbours against a brute-force reading of the paper, Eq. 5, nn transfer."""

from __future__ import annotations

import numpy as np

from annot.retrieval.scoring import cca_knn_pooled, cca_knn_scores, nn_transfer, score_queries, semantic_neighbours


def brute_force_neighbours(d: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    chosen = np.zeros(len(d), bool)
    for w in range(labels.shape[1]):
        members = np.flatnonzero(labels[:, w])
        chosen[members[np.argsort(d[members], kind="stable")[:k]]] = True
    return chosen


def test_semantic_neighbours_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random((300, 20)) < 0.1
    D = rng.random((7, 300)).astype(np.float32)  # distinct distances: no ties
    for k in (1, 3, 10):
        chosen = semantic_neighbours(D, labels, k)
        for q in range(7):
            np.testing.assert_array_equal(chosen[q], brute_force_neighbours(D[q], labels, k))


def test_eq5_scores_by_hand() -> None:
    # 4 training images, 3 words; k = 1 chooses image 0 (nearest with w0), image 1 (nearest with w1, w2)
    labels = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1]], bool)
    D = np.array([[0.2, 0.3, 0.5, 0.9]], np.float32)
    scores, chosen, weights = cca_knn_scores(D, labels, k=1, temperature=1.0)
    np.testing.assert_array_equal(chosen[0], [True, True, False, False])
    e = np.exp(-(D[0] - 0.2))
    np.testing.assert_allclose(scores[0], [e[0], e[1], e[1]])
    np.testing.assert_allclose(weights[0], e)


def test_unretrieved_candidates_never_vote() -> None:
    labels = np.array([[1, 0], [0, 1]], bool)
    D = np.array([[0.1, np.inf]], np.float32)
    scores, chosen, _ = cca_knn_scores(D, labels, k=1, temperature=0.5)
    assert chosen[0].tolist() == [True, False]
    assert scores[0, 1] == 0.0


def test_nn_transfer_orders_by_training_frequency_and_continues() -> None:
    labels = np.array([[0, 1, 1, 0], [1, 1, 0, 1]], bool)
    frequency = np.array([5, 1, 9, 2])
    assert nn_transfer(np.array([0, 1]), labels, frequency, 3) == [(2, 0), (1, 0), (0, 1)]
    assert nn_transfer(np.array([1, 0]), labels, frequency, 10) == [(0, 1), (3, 1), (1, 1), (2, 0)]


def test_score_queries_returns_n_tags_with_their_voters() -> None:
    rng = np.random.default_rng(1)
    labels = rng.random((50, 12)) < 0.2
    D = rng.random((3, 50)).astype(np.float32)
    frequency = labels.sum(0)
    for method in ("cca-knn", "nn"):
        for s in score_queries(method, D, labels, frequency, n_tags=5, k=2, temperature=0.1):
            assert len(s.words) == 5 and len(set(s.words.tolist())) == 5
            assert np.all(np.diff(s.scores) <= 1e-12)
            for w, voters in zip(s.words, s.voters, strict=True):
                assert len(voters) >= 1 and labels[voters, w].all()


def test_pooled_cca_knn_equals_the_dense_scores_on_each_pool() -> None:
    rng = np.random.default_rng(5)
    n, V, L, nq = 300, 12, 80, 6
    labels = rng.random((n, V)) < 0.15
    frequency = labels.sum(axis=0).astype(np.int64) + 3  # a global frequency, not the pool's
    D_all = rng.random((nq, n)).astype(np.float32) * 2
    order = np.argsort(D_all, axis=1)[:, :L]  # each query's own pool, nearest first
    D_pool = np.take_along_axis(D_all, order, 1)
    D_pool[0, -5:] = np.inf  # a pool cut short (an approximate index returned fewer)
    from scipy import sparse

    pooled, chosen, weights = cca_knn_pooled(D_pool, order, sparse.csr_matrix(labels), 3, 0.1, frequency, 0.5)
    for q in range(nq):
        dense, dense_chosen, _ = cca_knn_scores(D_pool[q][None], labels[order[q]], 3, 0.1, frequency, 0.5)
        np.testing.assert_allclose(pooled[q], dense[0], rtol=1e-9)
        np.testing.assert_array_equal(chosen[q], dense_chosen[0])
    assert not chosen[0, -5:].any() and (weights[0, -5:] == 0).all()


def test_both_scorers_agree_over_whole_pools_and_take_k_per_group() -> None:
    from scipy import sparse

    rng = np.random.default_rng(2)
    labels = rng.random((200, 5)) < 0.2
    D = np.sort(rng.random((4, 200)).astype(np.float32), axis=1)
    order = np.tile(np.arange(200), (4, 1))  # each pool: every image, in distance order
    dense, dense_chosen, _ = cca_knn_scores(D, labels, 6, 0.1)
    pooled, chosen, _ = cca_knn_pooled(D, order, sparse.csr_matrix(labels), 6, 0.1, labels.sum(axis=0))
    np.testing.assert_allclose(pooled, dense, rtol=1e-9)
    np.testing.assert_array_equal(chosen, dense_chosen)
    for q in range(4):
        for w in range(5):  # a tag group contributes at least its 6 nearest members (the union may hold more)
            members = np.flatnonzero(labels[:, w])
            assert dense_chosen[q, members[:6]].all()
