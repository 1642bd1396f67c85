"""Per-word metrics: a hand-worked case, the undefined-recall rule, and scikit-learn on real label matrices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from annot.metrics import per_word_metrics, predictions_matrix, summarize

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_hand_worked_example() -> None:
    truth = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 1, 1]], bool)
    predicted = np.array([[1, 0, 1, 0], [1, 0, 1, 0], [1, 0, 0, 0]], bool)
    m = per_word_metrics(truth, predicted)
    np.testing.assert_array_equal(m.n_correct, [2, 0, 1, 0])
    np.testing.assert_allclose(m.precision, [2 / 3, 0, 1 / 2, 0])  # never-predicted words count as 0
    np.testing.assert_allclose(m.recall, [1, 0, 1 / 2, 0])
    s = summarize(m, n_images=3)
    assert s.precision == pytest.approx((2 / 3 + 1 / 2) / 4)
    assert s.recall == pytest.approx(1.5 / 4)
    assert s.f1 == pytest.approx(2 * s.precision * s.recall / (s.precision + s.recall))
    assert s.n_plus == 2 and s.n_words == 4 and s.n_words_without_truth == 0


def test_words_without_truth_are_left_out_and_counted() -> None:
    truth = np.array([[1, 0, 0], [1, 0, 0]], bool)
    predicted = np.array([[1, 1, 0], [0, 1, 0]], bool)
    s = summarize(per_word_metrics(truth, predicted))
    assert s.n_words == 1 and s.n_words_without_truth == 2
    assert s.precision == pytest.approx(1.0) and s.recall == pytest.approx(0.5)


def test_predictions_matrix_and_shape_check() -> None:
    m = predictions_matrix([np.array([0, 2]), np.array([], np.int64)], 3)
    np.testing.assert_array_equal(m, [[1, 0, 1], [0, 0, 0]])
    with pytest.raises(ValueError, match="same shape"):
        per_word_metrics(np.zeros((2, 3), bool), np.zeros((2, 4), bool))


def _labels(dataset: str, split: str) -> tuple[np.ndarray, list[str]]:
    words = (DATA / dataset / "vocabulary.txt").read_text().split()
    col = {w: i for i, w in enumerate(words)}
    rows = [json.loads(line) for line in (DATA / dataset / f"{split}.jsonl").read_text().splitlines()]
    labels = np.zeros((len(rows), len(words)), bool)
    for i, row in enumerate(rows):
        labels[i, [col[t] for t in row["tags"]]] = True
    return labels, words


@pytest.mark.parametrize("dataset", ["corel5k", "espgame", "iaprtc12"])
def test_agrees_with_scikit_learn_on_real_labels(dataset: str) -> None:
    """The label-frequency prior (5 most frequent training words for every image) scored both ways."""
    from sklearn.metrics import precision_recall_fscore_support

    train, _ = _labels(dataset, "train")
    test, words = _labels(dataset, "test")
    prior = np.argsort(-train.sum(0), kind="stable")[:5]
    predicted = predictions_matrix([prior] * len(test), len(words))
    ours = per_word_metrics(test, predicted)
    p, r, _, support = precision_recall_fscore_support(test, predicted, average=None, zero_division=0)
    defined = support > 0
    np.testing.assert_allclose(ours.precision, p)
    np.testing.assert_allclose(ours.recall[defined], r[defined])
    s = summarize(ours)
    assert s.precision == pytest.approx(p[defined].mean())
    assert s.recall == pytest.approx(r[defined].mean())
    assert s.n_plus == int(((r > 0) & defined).sum())
    assert s.n_plus <= 5  # a constant prediction can recall at most its 5 words
