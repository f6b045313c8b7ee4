"""The runtime's router: a run's viable set, from an oracle over an accuracy profile.

Each served workflow has an accuracy profile: a measured one named in the deployment
file, or a default. A run is mapped to one row (input) of its workflow's profile, and
the oracle gives that row's viable set (:class:`aragog.routing.oracle.OracleRouter`).
The row is the one the run names (``profile_input``: benchmarks replay a profile's
inputs that way), otherwise a stable hash of the run's input, so the same input always
gets the same row, on every server and across restarts.

Defaults, for a workflow with no measured profile (``router.default``):

- ``generated``: the seeded synthetic profile that ``aragog simulate`` uses (same seed,
  same number of inputs), so a real run and a simulated one see the same viable sets.
  Its labels are synthetic: they exercise just-in-time routing with realistic viable
  sets but say nothing about whether a real answer is right.
- ``all``: every configuration is viable (the scheduler may pick the cheapest models;
  no accuracy is protected).
- ``largest``: only the most expensive configuration is viable (accuracy is safe; the
  scheduler chooses only among replicas).

Finally a viable set is cut to the configurations whose every model has an engine in
the deployment: the scheduler could never place the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from aragog.accuracy.generator import generate_profile
from aragog.accuracy.profile import AccuracyProfile, load_profile
from aragog.configs import ConfigSpace
from aragog.routing.oracle import OracleRouter
from aragog.runtime.errors import InvalidInput, RunFailed

logger = logging.getLogger(__name__)

DEFAULT_CHOICES = ("generated", "all", "largest")


@dataclass(frozen=True, slots=True)
class Route:
    """Where a run was routed: its profile row and its viable set (servable ids)."""

    profile_input: int
    viable: np.ndarray


class WorkflowRouter:
    """The viable sets of one workflow's runs.

    Args:
        space: the workflow's configuration space.
        profile: the accuracy profile the oracle reads (fitting ``space``).
        source: where the profile came from, for logs and ``GET /v1/workflows``.
        served_models: the models that have at least one engine.
    """

    def __init__(
        self,
        space: ConfigSpace,
        profile: AccuracyProfile,
        source: str,
        served_models: frozenset[str],
    ) -> None:
        self.space = space
        self.profile = profile
        self.source = source
        self._oracle = OracleRouter(profile)
        # A configuration is servable when each of its agents' models has an engine.
        family_served = np.array(
            [m in served_models for m in space.family.model_names], dtype=bool
        )
        self._servable = family_served[space.model_ids].all(axis=1)

    @property
    def num_inputs(self) -> int:
        return self.profile.num_inputs

    def route(self, fields: Mapping[str, str], profile_input: int | None) -> Route:
        """The run's profile row and viable set.

        Raises:
            InvalidInput: ``profile_input`` is not a row of the profile.
            RunFailed: no viable configuration of this row runs on the deployment's
                engines (the deployment leaves out a model the row needs).
        """
        if profile_input is None:
            row = input_row(fields, self.num_inputs)
        elif 0 <= profile_input < self.num_inputs:
            row = profile_input
        else:
            raise InvalidInput(
                f"profile_input: expected a row in [0, {self.num_inputs}) of the "
                f"{self.source} profile, found {profile_input}"
            )
        viable = self._oracle.viable_set(row)
        servable = viable[self._servable[viable]]
        if servable.size == 0:
            raise RunFailed(
                f"workflow {self.space.workflow.name!r}: none of the "
                f"{viable.size} viable configurations of profile input {row} runs on "
                "the deployed engines (a model they need has no engine)"
            )
        return Route(row, servable)

    def outcome(self, row: int, config: int) -> tuple[bool, bool]:
        """Whether the profile says ``config`` is right on ``row``, and whether the
        most expensive configuration is."""
        correct = self.profile.correct
        return bool(correct[row, config]), bool(
            correct[row, self.profile.most_expensive]
        )


def input_row(fields: Mapping[str, str], num_inputs: int) -> int:
    """A stable profile row for an input: a hash of its canonical JSON."""
    text = json.dumps(dict(fields), sort_keys=True, ensure_ascii=False)
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_inputs


def default_profile(
    space: ConfigSpace, choice: str, num_inputs: int, seed: int
) -> AccuracyProfile:
    """The profile a workflow without a measured one uses (see the module note)."""
    if choice == "generated":
        return generate_profile(space, num_inputs, seed)

    # One row, read by every run: all configurations right, or only the largest.
    if choice == "all":
        correct = np.ones((1, space.num_configs), dtype=bool)
    elif choice == "largest":
        correct = np.zeros((1, space.num_configs), dtype=bool)
        correct[0, space.most_expensive] = True
    else:
        raise ValueError(f"unknown default {choice!r}")
    return AccuracyProfile(
        workflow=space.workflow.name,
        family=space.family.name,
        radix=tuple(space.radix),
        correct=correct,
    )


def build_router(
    space: ConfigSpace,
    profile_path: str | None,
    default: str,
    num_inputs: int,
    seed: int,
    served_models: frozenset[str],
) -> WorkflowRouter:
    """The router of one workflow: its measured profile if given, else the default.

    Raises:
        ProfileError: the profile file cannot be read or does not fit the workflow.
    """
    if profile_path is not None:
        profile = load_profile(profile_path)
        profile.check_fits(space)
        source = profile_path
    else:
        profile = default_profile(space, default, num_inputs, seed)
        source = f"default:{default}"
    logger.info(
        "workflow %s: router over %s (%d inputs x %d configurations)",
        space.workflow.name,
        source,
        profile.num_inputs,
        profile.num_configs,
    )
    return WorkflowRouter(space, profile, source, served_models)
