"""The oracle router and the cheapest-configuration choices built on its labels."""

from __future__ import annotations

import numpy as np
import pytest

from aragog.accuracy.generator import generate_profile
from aragog.accuracy.profile import AccuracyProfile
from aragog.configs import ConfigSpace
from aragog.errors import ProfileError
from aragog.models import load_family
from aragog.routing.base import Router
from aragog.routing.oracle import OracleRouter, cheapest_viable, per_workflow_config
from aragog.workflow import load_workflow

T, F = True, False


def _tiny_profile() -> AccuracyProfile:
    """Two agents with two models each: configuration 3 is the most expensive."""
    correct = np.array(
        [
            [F, T, F, T],  # largest right: configurations right are viable
            [T, T, F, F],  # largest wrong: configurations wrong are viable
            [T, T, T, T],  # everybody right
            [F, F, F, F],  # everybody wrong
        ]
    )
    return AccuracyProfile("tiny", "fam", (2, 2), correct)


def _profile_with_accuracies(
    counts: list[int], num_inputs: int = 200
) -> AccuracyProfile:
    """Configuration ``c`` right on its first ``counts[c]`` inputs."""
    rows = np.arange(num_inputs)[:, None]
    correct = rows < np.array(counts)[None, :]
    return AccuracyProfile("hand", "fam", (len(counts),), correct)


@pytest.mark.parametrize(
    ("input_index", "expected"),
    [(0, [1, 3]), (1, [2, 3]), (2, [0, 1, 2, 3]), (3, [0, 1, 2, 3])],
)
def test_a_viable_set_holds_the_configurations_matching_the_largest(
    input_index, expected
):
    router = OracleRouter(_tiny_profile())

    viable = router.viable_set(input_index)

    assert viable.dtype == np.int64
    assert viable.tolist() == expected


def test_all_viable_sets_come_in_the_flat_layout_of_a_round():
    router = OracleRouter(_tiny_profile())

    sets = router.viable_sets()

    assert sets.offsets.tolist() == [0, 2, 4, 8, 12]
    assert sets.configs.tolist() == [1, 3, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]
    assert sets.configs.dtype == np.int64
    assert sets.sizes().tolist() == [2, 2, 4, 4]
    assert sets.of(1).tolist() == [2, 3]
    assert [v.tolist() for v in sets] == [[1, 3], [2, 3], [0, 1, 2, 3], [0, 1, 2, 3]]
    assert len(sets) == 4


def test_the_most_expensive_configuration_is_always_viable():
    space = ConfigSpace.create(load_workflow("text-to-sql"), load_family("llama3"))
    router = OracleRouter(generate_profile(space, 500, seed=0))

    sets = router.viable_sets()

    ends = sets.configs[sets.offsets[1:] - 1]
    assert np.all(ends == space.most_expensive)
    assert all(np.all(np.diff(sets.of(i)) > 0) for i in range(sets.num_inputs))
    np.testing.assert_array_equal(router.viable_set(17), sets.of(17))


def test_the_oracle_is_a_router():
    assert isinstance(OracleRouter(_tiny_profile()), Router)


def test_an_unknown_input_is_an_error():
    router = OracleRouter(_tiny_profile())

    with pytest.raises(ProfileError, match=r"input 4 out of range \[0, 4\)"):
        router.viable_set(4)


def test_the_cheapest_viable_configuration_wins_and_ties_go_to_the_lower_id():
    space = ConfigSpace.create(load_workflow("self-refine"), load_family("qwen2.5"))
    costs = np.arange(27, 0, -1, dtype=float)  # configuration 26 is cheapest here
    costs[[5, 9, 20]] = 0.5

    assert cheapest_viable(space, np.array([3, 5, 9, 26]), costs) == 5
    assert cheapest_viable(space, np.array([20, 9]), costs) == 9
    assert cheapest_viable(space, np.array([0, 26]), costs) == 26


def test_an_empty_viable_set_falls_back_to_the_most_expensive_configuration():
    space = ConfigSpace.create(load_workflow("self-refine"), load_family("qwen2.5"))

    chosen = cheapest_viable(space, np.array([], dtype=np.int64), space.mean_costs())

    assert chosen == 26


def test_cheapest_viable_refuses_costs_of_another_space():
    space = ConfigSpace.create(load_workflow("self-refine"), load_family("qwen2.5"))

    with pytest.raises(ProfileError, match=r"costs: expected one per configuration"):
        cheapest_viable(space, np.array([1]), np.ones(26))


@pytest.mark.parametrize(
    ("tolerance", "expected"),
    [(0.01, 2), (0.02, 1), (0.0, 3), (0.2, 0)],
)
def test_the_per_workflow_config_is_the_cheapest_within_tolerance(tolerance, expected):
    # Accuracies 0.70, 0.785, 0.79, 0.80; costs rise with the id.
    profile = _profile_with_accuracies([140, 157, 158, 160])
    costs = np.array([1.0, 2.0, 3.0, 4.0])

    assert per_workflow_config(profile, costs, tolerance) == expected


def test_equal_cost_per_workflow_candidates_go_to_the_lower_id():
    profile = _profile_with_accuracies([100, 159, 159, 160])
    costs = np.array([1.0, 3.0, 3.0, 4.0])

    assert per_workflow_config(profile, costs) == 1
