"""The three moments of binding a configuration, as viable sets handed to the queue.

All three policies read the same oracle labels and go through the same graph-aware
scheduler (the beam search of the core); only *when* the configuration is fixed
differs, as in the paper's evaluation:

- ``aragog``: nothing is fixed at arrival. The request keeps every
  accuracy-preserving configuration, and each stage's model is chosen just in time.
- ``per-input``: at arrival, the cheapest accuracy-preserving configuration (by FLOPs)
  of this input is bound; the scheduler may still choose among replicas of a model.
- ``per-workflow``: one configuration serves every input: the cheapest whose accuracy
  over the whole profile is within one point of the most expensive configuration's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aragog.accuracy.profile import AccuracyProfile
from aragog.configs import ConfigSpace
from aragog.errors import ConfigError
from aragog.routing.oracle import OracleRouter, cheapest_viable, per_workflow_config

logger = logging.getLogger(__name__)

POLICY_NAMES = ("aragog", "per-input", "per-workflow")


@dataclass(frozen=True)
class Policy:
    """A binding policy: maps a profile input to the viable set the queue receives."""

    name: str
    viable_sets: tuple[np.ndarray, ...]

    def viable_set(self, input_index: int) -> np.ndarray:
        return self.viable_sets[input_index]


def make_policy(
    name: str,
    space: ConfigSpace,
    profile: AccuracyProfile,
    routed: Sequence[np.ndarray] | None = None,
) -> Policy:
    """Build the named policy's viable set for every input of ``profile``.

    Args:
        routed: each input's accuracy-preserving configurations as a router sees
            them; the oracle's labels when omitted. Per-workflow ignores it: its one
            configuration is chosen from the profile's accuracy, as the method does.

    Raises:
        ConfigError: an unknown policy name.
    """
    if routed is None:
        routed = list(OracleRouter(profile).viable_sets())
    costs = space.mean_costs()
    if name == "aragog":
        sets = tuple(routed)
    elif name == "per-input":
        sets = tuple(
            np.array([cheapest_viable(space, v, costs)], dtype=np.int64) for v in routed
        )
    elif name == "per-workflow":
        config = per_workflow_config(profile, costs)
        logger.info(
            "per-workflow binds %s (accuracy %.3f, most expensive %.3f)",
            "/".join(space.model_names(config)),
            profile.accuracy(config),
            profile.accuracy(space.most_expensive),
        )
        one = np.array([config], dtype=np.int64)
        sets = tuple(one for _ in range(profile.num_inputs))
    else:
        raise ConfigError(
            f"--policy: unknown policy {name!r} (one of {', '.join(POLICY_NAMES)}, all)"
        )
    return Policy(name, sets)
