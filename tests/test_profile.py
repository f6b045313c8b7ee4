"""AccuracyProfile: the table, its accuracies, its fit to a space, its .npz file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aragog.accuracy.profile import AccuracyProfile, load_profile
from aragog.configs import ConfigSpace
from aragog.errors import ProfileError
from aragog.models import load_family
from aragog.workflow import load_workflow


def _strings(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _odd_profile(num_inputs: int = 11, seed: int = 3) -> AccuracyProfile:
    """A profile over 15 configurations (radix 5 x 3): not a multiple of 8, so the
    last packed byte carries padding."""
    rng = np.random.default_rng(seed)
    prompts = [f'question {i}, "quoted"\nline two é' for i in range(num_inputs)]
    return AccuracyProfile(
        workflow="toy",
        family="toy-family",
        radix=(5, 3),
        correct=rng.random((num_inputs, 15)) < 0.6,
        metadata={
            "difficulty": rng.standard_normal(num_inputs).astype(np.float32),
            "features": rng.standard_normal((num_inputs, 4)).astype(np.float32),
            "prompt": _strings(prompts),
            "subject": np.array(["algebra"] * num_inputs),
        },
    )


def _rewrite(path: Path, **changes: np.ndarray) -> None:
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    with open(path, "wb") as out:
        np.savez(out, **arrays)


def test_accuracy_is_the_share_of_inputs_a_configuration_gets_right():
    correct = np.array(
        [
            [True, False, True, True],
            [False, False, True, True],
            [True, True, False, True],
        ]
    )
    profile = AccuracyProfile("toy", "fam", (2, 2), correct)

    per_config = profile.accuracy_per_config()

    np.testing.assert_allclose(per_config, [2 / 3, 1 / 3, 2 / 3, 1.0])
    assert profile.accuracy(1) == pytest.approx(1 / 3)
    assert profile.most_expensive == 3
    assert (profile.num_inputs, profile.num_configs) == (3, 4)


def test_accuracy_of_an_unknown_configuration_is_an_error():
    profile = AccuracyProfile("toy", "fam", (2,), np.ones((2, 2), dtype=bool))

    with pytest.raises(ProfileError, match=r"configuration 2 out of range \[0, 2\)"):
        profile.accuracy(2)


def test_a_profile_cannot_be_changed_in_place():
    source = np.zeros((2, 2), dtype=bool)
    profile = AccuracyProfile("toy", "fam", (2,), source)

    source[0, 0] = True

    assert not profile.correct[0, 0]
    with pytest.raises(ValueError):
        profile.correct[0, 0] = True


@pytest.mark.parametrize(
    ("radix", "shape", "metadata", "message"),
    [
        ((2,), (0, 2), {}, "empty table"),
        ((2, 2), (3, 5), {}, r"radix \(2, 2\) gives 4 configurations, the table has 5"),
        ((0,), (3, 0), {}, "empty table"),
        ((2,), (3, 2), {"difficulty": np.zeros(4)}, "'difficulty': 4 rows"),
    ],
)
def test_an_inconsistent_profile_is_refused(radix, shape, metadata, message):
    with pytest.raises(ProfileError, match=message):
        AccuracyProfile("toy", "fam", radix, np.zeros(shape, dtype=bool), metadata)


def test_a_profile_fits_the_space_it_was_made_for():
    space = ConfigSpace.create(load_workflow("self-refine"), load_family("qwen2.5"))
    profile = AccuracyProfile(
        "self-refine", "qwen2.5", (3, 3, 3), np.zeros((1, 27), dtype=bool)
    )

    profile.check_fits(space)


@pytest.mark.parametrize(
    ("workflow", "family", "radix", "message"),
    [
        ("voting", "qwen2.5", (3, 3, 3), "workflow 'voting' .* workflow 'self-refine'"),
        ("self-refine", "llama3", (3, 3, 3), "family 'llama3' .* family 'qwen2.5'"),
        ("self-refine", "qwen2.5", (9, 3), r"radix \(9, 3\) .* radix \(3, 3, 3\)"),
    ],
)
def test_a_profile_of_another_space_names_both_sides(workflow, family, radix, message):
    space = ConfigSpace.create(load_workflow("self-refine"), load_family("qwen2.5"))
    profile = AccuracyProfile(workflow, family, radix, np.zeros((1, 27), dtype=bool))

    with pytest.raises(ProfileError, match=message):
        profile.check_fits(space)


def test_a_subset_keeps_the_chosen_inputs_in_order():
    profile = _odd_profile()

    part = profile.subset([4, 1])

    np.testing.assert_array_equal(part.correct, profile.correct[[4, 1]])
    assert list(part.metadata["prompt"]) == [
        profile.metadata["prompt"][4],
        profile.metadata["prompt"][1],
    ]


def test_save_and_load_give_back_the_same_profile(tmp_path):
    profile = _odd_profile()
    path = tmp_path / "toy.npz"

    profile.save(path)
    loaded = load_profile(path)

    assert (loaded.workflow, loaded.family, loaded.radix) == (
        "toy",
        "toy-family",
        (5, 3),
    )
    np.testing.assert_array_equal(loaded.correct, profile.correct)
    assert loaded.correct.dtype == bool
    np.testing.assert_array_equal(
        loaded.metadata["features"], profile.metadata["features"]
    )
    assert loaded.metadata["features"].dtype == np.float32
    assert list(loaded.metadata["prompt"]) == list(profile.metadata["prompt"])
    assert list(loaded.metadata["subject"]) == ["algebra"] * 11


def test_the_file_stores_two_bytes_per_input_for_fifteen_configurations(tmp_path):
    profile = _odd_profile()
    path = tmp_path / "toy.npz"

    profile.save(path)

    with np.load(path) as archive:
        bits = archive["correct_bits"]
        assert bits.shape == (11, 2) and bits.dtype == np.uint8
        # First configuration is the high bit of the first byte.
        assert bool(bits[0, 0] >> 7) == bool(profile.correct[0, 0])
        assert int(archive["format_version"]) == 1


def test_a_missing_file_is_named(tmp_path):
    path = tmp_path / "absent.npz"

    with pytest.raises(ProfileError, match=r"absent\.npz: no such profile file"):
        AccuracyProfile.load(path)


def test_a_file_that_is_not_an_archive_is_refused(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"PK\x03\x04 this is not really a zip archive")

    with pytest.raises(ProfileError, match=r"garbage\.npz: not a readable \.npz"):
        AccuracyProfile.load(path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"radix": np.array([4, 3])}, r"radix \(4, 3\) gives 12 configurations"),
        ({"num_configs": np.array(20)}, "3 bytes per input|2 bytes per input"),
        ({"format_version": np.array(7)}, "format_version: expected 1, found 7"),
        ({"correct_bits": None}, "missing field 'correct_bits'"),
        ({"meta.difficulty": np.zeros(5, np.float32)}, "'difficulty': 5 rows"),
        ({"correct_bits": np.zeros((0, 2), np.uint8)}, "empty table"),
    ],
)
def test_a_damaged_file_gives_one_line_naming_the_problem(tmp_path, changes, message):
    path = tmp_path / "toy.npz"
    _odd_profile().save(path)
    _rewrite(path, **changes)

    with pytest.raises(ProfileError, match=message) as caught:
        AccuracyProfile.load(path)

    assert str(caught.value).startswith(str(path))
    assert "\n" not in str(caught.value)


def test_set_padding_bits_reveal_a_corrupted_file(tmp_path):
    path = tmp_path / "toy.npz"
    profile = _odd_profile()
    profile.save(path)
    bits = np.packbits(profile.correct, axis=1)
    bits[3, 1] |= 0b0000_0001  # configurations 8..14 use the top 7 bits only

    _rewrite(path, correct_bits=bits)

    with pytest.raises(ProfileError, match="padding bits past configuration 14"):
        AccuracyProfile.load(path)


def test_a_single_array_file_is_not_taken_for_a_profile(tmp_path):
    path = tmp_path / "plain.npz"
    with open(path, "wb") as out:
        np.save(out, np.zeros(3))

    with pytest.raises(ProfileError, match=r"plain\.npz: a single array"):
        AccuracyProfile.load(path)
