"""The runtime's router: a profile row per run, its viable set, cut to served models."""

from __future__ import annotations

import numpy as np
import pytest

from aragog.configs import ConfigSpace
from aragog.models import load_family
from aragog.runtime.errors import InvalidInput, RunFailed
from aragog.runtime.routing import build_router, default_profile, input_row
from aragog.workflow import load_workflow

ALL_MODELS = frozenset({"qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b"})


@pytest.fixture(scope="module")
def space() -> ConfigSpace:
    return ConfigSpace.create(load_workflow("self-refine"), load_family("qwen2.5"))


def test_the_same_input_always_gets_the_same_row_whatever_its_field_order():
    a = input_row({"question": "why?", "context": "sky"}, 2000)
    b = input_row({"context": "sky", "question": "why?"}, 2000)

    assert a == b
    assert 0 <= a < 2000
    assert input_row({"question": "why not?"}, 2000) != a


def test_the_generated_default_is_the_profile_aragog_simulate_uses(space):
    from aragog.accuracy.generator import generate_profile

    router = build_router(space, None, "generated", 2000, 0, ALL_MODELS)

    expected = generate_profile(space, 2000, 0)
    np.testing.assert_array_equal(router.profile.correct, expected.correct)
    assert router.source == "default:generated"


def test_a_named_row_is_routed_by_the_oracle_and_checked(space):
    router = build_router(space, None, "generated", 2000, 0, ALL_MODELS)

    route = router.route({"q": "x"}, 17)

    assert route.profile_input == 17
    mask = router.profile.correct == router.profile.correct[:, -1:]
    np.testing.assert_array_equal(route.viable, np.flatnonzero(mask[17]))
    with pytest.raises(
        InvalidInput, match=r"profile_input: expected a row in \[0, 2000\)"
    ):
        router.route({"q": "x"}, 2000)


def test_viable_sets_are_cut_to_configurations_whose_models_are_served(space):
    served = frozenset({"qwen2.5-7b", "qwen2.5-32b"})
    router = build_router(space, None, "all", 2000, 0, served)

    route = router.route({"q": "x"}, None)

    names = [space.model_names(int(c)) for c in route.viable]
    assert names and all("qwen2.5-14b" not in n for n in names)
    assert len(route.viable) == 2**3


def test_a_row_whose_viable_set_needs_an_unserved_model_fails_the_run(space):
    router = build_router(space, None, "largest", 2000, 0, frozenset({"qwen2.5-7b"}))

    with pytest.raises(RunFailed, match="a model they need has no engine"):
        router.route({"q": "x"}, None)


def test_the_all_and_largest_defaults_are_one_row_profiles(space):
    everything = default_profile(space, "all", 10, 0)
    largest = default_profile(space, "largest", 10, 0)

    assert everything.num_inputs == largest.num_inputs == 1
    assert everything.correct.all()
    assert np.flatnonzero(largest.correct[0]).tolist() == [space.most_expensive]
