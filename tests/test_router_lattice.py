"""Lattice pruning: what a search settles, how many evaluations it takes, budgets."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aragog.errors import ConfigError
from aragog.routing.lattice import DominanceLattice

# Radix (3, 3): configuration (a, b) has id a + 3 b. Accurate where a + b >= 2, an
# upward-closed set; id 8 is the most expensive configuration.
HAND_RADIX = (3, 3)
HAND_TRUTH = [False, False, True, False, True, True, True, True, True]


def _asker(truth: list[bool], asked: list[int]):
    def is_accurate(config: int) -> bool:
        asked.append(config)
        return truth[config]

    return is_accurate


def test_the_dominance_table_holds_each_configurations_up_set():
    lattice = DominanceLattice(HAND_RADIX)

    up_of_4 = np.flatnonzero(lattice.up[4]).tolist()
    down_of_4 = np.flatnonzero(lattice.up[:, 4]).tolist()

    # (1, 1) is below (1, 1), (2, 1), (1, 2), (2, 2) and above (0..1, 0..1).
    assert up_of_4 == [4, 5, 7, 8]
    assert down_of_4 == [0, 1, 3, 4]


def test_pruning_settles_the_monotone_set_in_the_order_worked_by_hand():
    lattice = DominanceLattice(HAND_RADIX)
    asked: list[int] = []

    result = lattice.prune(_asker(HAND_TRUTH, asked), np.full(9, 0.5))

    # With a flat prior the first pick is (0, 0), whose up-set is everything; it is
    # inaccurate and settles itself. Then (1, 0) and (0, 1), ties broken by id; then
    # (1, 1), accurate, settles 4, 5 and 7 at once; (2, 0) and (0, 2) are left.
    assert asked == [0, 1, 3, 4, 2, 6]
    assert result.viable.tolist() == [2, 4, 5, 6, 7, 8]
    assert result.num_evaluations == 6
    assert result.num_settled == 9
    assert result.complete


def test_an_accurate_cheapest_configuration_settles_everything_in_one_evaluation():
    lattice = DominanceLattice((3, 3, 3, 3, 3))
    asked: list[int] = []

    result = lattice.prune(_asker([True] * 243, asked), np.full(243, 0.9))

    assert asked == [0]
    assert result.num_evaluations == 1
    assert result.viable.size == 243


def test_the_most_expensive_configuration_is_viable_without_an_evaluation():
    lattice = DominanceLattice((3, 3, 3, 3, 3))
    asked: list[int] = []

    result = lattice.prune(_asker([False] * 243, asked), np.full(243, 0.1))

    assert result.viable.tolist() == [242]
    assert 242 not in asked
    # The five configurations one step below the top cover every other one.
    assert result.num_evaluations == 5


def test_an_evaluation_cap_stops_early_and_keeps_the_most_expensive_configuration():
    lattice = DominanceLattice(HAND_RADIX)
    asked: list[int] = []

    result = lattice.prune(
        _asker(HAND_TRUTH, asked), np.full(9, 0.5), max_num_evaluations=3
    )

    # After (0, 0), (1, 0) and (0, 1), all inaccurate, nothing accurate is settled.
    assert asked == [0, 1, 3]
    assert result.viable.tolist() == [8]
    assert result.num_settled == 4
    assert not result.complete


def test_a_deadline_in_the_past_stops_before_any_evaluation():
    lattice = DominanceLattice((3, 3, 3, 3, 3))
    asked: list[int] = []

    result = lattice.prune(
        _asker([True] * 243, asked),
        np.full(243, 0.5),
        deadline_s=time.perf_counter() - 1.0,
    )

    assert asked == []
    assert result.viable.tolist() == [242]
    assert result.num_evaluations == 0
    assert not result.complete


def test_a_prior_of_the_wrong_length_is_refused_with_its_shape():
    lattice = DominanceLattice(HAND_RADIX)

    with pytest.raises(ConfigError, match=r"prior: expected one share per "):
        lattice.prune(lambda c: True, np.zeros(4))


@st.composite
def _monotone_truths(draw):
    radix = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=4)))
    lattice = DominanceLattice(radix)
    seeds = draw(
        st.lists(
            st.booleans(), min_size=lattice.num_configs, max_size=lattice.num_configs
        )
    )
    truth = lattice.upper_closure(np.array(seeds))
    truth[-1] = True
    prior = draw(
        st.lists(
            st.floats(0, 1), min_size=lattice.num_configs, max_size=lattice.num_configs
        )
    )
    return lattice, truth, np.array(prior)


@settings(max_examples=60, deadline=None)
@given(_monotone_truths())
def test_pruning_recovers_any_upward_closed_set_exactly(case):
    lattice, truth, prior = case

    result = lattice.prune(lambda c: bool(truth[c]), prior)

    assert result.viable.tolist() == np.flatnonzero(truth).tolist()
    assert result.complete
    assert result.num_evaluations <= lattice.num_configs - 1


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 3), min_size=1, max_size=5),
    st.integers(0, 2**31 - 1),
    st.one_of(st.none(), st.integers(0, 6)),
)
def test_pruning_many_inputs_at_once_settles_what_one_at_a_time_does(radix, seed, cap):
    lattice = DominanceLattice(radix)
    rng = np.random.default_rng(seed)
    decisions = rng.random((12, lattice.num_configs)) < rng.random()
    prior = rng.random(lattice.num_configs)

    viable, evaluations = lattice.prune_many(decisions, prior, max_num_evaluations=cap)

    for i in range(decisions.shape[0]):
        one = lattice.prune(
            lambda c, i=i: bool(decisions[i, c]), prior, max_num_evaluations=cap
        )
        assert np.flatnonzero(viable[i]).tolist() == one.viable.tolist()
        assert evaluations[i] == one.num_evaluations
