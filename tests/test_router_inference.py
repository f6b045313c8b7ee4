"""Router inference: batched logits, one-request routing, and the Router protocol."""

from __future__ import annotations

import numpy as np
import pytest
from test_router_helpers import random_router

from aragog.errors import ConfigError, ProfileError
from aragog.routing.base import Router
from aragog.routing.heads import Heads

VOTING_RADIX = (3, 3, 3, 3, 3)


@pytest.mark.parametrize("hidden", [None, 16], ids=["logistic", "mlp"])
def test_batched_logits_equal_a_loop_over_configurations(hidden):
    router = random_router(VOTING_RADIX, dim=8, seed=1, hidden=hidden)
    features = np.random.default_rng(2).standard_normal((20, 8)).astype(np.float32)

    batched = router.logits(features)

    looped = np.empty_like(batched)
    for i, row in enumerate(features):
        representation = router.heads.represent(row)
        for config in range(router.num_configs):
            looped[i, config] = router.heads.logit(representation, config)
    assert batched.shape == (20, 243)
    np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hidden", [None, 16], ids=["logistic", "mlp"])
def test_routing_one_request_settles_what_routing_many_does(hidden):
    router = random_router(VOTING_RADIX, dim=8, seed=3, hidden=hidden)
    features = np.random.default_rng(4).standard_normal((30, 8)).astype(np.float32)

    mask, evaluations = router.route_many(features)

    for i, row in enumerate(features):
        one = router.route(row)
        assert one.viable.tolist() == np.flatnonzero(mask[i]).tolist()
        assert one.num_evaluations == evaluations[i]
        assert one.complete


def test_a_zero_budget_leaves_only_the_most_expensive_configuration():
    router = random_router(VOTING_RADIX, dim=8, seed=5, threshold_logit=-10.0)

    result = router.route(np.zeros(8, dtype=np.float32), budget_s=0.0)

    assert result.viable.tolist() == [242]
    assert result.num_evaluations == 0
    assert not result.complete


def test_a_generous_budget_routes_as_without_one():
    router = random_router(VOTING_RADIX, dim=8, seed=6)
    row = np.random.default_rng(7).standard_normal(8).astype(np.float32)

    unbounded = router.route(row)
    bounded = router.route(row, budget_s=10.0)

    assert bounded.viable.tolist() == unbounded.viable.tolist()
    assert bounded.complete


def test_the_knob_at_never_leaves_only_the_most_expensive_configuration():
    router = random_router(VOTING_RADIX, dim=8, seed=8, threshold_logit=float("inf"))

    mask, _ = router.route_many(np.ones((3, 8), dtype=np.float32))

    assert mask.sum(axis=1).tolist() == [1, 1, 1]
    assert mask[:, 242].all()


def test_a_bound_router_meets_the_router_protocol_and_the_flat_layout():
    router = random_router((2, 3), dim=4, seed=9)
    features = np.random.default_rng(10).standard_normal((7, 4)).astype(np.float32)

    bound = router.bind(features)
    sets = bound.viable_sets()

    assert isinstance(bound, Router)
    assert sets.num_inputs == 7
    for i in range(7):
        assert sets.of(i).tolist() == bound.viable_set(i).tolist()
        assert bound.viable_set(i)[-1] == 5
    with pytest.raises(ProfileError, match=r"input 7 out of range \[0, 7\)"):
        bound.viable_set(7)


def test_features_of_the_wrong_width_are_refused_naming_the_width():
    router = random_router((2, 2), dim=4, seed=11)

    with pytest.raises(
        ConfigError, match=r"expected \[dim\] with dim 4 .* found \(5,\)"
    ):
        router.route(np.zeros(5))


def test_heads_whose_layers_disagree_are_refused():
    with pytest.raises(
        ConfigError, match=r"out weights take 3 inputs, the layer below gives 5"
    ):
        Heads(np.zeros((4, 5)), np.zeros(5), np.zeros((2, 3)), np.zeros(2))
