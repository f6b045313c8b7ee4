"""Training: labels, splits, the calibrated knob, and viable sets for the simulator."""

from __future__ import annotations

import numpy as np
import pytest
from test_router_helpers import generated, requires_sklearn, space_of

from aragog.errors import ProfileError
from aragog.routing.calibrate import calibrate, probability_to_logit
from aragog.routing.lattice import DominanceLattice
from aragog.routing.learned import FeatureSpec
from aragog.routing.quality import judge, random_share_at
from aragog.routing.split import fold_ids, holdout_split
from aragog.routing.training import (
    TrainSettings,
    learned_viable_sets,
    preserving_labels,
    train_router,
)

T, F = True, False
FEATURES_8 = FeatureSpec("features", "", 0, 8)


def test_a_configuration_preserves_accuracy_unless_the_largest_alone_is_right():
    correct = np.array([[F, T], [T, F], [T, T], [F, F]])

    labels = preserving_labels(correct)

    assert labels[:, 0].tolist() == [F, T, T, T]
    assert labels[:, 1].all()


def test_a_held_out_split_takes_the_same_share_of_every_subject():
    subjects = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 20)

    kept, held_out = holdout_split(100, 0.2, seed=3, strata=subjects)

    assert np.intersect1d(kept, held_out).size == 0
    assert kept.size + held_out.size == 100
    counts = {s: int(np.sum(subjects[held_out] == s)) for s in "abc"}
    assert counts == {"a": 10, "b": 6, "c": 4}


def test_folds_deal_every_subject_evenly():
    subjects = np.array(["a"] * 9 + ["b"] * 6)

    folds = fold_ids(15, 3, seed=1, strata=subjects)

    for s in "ab":
        assert np.bincount(folds[subjects == s], minlength=3).tolist() in (
            [3, 3, 3],
            [2, 2, 2],
        )


def test_the_random_router_share_matches_routellm_at_98_percent_of_mmlu():
    # Mixtral 68.1%, GPT-4 80.6%: 98% of GPT-4 allows 0.02 * 80.6 / 12.5 = 12.9%.
    share = random_share_at(0.98 * 0.806, 0.681, 0.806)

    assert share == pytest.approx(0.12896, abs=1e-5)


def test_judging_binds_each_input_to_its_cheapest_viable_configuration():
    correct = np.array([[F, T, T], [T, T, F], [F, F, T]])
    viable = np.array([[T, F, T], [F, T, T], [F, T, T]])

    quality = judge(viable, correct, costs=np.array([1.0, 2.0, 3.0]))

    # Inputs run on configurations 0, 1 and 1: wrong, right, wrong. The largest is
    # right on inputs 0 and 2.
    assert quality.accuracy == pytest.approx(1 / 3)
    assert quality.reference_accuracy == pytest.approx(2 / 3)
    assert quality.accuracy_kept == pytest.approx(0.5)
    assert quality.cheap_share == pytest.approx(1.0)
    assert quality.flexibility == pytest.approx(6 / 9)


def test_calibration_on_one_head_picks_the_most_permissive_setting_in_target():
    # One agent, two models; the cheap head's logits rank five inputs. Sending the
    # top three to the cheap model keeps 2 of 2 answers, the fourth loses one.
    lattice = DominanceLattice((2,))
    logits = np.array([[4.0, 9], [3.0, 9], [2.0, 9], [1.0, 9], [0.0, 9]], np.float32)
    correct = np.array([[T, T], [F, F], [T, T], [F, T], [F, T]])

    point = calibrate(lattice, logits, correct, np.array([0.0, 1.0]), target=0.98)

    assert point.threshold_logit == pytest.approx(2.0)
    assert point.quality.cheap_share == pytest.approx(0.6)
    assert point.quality.accuracy_kept == pytest.approx(1.0)


def test_a_probability_of_one_means_never():
    assert probability_to_logit(1.0) == float("inf")
    assert probability_to_logit(0.5) == 0.0


@requires_sklearn
def test_calibration_meets_the_target_on_a_generated_profile():
    profile = generated("self-refine", 1500, seed=21)
    space = space_of("self-refine")

    router = train_router(
        profile,
        profile.metadata["features"],
        FEATURES_8,
        space.mean_costs(),
        TrainSettings(target=0.98, seed=0),
    )

    validation = router.validation_point()
    assert validation.quality.num_inputs == 1200
    assert validation.quality.accuracy_kept >= 0.98
    assert validation.quality.cheap_share > 0.5
    looser = router.with_target(0.9)
    assert looser.threshold < router.threshold
    assert looser.validation_point().quality.accuracy_kept >= 0.9
    # Held out, the same knob keeps close to the target (300 inputs: some noise).
    held_out = router.provenance.held_out
    mask, _ = router.route_many(profile.metadata["features"][held_out])
    quality = judge(mask, profile.correct[held_out], space.mean_costs())
    assert quality.accuracy_kept >= 0.95


@requires_sklearn
def test_training_refuses_features_of_another_length_than_the_profile():
    profile = generated("self-refine", 100, seed=22)

    with pytest.raises(ProfileError, match=r"100 inputs, but the inputs give 99"):
        train_router(
            profile,
            profile.metadata["features"][:99],
            FEATURES_8,
            np.arange(27.0),
        )


@requires_sklearn
def test_learned_viable_sets_cover_every_input_and_keep_most_accuracy():
    profile = generated("self-refine", 600, seed=23)
    space = space_of("self-refine")

    sets = learned_viable_sets(profile, space, seed=1, target=0.98)

    assert len(sets) == 600
    assert all(s[-1] == 26 and np.all(np.diff(s) > 0) for s in sets)
    mask = np.zeros(profile.correct.shape, dtype=bool)
    for i, s in enumerate(sets):
        mask[i, s] = True
    quality = judge(mask, profile.correct, space.mean_costs())
    assert quality.accuracy_kept >= 0.95
    assert quality.cheap_share > 0.5


def test_learned_viable_sets_need_the_generated_features():
    profile = generated("self-refine", 50, seed=24)
    bare = type(profile)(
        profile.workflow, profile.family, profile.radix, profile.correct
    )

    with pytest.raises(ProfileError, match=r"metadata 'features' missing"):
        learned_viable_sets(bare, space_of("self-refine"))
