"""Seeded, stratified splits of a profile's inputs for training and judging a router.

A router is judged on inputs it never trained on, and its knob is calibrated on
inputs its classifiers never saw. Both splits are stratified (by MMLU subject, where
the profile has one) so that every subject is represented in the same share on both
sides: MMLU subjects differ widely in size and in how often the cheap model is
enough, and an unlucky split would otherwise move the figures by itself.
"""

from __future__ import annotations

import numpy as np

from aragog.errors import ConfigError


def holdout_split(
    num_inputs: int, fraction: float, seed: int, strata: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """int64 ``(kept, held_out)`` input ids, each ascending: about ``fraction`` of
    every stratum held out (rounded per stratum), the rest kept.

    Args:
        strata: one label per input (any hashable numpy values); ``None`` is one
            stratum.

    Raises:
        ConfigError: ``fraction`` outside (0, 1), or ``strata`` of another length.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"held-out fraction: expected (0, 1), found {fraction}")
    groups = _groups(num_inputs, strata)
    rng = np.random.default_rng(seed)
    held_out = []
    for members in groups:
        shuffled = rng.permutation(members)
        held_out.append(shuffled[: int(round(fraction * members.size))])
    test = np.sort(np.concatenate(held_out)).astype(np.int64)
    train = np.setdiff1d(np.arange(num_inputs, dtype=np.int64), test)
    return train, test


def fold_ids(
    num_inputs: int, num_folds: int, seed: int, strata: np.ndarray | None = None
) -> np.ndarray:
    """int64 ``[num_inputs]``: the fold (``0 .. num_folds - 1``) of every input,
    each stratum dealt round-robin in a seeded order so folds differ by at most one
    member of it.

    Raises:
        ConfigError: fewer than 2 folds or more folds than inputs.
    """
    if num_folds < 2 or num_folds > num_inputs:
        raise ConfigError(
            f"folds: expected 2 to {num_inputs} (the inputs), found {num_folds}"
        )
    rng = np.random.default_rng(seed)
    folds = np.empty(num_inputs, dtype=np.int64)
    # A running offset keeps small strata from all landing in fold 0.
    offset = 0
    for members in _groups(num_inputs, strata):
        shuffled = rng.permutation(members)
        folds[shuffled] = (np.arange(shuffled.size) + offset) % num_folds
        offset += shuffled.size
    return folds


def _groups(num_inputs: int, strata: np.ndarray | None) -> list[np.ndarray]:
    if num_inputs < 1:
        raise ConfigError(f"split: expected at least 1 input, found {num_inputs}")
    if strata is None:
        return [np.arange(num_inputs, dtype=np.int64)]
    labels = np.asarray(strata)
    if labels.shape[:1] != (num_inputs,):
        raise ConfigError(
            f"split: {labels.shape[0] if labels.ndim else 0} strata labels for "
            f"{num_inputs} inputs"
        )
    # Sorted unique labels keep the groups' order (and so the draws) stable.
    _, inverse = np.unique(labels.astype(str), return_inverse=True)
    return [np.flatnonzero(inverse == g) for g in range(int(inverse.max()) + 1)]
