"""What each configuration of a profile costs, for judging a router on it.

Judging a router binds each input to the cheapest configuration of its viable set,
so it needs a cost per configuration. When the profile names a shipped workflow and
model family whose space has the profile's radix, that is the space's FLOPs at
nominal token counts (:meth:`ConfigSpace.mean_costs`). Otherwise (the RouteLLM MMLU
profile, whose two models are not in a catalog, or a custom workflow file) it is a
stand-in that respects the dominance order: the sum of the digits, each agent's
candidate index, which is exact for one agent and two models.
"""

from __future__ import annotations

import logging

import numpy as np

from aragog.accuracy.profile import AccuracyProfile
from aragog.configs import ConfigSpace
from aragog.errors import AragogError
from aragog.models import SHIPPED_FAMILIES, load_family
from aragog.workflow import SHIPPED_WORKFLOWS, load_workflow

logger = logging.getLogger(__name__)


def profile_costs(profile: AccuracyProfile) -> np.ndarray:
    """float64 ``[num_configs]``: the cost of every configuration of ``profile``."""
    if profile.family in SHIPPED_FAMILIES and profile.workflow in SHIPPED_WORKFLOWS:
        try:
            space = ConfigSpace.create(
                load_workflow(profile.workflow), load_family(profile.family)
            )
        except AragogError:
            space = None
        if space is not None and tuple(space.radix) == tuple(profile.radix):
            return space.mean_costs()
    logger.info(
        "profile %s on %s: no shipped space of radix %s, costs are digit sums",
        profile.workflow,
        profile.family,
        profile.radix,
    )
    return digit_sum_costs(profile.radix)


def digit_sum_costs(radix: tuple[int, ...]) -> np.ndarray:
    """float64 ``[prod(radix)]``: each configuration's sum of digits."""
    strides = np.cumprod((1,) + tuple(radix)[:-1], dtype=np.int64)
    ids = np.arange(int(np.prod(radix, dtype=np.int64)), dtype=np.int64)
    digits = [(ids // s) % r for s, r in zip(strides, radix, strict=True)]
    return np.sum(digits, axis=0).astype(np.float64)
