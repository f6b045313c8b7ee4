"""The three binding policies hand the scheduler the viable sets the method says."""

from __future__ import annotations

import numpy as np
import pytest

from aragog.accuracy.profile import AccuracyProfile
from aragog.configs import ConfigSpace
from aragog.errors import ConfigError
from aragog.scheduling.policies import make_policy
from aragog.workflow import workflow_from_dict


@pytest.fixture
def space(tiny_family) -> ConfigSpace:
    agents = [
        {"name": "a", "output": {"source": "lognormal", "mean_tokens": 100}},
        {
            "name": "b",
            "upstream": ["a"],
            "models": ["m0", "m2"],
            "output": {"source": "trace"},
        },
    ]
    return ConfigSpace.create(
        workflow_from_dict({"name": "w", "agents": agents}), tiny_family
    )


@pytest.fixture
def profile(space) -> AccuracyProfile:
    # Configurations: id = digit_a + 3 * digit_b; 5 = (m2, m2) is the most expensive.
    correct = np.array(
        [
            [0, 1, 1, 0, 0, 1],  # max right: viable {1, 2, 5}
            [1, 1, 1, 1, 1, 0],  # max wrong: viable {5}
            [0, 0, 0, 1, 1, 1],  # max right: viable {3, 4, 5}
        ],
        dtype=bool,
    )
    return AccuracyProfile(
        workflow=space.workflow.name,
        family=space.family.name,
        radix=space.radix,
        correct=correct,
        metadata={},
    )


def test_aragog_keeps_every_accuracy_preserving_configuration(space, profile):
    policy = make_policy("aragog", space, profile)

    assert [v.tolist() for v in policy.viable_sets] == [[1, 2, 5], [5], [3, 4, 5]]


def test_per_input_binds_the_cheapest_preserving_configuration(space, profile):
    policy = make_policy("per-input", space, profile)

    # Costs grow with the digits' model sizes; (m1, m0) = 1 is cheaper than (m2, m0) = 2
    # and (m0, m2) = 3 is cheaper than (m1, m2) = 4.
    assert [v.tolist() for v in policy.viable_sets] == [[1], [5], [3]]


def test_per_workflow_binds_one_configuration_for_every_input(space, profile):
    policy = make_policy("per-workflow", space, profile)

    # Accuracy per configuration over the 3 inputs: [1, 2, 2, 2, 2, 2] / 3; the max
    # config's is 2/3, so the cheapest within one point is configuration 1.
    assert [v.tolist() for v in policy.viable_sets] == [[1], [1], [1]]


def test_an_unknown_policy_is_refused(space, profile):
    with pytest.raises(ConfigError, match="unknown policy 'fastest'"):
        make_policy("fastest", space, profile)
