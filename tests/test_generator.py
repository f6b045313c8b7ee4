"""The synthetic profile generator: calibration, determinism and the model's shape."""

from __future__ import annotations

import math
import time
from statistics import NormalDist

import numpy as np
import pytest

from aragog.accuracy import generator
from aragog.accuracy.generator import (
    generate_agent_outcomes,
    generate_profile,
    generate_two_model_profile,
)
from aragog.accuracy.mmlu import load_routellm_mmlu
from aragog.configs import ConfigSpace
from aragog.errors import ConfigError
from aragog.models import load_family
from aragog.workflow import load_workflow

WORKFLOWS = ("self-refine", "text-to-sql", "voting", "task-decomposition")
FAMILIES = ("qwen2.5", "llama3")


def _space(workflow: str, family: str = "qwen2.5") -> ConfigSpace:
    return ConfigSpace.create(load_workflow(workflow), load_family(family))


def _joint(correct: np.ndarray) -> np.ndarray:
    """Shares of (both right, neither, cheap only, expensive only)."""
    cheap, expensive = correct[:, 0], correct[:, 1]
    cells = [cheap & expensive, ~cheap & ~expensive, cheap & ~expensive]
    cells.append(~cheap & expensive)
    return np.array([c.mean() for c in cells])


def test_a_two_model_profile_reproduces_the_real_mmlu_joint_distribution():
    real = _joint(load_routellm_mmlu().correct)

    generated = _joint(generate_two_model_profile(20_000, seed=11).correct)

    np.testing.assert_allclose(generated, real, atol=0.02)


def test_the_fitted_correlation_gives_the_published_both_correct_share():
    # P(both right) for bivariate normal latents, integrated here independently of
    # the generator: the cheap model's latent x over its right half, times the
    # conditional chance that the expensive one is right too.
    normal = NormalDist()
    r = generator.LATENT_CORRELATION
    cheap = normal.inv_cdf(0.681)
    expensive = normal.inv_cdf(0.806)
    nodes, weights = np.polynomial.legendre.leggauss(200)
    x = -cheap + (nodes + 1.0) * 6.0
    conditional = [normal.cdf((expensive + r * v) / math.sqrt(1 - r * r)) for v in x]

    both = float(
        np.sum(
            weights * 6.0 * np.exp(-(x**2) / 2) / math.sqrt(2 * math.pi) * conditional
        )
    )

    assert both == pytest.approx(0.628, abs=0.001)
    total = generator.DIFFICULTY_SD**2 + generator.SHARED_NOISE_SD**2
    assert total + generator.MODEL_NOISE_SD**2 == pytest.approx(1.0)
    assert total == pytest.approx(r)


@pytest.mark.parametrize(("cheap", "expensive"), [(0.3, 0.9), (0.681, 0.806)])
def test_two_model_marginals_follow_the_requested_accuracies(cheap, expensive):
    profile = generate_two_model_profile(20_000, 5, cheap, expensive)

    np.testing.assert_allclose(
        profile.accuracy_per_config(), [cheap, expensive], atol=0.015
    )


def test_the_same_seed_gives_the_same_profile_and_another_seed_does_not():
    space = _space("voting")

    first = generate_profile(space, 500, seed=7)
    again = generate_profile(space, 500, seed=7)
    other = generate_profile(space, 500, seed=8)

    np.testing.assert_array_equal(first.correct, again.correct)
    np.testing.assert_array_equal(
        first.metadata["features"], again.metadata["features"]
    )
    assert not np.array_equal(first.correct, other.correct)


def test_a_generated_profile_describes_its_space():
    space = _space("task-decomposition", "llama3")

    profile = generate_profile(space, 300, seed=0)

    profile.check_fits(space)
    assert profile.correct.shape == (300, 243)
    assert profile.metadata["features"].shape == (300, generator.FEATURE_DIM)
    assert profile.metadata["features"].dtype == np.float32
    assert profile.metadata["difficulty"].dtype == np.float32


def test_five_agents_and_243_configurations_of_2000_inputs_take_under_a_second():
    space = _space("voting")
    generate_profile(space, 10, seed=0)  # warm caches (digits, model ids)

    started = time.perf_counter()
    generate_profile(space, 2000, seed=0)
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_the_most_expensive_configuration_is_right_on_70_to_85_percent(
    workflow, family
):
    profile = generate_profile(_space(workflow, family), 2000, seed=0)

    accuracy = profile.accuracy_per_config()

    assert 0.70 <= accuracy[-1] <= 0.85
    assert accuracy[-1] > accuracy[0] + 0.1


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_a_dominating_configuration_is_nearly_always_at_least_as_accurate(workflow):
    space = _space(workflow)
    profile = generate_profile(space, 2000, seed=1)
    accuracy = profile.accuracy_per_config()
    digits = space.digits
    dominates = (digits[:, None, :] >= digits[None, :, :]).all(axis=2)
    np.fill_diagonal(dominates, False)

    respected = (accuracy[:, None] >= accuracy[None, :])[dominates].mean()

    assert respected >= 0.95


def test_a_larger_model_is_right_on_nearly_but_not_all_inputs_a_smaller_one_is():
    profile = generate_two_model_profile(20_000, seed=2)
    cheap, expensive = profile.correct[:, 0], profile.correct[:, 1]

    kept = expensive[cheap].mean()

    assert 0.85 < kept < 0.97


def test_a_cheap_configuration_preserves_the_outcome_on_most_inputs():
    profile = generate_profile(_space("text-to-sql"), 2000, seed=0)

    preserved = profile.correct == profile.correct[:, [-1]]

    assert preserved.mean() > 0.6
    assert preserved[:, 0].mean() > 0.5


def test_a_downstream_agent_repairs_some_wrong_upstream_answers_and_spoils_some():
    space = _space("self-refine")
    outcomes = generate_agent_outcomes(space, 2000, seed=0)
    generate, final = outcomes[0], outcomes[-1]
    small_then_large = space.encode((0, 2, 2))
    all_small = space.encode((0, 0, 0))

    repaired = ~generate[:, small_then_large] & final[:, small_then_large]
    spoiled = generate[:, small_then_large] & ~final[:, small_then_large]

    assert repaired.sum() > 20
    assert spoiled.sum() > 0
    # Same upstream draw, larger downstream models: more of its errors repaired.
    wrong = ~generate[:, all_small]
    assert final[wrong, small_then_large].mean() > final[wrong, all_small].mean()


def test_the_profile_is_the_sink_agents_outcome():
    space = _space("voting")

    outcomes = generate_agent_outcomes(space, 400, seed=4)
    profile = generate_profile(space, 400, seed=4)

    np.testing.assert_array_equal(outcomes[-1], profile.correct)


def test_features_are_a_noisy_view_of_the_difficulty():
    profile = generate_two_model_profile(5000, seed=3)
    difficulty = profile.metadata["difficulty"].astype(np.float64)
    features = profile.metadata["features"].astype(np.float64)

    single = [abs(np.corrcoef(f, difficulty)[0, 1]) for f in features.T]
    design = np.column_stack([features, np.ones(len(difficulty))])
    coef, *_ = np.linalg.lstsq(design, difficulty, rcond=None)
    r_squared = 1 - np.var(difficulty - design @ coef) / np.var(difficulty)

    assert min(single) > 0.2 and max(single) < 0.9
    assert 0.5 < r_squared < 0.98


def test_harder_inputs_are_answered_correctly_less_often():
    profile = generate_profile(_space("self-refine"), 2000, seed=0)
    difficulty = profile.metadata["difficulty"]
    hard = difficulty > np.median(difficulty)

    right = profile.correct[:, -1]

    assert right[hard].mean() < right[~hard].mean() - 0.1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_inputs": 0, "seed": 0}, "num_inputs: expected at least 1"),
        ({"num_inputs": 5, "seed": 0, "cheap_accuracy": 1.0}, "accuracy: expected"),
        ({"num_inputs": 5, "seed": 0, "feature_dim": 0}, "feature_dim"),
    ],
)
def test_bad_generator_arguments_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        generate_two_model_profile(**kwargs)


def test_skill_grows_with_the_number_of_parameters():
    skills = [generator.skill_from_params(p) for p in (3.2e9, 8e9, 70e9)]

    assert skills == sorted(skills)
    assert generator.skill_from_params(generator.COIN_FLIP_PARAMS) == 0.0


def test_evaluating_inputs_in_small_chunks_changes_nothing(monkeypatch):
    space = _space("text-to-sql")
    whole = generate_profile(space, 300, seed=9)

    monkeypatch.setattr(generator, "_MAX_CELLS_PER_CHUNK", 81 * 4 * 7)
    chunked = generate_profile(space, 300, seed=9)

    np.testing.assert_array_equal(chunked.correct, whole.correct)
