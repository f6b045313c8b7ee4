"""The real MMLU files end to end: prompts embedded, a router trained and judged.

The full run (14,042 prompts, minutes of embedding on two cores) is the measurement
the README reports; here a stratified subset of five questions per subject goes
through the same commands, so the test checks the plumbing and the arithmetic of the
figures, not their size.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from test_router_helpers import requires_embeddings, requires_sklearn

from aragog.accuracy.mmlu import load_routellm_mmlu
from aragog.routing.quality import random_share_at

pytestmark = [requires_embeddings, requires_sklearn]

PER_SUBJECT = 5
_RUNNER = (
    "from aragog import cli as top; from aragog.routing.cli import router; "
    "'router' in top.cli.commands or top.cli.add_command(router); top.main()"
)


def _aragog(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _RUNNER, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def small_mmlu(tmp_path_factory):
    """The first five questions of every subject, as a profile file."""
    folder = tmp_path_factory.mktemp("mmlu")
    full = load_routellm_mmlu()
    subjects = full.metadata["subject"]
    picked = np.concatenate(
        [np.flatnonzero(subjects == s)[:PER_SUBJECT] for s in np.unique(subjects)]
    )
    profile = full.subset(np.sort(picked))
    path = folder / "mmlu_small.npz"
    profile.save(path)
    return folder, path, profile


def test_train_and_eval_on_mmlu_prompts_report_consistent_figures(small_mmlu):
    folder, path, profile = small_mmlu
    router, cache = folder / "router.npz", folder / "cache"
    common = ("--profile", path, "--inputs", "prompts", "--cache-dir", cache)

    trained = _aragog(
        "router", "train", *common, "--out", router, "--held-out", "0.4",
        "--folds", "3", "--json", folder / "train.json",
    )  # fmt: skip
    judged = _aragog(
        "router", "eval", "--router", router, *common, "--budget-ms", "20",
        "--json", folder / "eval.json",
    )  # fmt: skip

    assert trained.returncode == 0, trained.stderr
    assert judged.returncode == 0, judged.stderr
    train_doc = json.loads((folder / "train.json").read_text())
    doc = json.loads((folder / "eval.json").read_text())
    assert profile.num_inputs == 57 * PER_SUBJECT
    assert train_doc["features"]["model"] == "all-MiniLM-L6-v2"
    assert train_doc["features"]["dim"] == 384
    # Two of five questions per subject are held out (0.4 x 5, per subject).
    assert doc["num_inputs"] == 57 * 2
    assert doc["judged"] == "held-out inputs"
    calibrated = doc["calibrated"]
    held_out = _held_out_correct(profile, router)
    assert calibrated["reference_accuracy"] == pytest.approx(held_out[:, 1].mean())
    assert calibrated["random_cheap_share"] == pytest.approx(
        random_share_at(
            calibrated["accuracy"], held_out[:, 0].mean(), held_out[:, 1].mean()
        )
    )
    # Two configurations: at most the cheap one is ever asked about.
    assert calibrated["mean_evaluations"] <= 1.0
    assert calibrated["flexibility"] == pytest.approx(
        0.5 + calibrated["cheap_share"] / 2
    )
    assert doc["budget"]["complete_share"] > 0.9
    # Eval read the held-out rows from the table training cached.
    assert len(list(cache.glob("*.npy"))) == 1


def _held_out_correct(profile, router_path) -> np.ndarray:
    with np.load(router_path) as archive:
        held_out = archive["held_out"]
    return profile.correct[held_out]
