"""The learned router: a request's viable set, predicted from its features.

Where the oracle reads labels that real traffic does not have, this router predicts
them: a head per configuration (:mod:`aragog.routing.heads`) says how likely that
configuration is to preserve accuracy on the input, the calibrated knob
(:mod:`aragog.routing.calibrate`) turns that into a decision, and the dominance
lattice (:mod:`aragog.routing.lattice`) asks as few heads as the order allows.

One request (:meth:`LearnedRouter.route`) computes the shared representation once
and then evaluates heads one at a time, as the lattice asks, under an optional time
budget. Many requests at once (:meth:`LearnedRouter.route_many`) compute every logit
in one matrix product and run the lattice search for all of them in lockstep; both
settle the same sets.

A router is tied to one workflow's configuration space (workflow, family, radix)
and to one kind of feature (a named embedding model, or generated features of a
given width); :meth:`LearnedRouter.check_fits` refuses anything else in one line.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np

from aragog.accuracy.profile import AccuracyProfile
from aragog.errors import ConfigError, ProfileError
from aragog.routing.base import ViableSets
from aragog.routing.calibrate import (
    CurvePoint,
    calibrate,
    decision_rates,
    evaluate_setting,
    logit_to_probability,
)
from aragog.routing.heads import Heads
from aragog.routing.lattice import DominanceLattice, PruneResult

logger = logging.getLogger(__name__)

FEATURE_KINDS = ("embedding", "features")


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """What a router reads from each input.

    Attributes:
        kind: ``embedding`` (a text embedding) or ``features`` (the ``features``
            metadata of a generated profile).
        model: the embedding model's name; empty for ``features``.
        max_seq_length: the embedding's token limit; 0 for the model's own, and for
            ``features``.
        dim: length of one feature vector.
    """

    kind: str
    model: str
    max_seq_length: int
    dim: int

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise ConfigError(
                f"feature kind: expected one of {FEATURE_KINDS}, found {self.kind!r}"
            )
        if self.dim < 1:
            raise ConfigError(f"feature dim: expected at least 1, found {self.dim}")

    def describe(self) -> str:
        if self.kind == "features":
            return f"generated features ({self.dim} wide)"
        limit = f", {self.max_seq_length} tokens" if self.max_seq_length else ""
        return f"embeddings of {self.model} ({self.dim} wide{limit})"


@dataclass(frozen=True, slots=True)
class Validation:
    """What calibration saw, kept so the knob can be set again for another target
    without retraining and without looking at held-out inputs.

    Attributes:
        logits: float32 ``[n, C]``, out-of-fold logits of the validation inputs.
        correct: bool ``[n, C]``, their truth.
        costs: float64 ``[C]``, the configuration costs calibration used.
    """

    logits: np.ndarray
    correct: np.ndarray
    costs: np.ndarray


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a router came from, so that evaluation on its own profile uses only
    the inputs it never saw.

    Attributes:
        profile_digest: SHA-256 of the training profile's correctness table.
        held_out: int64 ids of that profile's inputs kept out of training and
            calibration.
        seed: the seed of the split, folds and heads.
    """

    profile_digest: str
    held_out: np.ndarray
    seed: int


@dataclass(frozen=True, slots=True, eq=False)
class LearnedRouter:
    """Heads, knob and lattice for one workflow's configuration space.

    Attributes:
        workflow, family, radix: the space the router routes in.
        features: what it reads from each input.
        heads: the fitted classifiers, one output per configuration.
        threshold_logit: the calibrated knob (see :mod:`aragog.routing.calibrate`).
        target: the accuracy share the knob was calibrated for.
        validation: what calibration saw.
        provenance: the training profile and its held-out inputs.
        prior: float32 ``[C]``, derived: the share of validation inputs each head
            calls accurate at the knob, which orders the lattice search.
    """

    workflow: str
    family: str
    radix: tuple[int, ...]
    features: FeatureSpec
    heads: Heads
    threshold_logit: float
    target: float
    validation: Validation
    provenance: Provenance
    prior: np.ndarray = field(init=False, repr=False)
    lattice: DominanceLattice = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "radix", tuple(int(r) for r in self.radix))
        object.__setattr__(self, "lattice", DominanceLattice(self.radix))
        num_configs = self.lattice.num_configs
        checks = (
            ("heads", self.heads.num_configs),
            ("validation logits", self.validation.logits.shape[1]),
        )
        for name, size in checks:
            if size != num_configs:
                raise ConfigError(
                    f"router {self.workflow!r}: {name}: {size} configurations, the "
                    f"radix {self.radix} has {num_configs}"
                )
        if self.heads.feature_dim != self.features.dim:
            raise ConfigError(
                f"router {self.workflow!r}: heads read {self.heads.feature_dim} "
                f"features, the feature spec says {self.features.dim}"
            )
        prior = decision_rates(self.validation.logits, self.threshold_logit)
        prior.setflags(write=False)
        object.__setattr__(self, "prior", prior)

    @property
    def num_configs(self) -> int:
        return self.lattice.num_configs

    @property
    def threshold(self) -> float:
        """The knob as the probability ``tau`` a head must reach."""
        return logit_to_probability(self.threshold_logit)

    def with_target(self, target: float) -> LearnedRouter:
        """The same router with the knob calibrated again, on the saved validation
        inputs, for another ``target``.

        Raises:
            ConfigError: ``target`` outside (0, 1].
        """
        point = self.validation_point(target)
        return replace(self, threshold_logit=point.threshold_logit, target=target)

    def validation_point(self, target: float | None = None) -> CurvePoint:
        """The figures on the validation inputs at the knob for ``target`` (the
        router's own when ``None``)."""
        val = self.validation
        if target is None:
            return evaluate_setting(
                self.lattice, val.logits, val.correct, val.costs, self.threshold_logit
            )
        return calibrate(self.lattice, val.logits, val.correct, val.costs, target)

    def check_fits(self, profile: AccuracyProfile, where: str = "router") -> None:
        """Check that ``profile`` is of this router's configuration space.

        Raises:
            ProfileError: the workflow, the family or the radix differ; one line
                naming ``where``, the router's value and the profile's.
        """
        checks = (
            ("workflow", self.workflow, profile.workflow),
            ("family", self.family, profile.family),
            ("radix", self.radix, tuple(profile.radix)),
        )
        for name, mine, theirs in checks:
            if mine != theirs:
                raise ProfileError(
                    f"{where}: trained for {name} {mine!r}, the profile's {name} is "
                    f"{theirs!r}"
                )

    def logits(self, features: np.ndarray) -> np.ndarray:
        """float32 ``[n, C]``: every configuration's logit for every row of
        ``features`` (``[n, dim]``), in one batch.

        Raises:
            ConfigError: ``features`` is not ``[n, dim]``.
        """
        return self.heads.logits(self._checked(features, 2))

    def route(
        self, features: np.ndarray, *, budget_s: float | None = None
    ) -> PruneResult:
        """The viable set of one request, from its feature vector (``[dim]``).

        The shared representation is computed once; then heads are evaluated one
        at a time as the lattice asks. With ``budget_s``, no head is evaluated
        after that many seconds from the call: what is unsettled then is not
        viable (the most expensive configuration always is).

        Raises:
            ConfigError: ``features`` is not ``[dim]`` or ``budget_s`` is negative.
        """
        started = time.perf_counter()
        if budget_s is not None and budget_s < 0:
            raise ConfigError(f"budget: expected >= 0 s, found {budget_s}")
        representation = self.heads.represent(self._checked(features, 1))
        weights, bias = self.heads.out_weights, self.heads.out_bias
        threshold = self.threshold_logit

        # float32 throughout, as the batched path computes it.
        def is_accurate(config: int) -> bool:
            return bool(weights[config] @ representation + bias[config] >= threshold)

        deadline = None if budget_s is None else started + budget_s
        result = self.lattice.prune(is_accurate, self.prior, deadline_s=deadline)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "routed one request: %d viable of %d after %d evaluations in %.3f ms",
                result.viable.size,
                self.num_configs,
                result.num_evaluations,
                (time.perf_counter() - started) * 1e3,
            )
        return result

    def route_many(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Route every row of ``features`` (``[n, dim]``) at once: bool ``[n, C]``
        viable masks and int64 ``[n]`` evaluations, the same sets as :meth:`route`
        without a budget."""
        decisions = self.logits(features) >= self.threshold_logit
        return self.lattice.prune_many(decisions, self.prior)

    def bind(self, features: np.ndarray) -> BoundLearnedRouter:
        """This router over a fixed table of inputs, as the :class:`Router`
        protocol wants: input ``i`` is row ``i`` of ``features``."""
        return BoundLearnedRouter(self, self._checked(features, 2))

    def _checked(self, features: np.ndarray, ndim: int) -> np.ndarray:
        array = np.asarray(features, dtype=np.float32)
        if array.ndim != ndim or array.shape[-1] != self.features.dim:
            shape = "[dim]" if ndim == 1 else "[inputs, dim]"
            raise ConfigError(
                f"router {self.workflow!r}: features: expected {shape} with dim "
                f"{self.features.dim} ({self.features.describe()}), found "
                f"{array.shape}"
            )
        return array


class BoundLearnedRouter:
    """A learned router over a fixed table of inputs (the :class:`Router`
    protocol): what the simulator replays.

    Viable sets are routed once, all together, on first use.
    """

    def __init__(self, router: LearnedRouter, features: np.ndarray) -> None:
        self._router = router
        self._features = features
        self._mask: np.ndarray | None = None

    @property
    def num_inputs(self) -> int:
        return int(self._features.shape[0])

    def viable_mask(self) -> np.ndarray:
        """bool ``[num_inputs, num_configs]`` (read-only)."""
        if self._mask is None:
            mask, _ = self._router.route_many(self._features)
            mask.setflags(write=False)
            self._mask = mask
        return self._mask

    def viable_set(self, input_index: int) -> np.ndarray:
        """int64 ids of input ``input_index``'s viable configurations, sorted; the
        most expensive configuration is always among them.

        Raises:
            ProfileError: ``input_index`` is not an input of the table.
        """
        if not 0 <= input_index < self.num_inputs:
            raise ProfileError(
                f"router {self._router.workflow!r}: input {input_index} out of range "
                f"[0, {self.num_inputs})"
            )
        return np.flatnonzero(self.viable_mask()[input_index]).astype(np.int64)

    def viable_sets(self) -> ViableSets:
        """Every input's viable set, in the flat layout of a scheduling round."""
        mask = self.viable_mask()
        _, configs = np.nonzero(mask)
        offsets = np.zeros(self.num_inputs + 1, dtype=np.int64)
        np.cumsum(mask.sum(axis=1, dtype=np.int64), out=offsets[1:])
        return ViableSets(offsets=offsets, configs=configs.astype(np.int64))
