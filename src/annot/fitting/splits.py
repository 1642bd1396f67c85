"""How the training images are split for cross-validation.

Two designs:

- ``random``: k folds of a random permutation, each held out once (plain k-fold cross-validation). It estimates how
  the tags of a random new image score, which is what a user's own collection needs.
- ``cover``: k random hold-outs built the way the standard annotation benchmarks build their test split (Corel-5k,
  ESP-Game, IAPRTC-12: every vocabulary word occurs in the test truth and in the training set). Each hold-out first
  takes one image of every word, rarest first, that has at least two training images, then fills up at random to
  its size; an image is only taken if every one of its words keeps at least one image on the fitting side.

Why ``cover`` exists: per-word metrics average over the words present in the held-out truth. A random fold of
Corel-5k's training set holds a rare word in proportion to its frequency (or not at all), while the benchmark's test
split holds every rare word at least once: the 27 words with at most five training images have 0.33 test occurrences
per training occurrence, against 0.11 over all words. So random folds under-weight the rare words the benchmark's
N+ and mean recall count, and choose settings that favour frequent words. Cover hold-outs of the test split's size
reproduce the benchmark's word mix from the training labels alone.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

DESIGNS = ("random", "cover")

Split = tuple[NDArray[np.int64], NDArray[np.int64]]  # (held-out rows, fitting rows), each ascending


def check_design(folds: int, design: str, holdout: float) -> None:
    """Refuse settings no split can be made from (ValueError, the message names the setting)."""
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    if design not in DESIGNS:
        raise ValueError(f"cv must be one of {', '.join(DESIGNS)} (the cross-validation design), got {design!r}")
    if design == "cover" and not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be a fraction in (0, 1), got {holdout}")


def cv_splits(labels: NDArray[np.bool_], folds: int, design: str = "random", holdout: float = 0.1,
              seed: int = 0) -> list[Split]:
    """``folds`` (held-out, fitting) row splits of the (n × V) 0/1 training tags. ``holdout`` is the held-out size as
    a fraction of the training images, used by ``cover`` only (k-fold holds out 1/k)."""
    check_design(folds, design, holdout)
    n = len(labels)
    rng = np.random.default_rng(seed)
    if design == "random":
        parts = np.array_split(rng.permutation(n), folds)
        return [(np.sort(parts[f]), np.sort(np.concatenate([parts[g] for g in range(folds) if g != f])))
                for f in range(folds)]
    size = max(1, round(holdout * n))
    return [_covering(np.asarray(labels, bool), size, rng) for _ in range(folds)]


def _covering(labels: NDArray[np.bool_], size: int, rng: np.random.Generator) -> Split:
    """One hold-out of ``size`` images holding every word with two or more images at least once (where the
    fitting side can keep one), the rest drawn at random."""
    n = len(labels)
    held = np.zeros(n, bool)
    left = labels.sum(axis=0).astype(np.int64)  # images of each word on the fitting side
    covered = np.zeros(labels.shape[1], bool)
    count = 0

    def take(i: int) -> bool:
        nonlocal count
        words = labels[i]
        if held[i] or (left[words] < 2).any():
            return False
        held[i] = True
        left[words] -= 1
        covered[words] = True
        count += 1
        return True

    for w in np.argsort(left, kind="stable"):  # rarest first
        if count >= size:
            break
        if covered[w] or left[w] < 2:
            continue
        for i in rng.permutation(np.flatnonzero(labels[:, w] & ~held)):
            if take(int(i)):
                break
    for i in rng.permutation(np.flatnonzero(~held)):
        if count >= size:
            break
        take(int(i))
    return np.flatnonzero(held), np.flatnonzero(~held)
