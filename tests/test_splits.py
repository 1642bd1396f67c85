"""Cross-validation splits: plain k-fold, and hold-outs that hold every word as the benchmarks' test splits do."""

from __future__ import annotations

import numpy as np
import pytest

from annot.fitting.cv import cross_validate
from annot.fitting.splits import cv_splits
from annot.settings import BuildSettings, ProjectionSettings, ScoringSettings, TextSettings


def long_tailed_labels(n: int = 600, V: int = 60, seed: int = 0) -> np.ndarray:
    """Zipf-like tags: a few frequent words, many with two to five images (like Corel-5k's tail)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, V), bool)
    counts = np.maximum(2, (n * 0.4 / np.arange(1, V + 1) ** 1.1).astype(int))
    for w, c in enumerate(counts):
        labels[rng.choice(n, c, replace=False), w] = True
    labels[~labels.any(1), 0] = True
    return labels


def test_random_folds_partition_the_images() -> None:
    labels = long_tailed_labels()
    splits = cv_splits(labels, 5, "random")
    held = np.concatenate([h for h, _ in splits])
    assert sorted(held.tolist()) == list(range(len(labels)))  # each image held out exactly once
    for h, fit in splits:
        assert not set(h) & set(fit) and len(h) + len(fit) == len(labels)
        assert abs(len(h) - len(labels) / 5) <= 1


def test_cover_holds_every_word_once_and_keeps_one_to_fit() -> None:
    labels = long_tailed_labels()
    frequency = labels.sum(0)
    splits = cv_splits(labels, 4, "cover", holdout=0.1, seed=1)
    for h, fit in splits:
        assert len(h) == 60 and not set(h) & set(fit) and len(h) + len(fit) == len(labels)
        assert (labels[fit].sum(0) >= 1).all()  # no word loses all its fitting images
        assert (labels[h].sum(0) >= 1)[frequency >= 2].all()  # every word that can be held out is
    assert len({tuple(h) for h, _ in splits}) == 4  # different hold-outs
    again = cv_splits(labels, 4, "cover", holdout=0.1, seed=1)
    assert all((a[0] == b[0]).all() for a, b in zip(splits, again))  # deterministic for a seed

    # random folds of the same size leave rare words out of most hold-outs; that is what cover corrects
    random_present = [(labels[h].sum(0) > 0).sum() for h, _ in cv_splits(labels, 10, "random")]
    assert max(random_present) < (frequency >= 2).sum()


def test_bad_designs_are_refused() -> None:
    labels = long_tailed_labels()
    with pytest.raises(ValueError, match="design"):
        cv_splits(labels, 5, "stratified")
    with pytest.raises(ValueError, match="holdout"):
        cv_splits(labels, 5, "cover", holdout=1.5)
    with pytest.raises(ValueError, match="folds"):
        cv_splits(labels, 1)


def test_cross_validation_on_cover_hold_outs_scores_the_held_words() -> None:
    """On cover hold-outs every word of the tail is in the held-out truth, so the mean is over (nearly) all words
    and N+ can count them; on random folds of the same data the rare words drop out of the means."""
    labels = long_tailed_labels(n=400, V=40)
    rng = np.random.default_rng(2)
    X = (labels @ rng.standard_normal((40, 30)) + 0.1 * rng.standard_normal((400, 30))).astype(np.float32)
    E, has_vector = rng.standard_normal((40, 8)).astype(np.float32), np.ones(40, bool)
    candidates = [BuildSettings(text=TextSettings(view="bv"), projection=ProjectionSettings(normalization="none"),
                                scoring=ScoringSettings(k=3, temperature=0.1, frequency_power=a)) for a in (0.0, 0.5)]
    cover = {r.candidate.scoring.frequency_power: r for r in cross_validate(X, labels, E, has_vector, candidates, folds=3,
                                                                    design="cover", holdout=0.1)}
    # the features are the tags themselves, so a frequency-divided score recalls the rare words the plain one does
    # not; random folds (3-fold: N+ 33 of 40 here) cannot reach 36, since their rare words are mostly not held out
    assert cover[0.5].n_plus > cover[0.0].n_plus
    assert cover[0.5].n_plus > 0.9 * 40 and all(0 < r.f1 <= 1 for r in cover.values())
