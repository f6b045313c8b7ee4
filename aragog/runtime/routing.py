"""The runtime's router: a run's viable set, from a learned router or an oracle.

A workflow with a learned router (``router.learned`` in the deployment file, or
``aragog serve --router FILE``) routes each run from its text: the router's embedding
model encodes it (the runtime does that in a worker thread, off the event loop), and
the router's heads and lattice settle the viable set within a time budget (see
:meth:`WorkflowRouter.route_learned`). The profile row described next is still taken,
only to label a run's outcome.

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
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from aragog.accuracy.generator import generate_profile
from aragog.accuracy.profile import AccuracyProfile, load_profile
from aragog.configs import ConfigSpace
from aragog.errors import ConfigError
from aragog.routing.learned import LearnedRouter
from aragog.routing.oracle import OracleRouter
from aragog.runtime.errors import InvalidInput, RunFailed

logger = logging.getLogger(__name__)

DEFAULT_CHOICES = ("generated", "all", "largest")


@dataclass(frozen=True, slots=True)
class Route:
    """Where a run was routed.

    Attributes:
        profile_input: the profile row that labels the run's outcome.
        viable: the viable set, cut to servable configurations (int64 ids).
        router: ``oracle`` or ``learned``.
        num_evaluations: classifier evaluations the learned router made (0 for the
            oracle).
        complete: whether the learned router settled every configuration before its
            budget ran out (always true for the oracle).
    """

    profile_input: int
    viable: np.ndarray
    router: str = "oracle"
    num_evaluations: int = 0
    complete: bool = True


class LearnedRouting:
    """A learned router bound to the embedding model that reads its inputs.

    Args:
        router: the router, checked to fit the workflow's space.
        source: the router file, for logs and ``GET /v1/workflows``.
        embedder: a :class:`aragog.routing.embeddings.TextEmbedder` of the model the
            router was trained on.
    """

    def __init__(self, router: LearnedRouter, source: str, embedder: Any) -> None:
        self.router = router
        self.source = source
        self.embedder = embedder

    def load(self) -> None:
        """Load the embedding model and check its width against the router's
        (blocking, seconds: the runtime calls it from a worker thread at start).

        Raises:
            ConfigError: the model's embeddings are not as wide as the router reads.
        """
        started = time.perf_counter()
        dim = self.embedder.dim
        if dim != self.router.features.dim:
            raise ConfigError(
                f"{self.source}: reads {self.router.features.dim}-wide embeddings, "
                f"{self.embedder.name} makes {dim}-wide ones"
            )
        logger.info(
            "learned router %s: %s loaded in %.1f s",
            self.source,
            self.embedder.name,
            time.perf_counter() - started,
        )

    def embed(self, text: str) -> np.ndarray:
        """float32 ``[dim]``: the run's embedding (blocking: seconds on the first
        call, which loads the model, then milliseconds)."""
        return np.asarray(self.embedder.encode_one(text), dtype=np.float32)


class WorkflowRouter:
    """The viable sets of one workflow's runs.

    Args:
        space: the workflow's configuration space.
        profile: the accuracy profile the oracle reads (fitting ``space``).
        source: where the profile came from, for logs and ``GET /v1/workflows``.
        served_models: the models that have at least one engine.
        learned: the learned router that gives viable sets in place of the oracle.
    """

    def __init__(
        self,
        space: ConfigSpace,
        profile: AccuracyProfile,
        source: str,
        served_models: frozenset[str],
        learned: LearnedRouting | None = None,
    ) -> None:
        self.space = space
        self.profile = profile
        self.source = source
        self.learned = learned
        self._oracle = OracleRouter(profile)
        # A configuration is servable when each of its agents' models has an engine.
        family_served = np.array(
            [m in served_models for m in space.family.model_names], dtype=bool
        )
        self._servable = family_served[space.model_ids].all(axis=1)

    @property
    def num_inputs(self) -> int:
        return self.profile.num_inputs

    def row(self, fields: Mapping[str, str], profile_input: int | None) -> int:
        """The run's profile row: the one it names, else a hash of its input.

        Raises:
            InvalidInput: ``profile_input`` is not a row of the profile.
        """
        if profile_input is None:
            return input_row(fields, self.num_inputs)
        if 0 <= profile_input < self.num_inputs:
            return profile_input
        raise InvalidInput(
            f"profile_input: expected a row in [0, {self.num_inputs}) of the "
            f"{self.source} profile, found {profile_input}"
        )

    def route(self, fields: Mapping[str, str], profile_input: int | None) -> Route:
        """The run's profile row and the oracle's viable set of that row.

        Raises:
            InvalidInput: ``profile_input`` is not a row of the profile.
            RunFailed: no viable configuration of this row runs on the deployment's
                engines (the deployment leaves out a model the row needs).
        """
        row = self.row(fields, profile_input)
        viable = self._servable_only(
            self._oracle.viable_set(row), f"profile input {row}"
        )
        return Route(row, viable)

    def route_learned(self, row: int, features: np.ndarray, budget_s: float) -> Route:
        """The learned router's viable set for a run's embedding.

        Heads are evaluated until ``budget_s`` has passed; what is unsettled then is
        not viable (the most expensive configuration always is).

        Raises:
            RunFailed: no configuration the router let through runs on the deployed
                engines.
        """
        assert self.learned is not None, "route_learned needs a learned router"
        result = self.learned.router.route(features, budget_s=budget_s)
        viable = self._servable_only(result.viable, "the learned router's input")
        return Route(row, viable, "learned", result.num_evaluations, result.complete)

    def _servable_only(self, viable: np.ndarray, what: str) -> np.ndarray:
        servable = viable[self._servable[viable]]
        if servable.size == 0:
            raise RunFailed(
                f"workflow {self.space.workflow.name!r}: none of the {viable.size} "
                f"viable configurations of {what} runs on the deployed engines (a "
                "model they need has no engine)"
            )
        return servable

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
    learned: LearnedRouting | None = None,
) -> WorkflowRouter:
    """The router of one workflow: its measured profile if given, else the default,
    and its learned router if it has one.

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
    return WorkflowRouter(space, profile, source, served_models, learned)


def build_learned(
    path: str, embedding_model: str | None, embedders: dict[tuple, Any]
) -> LearnedRouting:
    """The learned router at ``path`` with the embedding model that reads its runs
    (the folder ``embedding_model``, or the packaged default); routers reading the
    same model with the same token limit share one embedder in ``embedders``.

    The model itself loads later, on :meth:`LearnedRouting.load` (seconds).

    Raises:
        ConfigError: the file is not a router, or the embedding model is not the one
            the router was trained on.
    """
    from aragog.routing.embeddings import TextEmbedder
    from aragog.routing.store import load_router

    router = load_router(path)
    limit = router.features.max_seq_length or None
    key = (embedding_model, limit)
    if key not in embedders:
        embedders[key] = TextEmbedder(embedding_model, max_seq_length=limit)
    embedder = embedders[key]
    if embedder.name != router.features.model:
        raise ConfigError(
            f"{path}: trained on embeddings of {router.features.model!r}, the "
            f"deployment's router.embedding_model is {embedder.name!r}"
        )
    return LearnedRouting(router, path, embedder)
