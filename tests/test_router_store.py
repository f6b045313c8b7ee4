"""Router files: a round trip keeps every part; a foreign or broken file is refused."""

from __future__ import annotations

import numpy as np
import pytest
from test_router_helpers import generated, random_router, with_family

from aragog.accuracy.mmlu import load_routellm_mmlu
from aragog.errors import ConfigError, ProfileError
from aragog.routing.store import load_router, save_router


@pytest.mark.parametrize("hidden", [None, 6], ids=["logistic", "mlp"])
def test_a_saved_router_loads_back_with_the_same_parts_and_decisions(tmp_path, hidden):
    router = random_router((3, 3, 3), dim=5, seed=1, hidden=hidden, workflow="wf")
    path = tmp_path / "router.npz"

    save_router(router, path)
    loaded = load_router(path)

    assert (loaded.workflow, loaded.family, loaded.radix) == ("wf", "fam", (3, 3, 3))
    assert loaded.features == router.features
    assert loaded.threshold_logit == router.threshold_logit
    assert loaded.target == router.target
    assert loaded.provenance.profile_digest == router.provenance.profile_digest
    np.testing.assert_array_equal(
        loaded.provenance.held_out, router.provenance.held_out
    )
    np.testing.assert_array_equal(loaded.validation.correct, router.validation.correct)
    np.testing.assert_array_equal(loaded.prior, router.prior)
    features = np.random.default_rng(2).standard_normal((25, 5)).astype(np.float32)
    np.testing.assert_array_equal(loaded.logits(features), router.logits(features))
    np.testing.assert_array_equal(
        loaded.route_many(features)[0], router.route_many(features)[0]
    )


def test_a_router_of_another_workflow_is_refused_in_one_line(tmp_path):
    router = random_router((3, 3, 3), dim=8, seed=3, workflow="self-refine")
    path = tmp_path / "router.npz"
    save_router(router, path)

    with pytest.raises(ProfileError) as caught:
        load_router(path).check_fits(load_routellm_mmlu(), where=str(path))

    message = str(caught.value)
    assert message == (
        f"{path}: trained for workflow 'self-refine', the profile's workflow is 'mmlu'"
    )
    assert "\n" not in message


def test_a_router_of_another_radix_is_refused_naming_both():
    router = random_router((3, 3), dim=8, seed=4, workflow="self-refine")
    profile = generated("self-refine", 10, seed=5)
    router = with_family(router, profile.family)

    with pytest.raises(
        ProfileError, match=r"radix \(3, 3\), the profile's radix is \(3, 3, 3\)"
    ):
        router.check_fits(profile)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello\n", r"not a router file \(not an \.npz archive\)"),
        (b"PK\x03\x04broken", r"not a readable router file"),
    ],
    ids=["text", "truncated-zip"],
)
def test_a_file_that_is_not_a_router_is_refused_naming_it(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)

    with pytest.raises(ConfigError, match=message):
        load_router(path)


def test_a_profile_file_is_not_mistaken_for_a_router(tmp_path):
    path = tmp_path / "profile.npz"
    generated("self-refine", 10, seed=6).save(path)

    with pytest.raises(ConfigError, match=r"not an aragog router file \(no field"):
        load_router(path)


def test_a_missing_router_file_is_named():
    with pytest.raises(ConfigError, match=r"nowhere\.npz: no such router file"):
        load_router("nowhere.npz")
