"""The runtime's router: a profile row per run, its viable set, cut to served models;
a learned router's viable set within a time budget."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from test_router_helpers import random_router, requires_embeddings

from aragog.configs import ConfigSpace
from aragog.errors import ConfigError
from aragog.models import load_family
from aragog.routing.learned import FeatureSpec, LearnedRouter
from aragog.routing.store import save_router
from aragog.runtime.errors import InvalidInput, RunFailed
from aragog.runtime.routing import (
    LearnedRouting,
    build_learned,
    build_router,
    default_profile,
    input_row,
)
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


def _learned(space: ConfigSpace, dim: int = 8, seed: int = 3) -> LearnedRouter:
    """A router with random heads over self-refine's space, reading embeddings."""
    router = random_router(tuple(space.radix), dim, seed, workflow="self-refine")
    return replace(
        router,
        family=space.family.name,
        features=FeatureSpec("embedding", "all-MiniLM-L6-v2", 0, dim),
    )


def test_a_learned_route_is_the_routers_own_viable_set_cut_to_served_models(space):
    learned = _learned(space)
    served = frozenset({"qwen2.5-7b", "qwen2.5-32b"})
    routing = LearnedRouting(learned, "r.npz", embedder=None)
    router = build_router(space, None, "generated", 2000, 0, served, routing)
    features = np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32)

    # The batched path settles the same sets without the lattice's early stops.
    masks, _ = learned.route_many(features)
    servable = np.array(
        ["qwen2.5-14b" not in space.model_names(c) for c in range(space.num_configs)]
    )
    for i, row in enumerate(features):
        route = router.route_learned(i, row, budget_s=10.0)

        assert route.router == "learned" and route.complete
        assert route.profile_input == i
        assert route.num_evaluations == learned.route(row).num_evaluations
        assert route.viable.tolist() == np.flatnonzero(masks[i] & servable).tolist()


def test_a_learned_router_out_of_time_keeps_only_the_most_expensive_configuration(
    space,
):
    routing = LearnedRouting(_learned(space), "r.npz", embedder=None)
    router = build_router(space, None, "generated", 2000, 0, ALL_MODELS, routing)

    route = router.route_learned(0, np.ones(8, dtype=np.float32), budget_s=0.0)

    assert route.viable.tolist() == [space.most_expensive]
    assert route.num_evaluations == 0
    assert not route.complete


def test_a_learned_router_reading_another_embedding_model_is_refused(space, tmp_path):
    path = tmp_path / "router.npz"
    save_router(_learned(space), path)
    other = tmp_path / "paraphrase-mini"
    other.mkdir()
    (other / "modules.json").write_text(json.dumps([]))

    with pytest.raises(ConfigError) as caught:
        build_learned(str(path), str(other), {})

    assert str(caught.value) == (
        f"{path}: trained on embeddings of 'all-MiniLM-L6-v2', the deployment's "
        "router.embedding_model is 'paraphrase-mini'"
    )


@requires_embeddings
def test_learned_routers_of_one_embedding_model_share_one_embedder(space, tmp_path):
    for name in ("a.npz", "b.npz"):
        save_router(_learned(space), tmp_path / name)
    embedders: dict = {}

    a = build_learned(str(tmp_path / "a.npz"), None, embedders)
    b = build_learned(str(tmp_path / "b.npz"), None, embedders)

    assert a.embedder is b.embedder
    assert len(embedders) == 1
