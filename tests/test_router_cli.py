"""``aragog router``, run as a user runs it: train, eval, and one line per bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from test_router_helpers import (
    generated,
    random_router,
    requires_sklearn,
    with_family,
)

from aragog.routing.store import save_router

# The router group joins aragog's entry point here if the CLI does not list it yet,
# so errors go through the same one-line handler users see.
_RUNNER = (
    "from aragog import cli as top; from aragog.routing.cli import router; "
    "'router' in top.cli.commands or top.cli.add_command(router); top.main()"
)


def _aragog(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _RUNNER, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A router trained by the CLI on a generated self-refine profile."""
    folder = tmp_path_factory.mktemp("router")
    profile = folder / "profile.npz"
    generated("self-refine", 800, seed=31).save(profile)
    router = folder / "router.npz"
    proc = _aragog(
        "router", "train", "--profile", profile, "--inputs", "features",
        "--out", router, "--json", folder / "train.json",
    )  # fmt: skip
    return folder, profile, router, proc


@requires_sklearn
def test_train_writes_a_router_and_its_validation_figures(trained):
    folder, _, router, proc = trained

    doc = json.loads((folder / "train.json").read_text())

    assert proc.returncode == 0, proc.stderr
    assert router.is_file()
    assert doc["workflow"] == "self-refine"
    assert doc["num_configs"] == 27
    assert doc["features"] == {"kind": "features", "model": "", "max_seq_length": 0,
                               "dim": 8}  # fmt: skip
    assert doc["num_held_out"] == 160
    assert doc["validation"]["num_inputs"] == 640
    assert doc["validation"]["accuracy_kept"] >= 0.98
    assert "tau" in proc.stdout


@requires_sklearn
def test_eval_judges_the_held_out_inputs_at_the_setting_and_over_the_curve(trained):
    folder, profile, router, _ = trained
    out = folder / "eval.json"

    proc = _aragog(
        "router", "eval", "--router", router, "--profile", profile,
        "--inputs", "features", "--budget-ms", "50", "--json", out,
    )  # fmt: skip

    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["judged"] == "held-out inputs"
    assert doc["num_inputs"] == 160
    calibrated = doc["calibrated"]
    assert 0 < calibrated["mean_evaluations"] < 27
    assert calibrated["cheap_share"] > calibrated["random_cheap_share"]
    assert doc["oracle"]["accuracy_kept"] == 1.0
    taus = [point["tau"] for point in doc["curve"]]
    assert taus == sorted(taus, reverse=True)
    assert doc["curve"][0]["tau"] == 1.0
    assert doc["curve"][0]["cheap_share"] == 0.0
    assert doc["curve"][-1]["flexibility"] >= doc["curve"][0]["flexibility"]
    assert doc["budget"]["complete_share"] > 0.9
    assert "curve over the knob" in proc.stdout


@requires_sklearn
def test_eval_on_a_new_profile_of_the_workflow_judges_all_its_inputs(trained):
    folder, _, router, _ = trained
    other = folder / "other.npz"
    generated("self-refine", 120, seed=32).save(other)
    out = folder / "other.json"

    proc = _aragog(
        "router", "eval", "--router", router, "--profile", other,
        "--inputs", "features", "--target", "0.9", "--json", out,
    )  # fmt: skip

    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["num_inputs"] == 120
    assert doc["judged"] == "inputs (a new profile)"
    assert doc["target"] == 0.9


def test_inputs_of_another_length_than_the_profile_get_one_line(tmp_path):
    profile = tmp_path / "profile.npz"
    generated("self-refine", 5, seed=33).save(profile)
    texts = tmp_path / "inputs.txt"
    texts.write_text("one\ntwo\nthree\n")

    proc = _aragog(
        "router", "train", "--profile", profile, "--inputs", texts,
        "--out", tmp_path / "r.npz",
    )  # fmt: skip

    assert _one_line_error(proc) == (
        f"error: --inputs {texts}: 3 inputs, the profile 'self-refine' has 5"
    )


def test_an_empty_profile_gets_one_line(tmp_path):
    profile = tmp_path / "empty.npz"
    np.savez(
        profile,
        format_version=np.array(1),
        workflow=np.array("self-refine"),
        family=np.array("qwen2.5"),
        radix=np.array([3, 3, 3]),
        num_configs=np.array(27),
        correct_bits=np.zeros((0, 4), dtype=np.uint8),
    )

    proc = _aragog(
        "router", "train", "--profile", profile, "--inputs", "features",
        "--out", tmp_path / "r.npz",
    )  # fmt: skip

    assert _one_line_error(proc) == (
        f"error: {profile}: correct: empty table (0 inputs x 27 configurations)"
    )


def test_a_router_from_another_workflow_gets_one_line(tmp_path):
    router = tmp_path / "router.npz"
    save_router(
        random_router((3, 3, 3), dim=8, seed=34, workflow="self-refine"), router
    )
    profile = tmp_path / "voting.npz"
    generated("voting", 5, seed=35).save(profile)

    proc = _aragog(
        "router", "eval", "--router", router, "--profile", profile,
        "--inputs", "features",
    )  # fmt: skip

    assert _one_line_error(proc) == (
        f"error: {router}: trained for workflow 'self-refine', the profile's workflow "
        "is 'voting'"
    )


def test_texts_for_a_router_that_reads_features_get_one_line(tmp_path):
    router = tmp_path / "router.npz"
    base = random_router((3, 3, 3), dim=8, seed=36, workflow="self-refine")
    save_router(with_family(base, "qwen2.5"), router)
    profile = tmp_path / "profile.npz"
    generated("self-refine", 3, seed=37).save(profile)
    texts = tmp_path / "inputs.jsonl"
    texts.write_text('"a"\n{"text": "b"}\n{"prompt": "c"}\n')

    proc = _aragog(
        "router", "eval", "--router", router, "--profile", profile,
        "--inputs", texts,
    )  # fmt: skip

    assert "gives texts; give features" in _one_line_error(proc)


def test_a_malformed_jsonl_line_is_named(tmp_path):
    profile = tmp_path / "profile.npz"
    generated("self-refine", 2, seed=38).save(profile)
    texts = tmp_path / "inputs.jsonl"
    texts.write_text('"fine"\n[1, 2]\n')

    proc = _aragog(
        "router", "train", "--profile", profile, "--inputs", texts,
        "--out", tmp_path / "r.npz",
    )  # fmt: skip

    assert _one_line_error(proc) == (
        f"error: {texts}: line 2: expected a string or an object with a 'text' "
        "field, found list"
    )
