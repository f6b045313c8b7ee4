"""The RouteLLM MMLU responses read as a one-agent, two-model profile."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from aragog.accuracy.mmlu import MMLU_MODELS, load_routellm_mmlu
from aragog.accuracy.profile import AccuracyProfile
from aragog.errors import ProfileError

_HEADER = ["prompt", *MMLU_MODELS]


def _write(path, rows, header=_HEADER):
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture(scope="module")
def shipped():
    return load_routellm_mmlu()


def test_the_shipped_files_hold_14042_questions_of_57_subjects(shipped):
    assert shipped.num_inputs == 14_042
    assert shipped.radix == (2,)
    assert (shipped.workflow, shipped.family) == ("mmlu", "routellm")
    assert len(set(shipped.metadata["subject"])) == 57
    assert shipped.metadata["subject"][0] == "abstract_algebra"


def test_the_shipped_joint_counts_match_the_data_readme(shipped):
    cheap, expensive = shipped.correct[:, 0], shipped.correct[:, 1]

    counts = (
        int(np.sum(cheap & expensive)),
        int(np.sum(~cheap & ~expensive)),
        int(np.sum(cheap & ~expensive)),
        int(np.sum(~cheap & expensive)),
    )

    assert counts == (8818, 1985, 742, 2497)


def test_a_prompt_keeps_its_lines_and_choices(shipped):
    first = shipped.metadata["prompt"][0]

    assert first == (
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), "
        "sqrt(18)) over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
    )


def test_the_mmlu_profile_survives_a_save_and_a_load(shipped, tmp_path):
    path = tmp_path / "mmlu.npz"

    shipped.save(path)
    loaded = AccuracyProfile.load(path)

    np.testing.assert_array_equal(loaded.correct, shipped.correct)
    assert list(loaded.metadata["prompt"]) == list(shipped.metadata["prompt"])
    assert list(loaded.metadata["subject"]) == list(shipped.metadata["subject"])


def test_a_folder_is_read_in_file_name_order_with_the_subject_from_the_name(
    tmp_path,
):
    _write(
        tmp_path / "mmlu_zoology.csv", [['Says "hi", then\nleaves', "False", "True"]]
    )
    _write(
        tmp_path / "mmlu_algebra.csv",
        [["1+1?", "True", "True"], ["2+2?", "False", "False"]],
    )
    (tmp_path / "notes.txt").write_text("not a csv file")

    profile = load_routellm_mmlu(tmp_path)

    assert list(profile.metadata["subject"]) == ["algebra", "algebra", "zoology"]
    assert profile.metadata["prompt"][2] == 'Says "hi", then\nleaves'
    np.testing.assert_array_equal(
        profile.correct, [[True, True], [False, False], [False, True]]
    )


def test_columns_are_found_by_name_not_by_position(tmp_path):
    header = [MMLU_MODELS[1], "prompt", MMLU_MODELS[0]]
    _write(tmp_path / "mmlu_x.csv", [["True", "q", "False"]], header=header)

    profile = load_routellm_mmlu(tmp_path)

    np.testing.assert_array_equal(profile.correct, [[False, True]])


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(ProfileError, match="absent: no such folder"):
        load_routellm_mmlu(tmp_path / "absent")


def test_a_folder_without_csv_files_is_refused(tmp_path):
    with pytest.raises(ProfileError, match=r"no \.csv files"):
        load_routellm_mmlu(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "mmlu_bad.csv: empty file"),
        ("prompt,gpt-4-1106-preview\nq,True\n", "no column 'mistralai/Mixtral"),
        (
            "prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview\n"
            "q,True,Maybe\n",
            "line 2: column 'gpt-4-1106-preview': expected True or False, found "
            "'Maybe'",
        ),
        (
            "prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview\nq,True\n",
            "line 2: 2 fields, the header has 3",
        ),
        (
            "prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview\n",
            "no questions after the header",
        ),
    ],
)
def test_a_malformed_file_gives_one_line_naming_it(tmp_path, content, message):
    (tmp_path / "mmlu_bad.csv").write_text(content, encoding="utf-8")

    with pytest.raises(ProfileError, match=message) as caught:
        load_routellm_mmlu(tmp_path)

    assert "\n" not in str(caught.value)
