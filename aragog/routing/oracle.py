"""The oracle router and the two fixed-binding choices built on its labels.

The oracle reads the truth from an accuracy profile: a configuration is viable for an
input when its outcome on that input (right or wrong) equals the most expensive
configuration's. Wrong-when-the-largest-is-wrong counts as viable on purpose: such a
configuration costs no accuracy against the reference, which is the paper's notion of
accuracy-preserving. The paper gives every baseline these perfect labels, so that only
the moment of binding differs between the policies compared.

Two baselines need nothing else: per-input routing binds each request to the cheapest
configuration of its viable set (:func:`cheapest_viable`), and per-workflow binding
uses one configuration for every input (:func:`per_workflow_config`).
"""

from __future__ import annotations

import logging

import numpy as np

from aragog.accuracy.profile import AccuracyProfile
from aragog.configs import ConfigSpace
from aragog.errors import ProfileError
from aragog.routing.base import ViableSets

logger = logging.getLogger(__name__)


class OracleRouter:
    """Viable sets read from an accuracy profile (perfect labels).

    Args:
        profile: the per-input correctness of every configuration; its last
            configuration id is the most expensive one.
    """

    def __init__(self, profile: AccuracyProfile) -> None:
        self._profile = profile
        # One comparison for the whole table; rows are looked up per request later.
        reference = profile.correct[:, profile.most_expensive]
        self._mask = profile.correct == reference[:, None]
        self._mask.setflags(write=False)

    @property
    def profile(self) -> AccuracyProfile:
        return self._profile

    @property
    def num_inputs(self) -> int:
        return self._profile.num_inputs

    def viable_mask(self) -> np.ndarray:
        """bool ``[num_inputs, num_configs]`` (read-only): ``[i, c]`` is whether
        configuration ``c`` is viable for input ``i``."""
        return self._mask

    def viable_set(self, input_index: int) -> np.ndarray:
        """int64 ids of the viable configurations of input ``input_index``, sorted;
        the most expensive configuration is always among them.

        Raises:
            ProfileError: ``input_index`` is not an input of the profile.
        """
        if not 0 <= input_index < self.num_inputs:
            raise ProfileError(
                f"profile {self._profile.workflow!r}: input {input_index} out of "
                f"range [0, {self.num_inputs})"
            )
        return np.flatnonzero(self._mask[input_index]).astype(np.int64)

    def viable_sets(self) -> ViableSets:
        """The viable sets of every input, in the flat layout of a scheduling round."""
        # Row-major nonzero gives ids sorted within each input, inputs in order.
        _, configs = np.nonzero(self._mask)
        counts = self._mask.sum(axis=1, dtype=np.int64)
        offsets = np.zeros(self.num_inputs + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return ViableSets(offsets=offsets, configs=configs.astype(np.int64))


def cheapest_viable(space: ConfigSpace, viable: np.ndarray, costs: np.ndarray) -> int:
    """The cheapest configuration of ``viable`` by ``costs`` (FLOPs, one per
    configuration of ``space``, e.g. ``space.mean_costs()``); ties go to the lower id.

    An empty ``viable`` gives the most expensive configuration, which is viable for
    every input by definition.

    Raises:
        ProfileError: ``costs`` does not have one entry per configuration, or an id in
            ``viable`` is outside the space.
    """
    costs = _checked_costs(costs, space.num_configs, space.workflow.name)
    ids = np.asarray(viable, dtype=np.int64)
    if ids.size == 0:
        return space.most_expensive
    if ids.min() < 0 or ids.max() >= space.num_configs:
        raise ProfileError(
            f"{space.workflow.name}: viable set holds ids outside "
            f"[0, {space.num_configs})"
        )
    return _cheapest(ids, costs)


def per_workflow_config(
    profile: AccuracyProfile, costs: np.ndarray, tolerance: float = 0.01
) -> int:
    """The one configuration a per-workflow system would use for every input: the
    cheapest (by ``costs``, ties to the lower id) whose accuracy over the profile is
    at least the most expensive configuration's minus ``tolerance`` (a share, so
    0.01 is one point).

    Raises:
        ProfileError: ``costs`` does not have one entry per configuration, or
            ``tolerance`` is negative.
    """
    costs = _checked_costs(costs, profile.num_configs, profile.workflow)
    if tolerance < 0:
        raise ProfileError(f"tolerance: expected a share >= 0, found {tolerance}")

    # Every configuration within tolerance, then the cheapest of them. The small
    # slack keeps a configuration exactly at the bound from losing to rounding.
    accuracy = profile.accuracy_per_config()
    floor = accuracy[profile.most_expensive] - tolerance - 1e-12
    candidates = np.flatnonzero(accuracy >= floor)
    chosen = _cheapest(candidates, costs)
    logger.debug(
        "per-workflow config of %s: %d (accuracy %.4f against %.4f, %d candidates)",
        profile.workflow,
        chosen,
        accuracy[chosen],
        accuracy[profile.most_expensive],
        candidates.size,
    )
    return chosen


def _cheapest(ids: np.ndarray, costs: np.ndarray) -> int:
    # lexsort's last key is the primary one: cost first, then id.
    order = np.lexsort((ids, costs[ids]))
    return int(ids[order[0]])


def _checked_costs(costs: np.ndarray, num_configs: int, where: str) -> np.ndarray:
    array = np.asarray(costs, dtype=np.float64)
    if array.shape != (num_configs,):
        raise ProfileError(
            f"{where}: costs: expected one per configuration ({num_configs}), found "
            f"shape {array.shape}"
        )
    return array
