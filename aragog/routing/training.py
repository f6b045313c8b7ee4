"""Training a learned router from an accuracy profile and its inputs' features.

The steps, each on inputs the previous ones did not use for the same purpose:

1. Hold out a seeded share of the inputs (stratified by ``subject`` where the profile
   has one); the router never sees them, and ``router eval`` judges it on them.
2. Split the rest into folds; fit heads on all folds but one and compute logits on
   that one, so every kept input gets a logit from heads that never saw it.
3. Calibrate the knob on those out-of-fold logits for the target accuracy share.
4. Fit the final heads on every kept input.

The label of configuration ``c`` on input ``i`` is "``c`` gets ``i`` as right as the
most expensive configuration": ``correct[i, c] or not correct[i, top]``. It differs
from the oracle's equality on purpose: a configuration that is right where the
largest is wrong costs no accuracy, and teaching the heads that it is unsafe would
only shrink the viable sets.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aragog.accuracy.profile import AccuracyProfile
from aragog.configs import ConfigSpace
from aragog.errors import ConfigError, ProfileError
from aragog.routing.calibrate import DEFAULT_TARGET, calibrate
from aragog.routing.heads import (
    DEFAULT_HIDDEN_SIZE,
    DEFAULT_REGULARIZATION,
    HEAD_KINDS,
    Heads,
    fit_heads,
)
from aragog.routing.lattice import DominanceLattice
from aragog.routing.learned import FeatureSpec, LearnedRouter, Provenance, Validation
from aragog.routing.split import fold_ids, holdout_split

logger = logging.getLogger(__name__)

# The metadata field whose values stratify splits, where a profile has it.
STRATUM_FIELD = "subject"

# Called with the number of heads just fitted.
ProgressFn = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class TrainSettings:
    """How a router is trained.

    Attributes:
        kind: ``logistic`` (a head per configuration) or ``mlp`` (a shared hidden
            layer, one output per configuration).
        target: share of the most expensive configuration's accuracy to keep.
        seed: seeds the split, the folds and the MLP.
        held_out_fraction: share of the inputs kept out for judging.
        num_folds: folds for the out-of-fold logits calibration reads.
        regularization: inverse L2 strength (see :func:`fit_heads`).
        hidden_size: units of the MLP's shared layer.
    """

    kind: str = "logistic"
    target: float = DEFAULT_TARGET
    seed: int = 0
    held_out_fraction: float = 0.2
    num_folds: int = 4
    regularization: float = DEFAULT_REGULARIZATION
    hidden_size: int = DEFAULT_HIDDEN_SIZE

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ConfigError(
                f"--kind: expected one of {HEAD_KINDS}, found {self.kind!r}"
            )
        if not 0.0 < self.target <= 1.0:
            raise ConfigError(
                f"--target: expected a share in (0, 1], found {self.target}"
            )
        if not 0.0 <= self.held_out_fraction < 1.0:
            raise ConfigError(
                "--held-out: expected a share in [0, 1), found "
                f"{self.held_out_fraction}"
            )
        if self.num_folds < 2:
            raise ConfigError(f"--folds: expected at least 2, found {self.num_folds}")

    def num_fits(self, num_configs: int) -> int:
        """Heads fitted in all (for a progress bar): every fold, then the final."""
        return (self.num_folds + 1) * num_configs


def preserving_labels(correct: np.ndarray) -> np.ndarray:
    """bool ``[n, C]``: whether each configuration gets each input as right as the
    most expensive one (the last id)."""
    correct = np.asarray(correct, dtype=bool)
    return correct | ~correct[:, -1:]


def profile_digest(profile: AccuracyProfile) -> str:
    """SHA-256 of a profile's identity and correctness table."""
    digest = hashlib.sha256()
    digest.update(f"{profile.workflow}\0{profile.family}\0{profile.radix}\0".encode())
    digest.update(np.packbits(profile.correct, axis=1).tobytes())
    return digest.hexdigest()


def train_router(
    profile: AccuracyProfile,
    features: np.ndarray,
    spec: FeatureSpec,
    costs: np.ndarray,
    settings: TrainSettings | None = None,
    progress: ProgressFn | None = None,
) -> LearnedRouter:
    """Train a router on ``profile`` with one feature row per input.

    Args:
        features: float ``[num_inputs, spec.dim]``, row ``i`` for input ``i``.
        spec: what the rows are (recorded in the router).
        costs: float ``[num_configs]``, configuration costs for calibration.
        settings: how to train; the defaults when ``None``.
        progress: called with the number of heads just fitted; the total is
            ``settings.num_fits(num_configs)``.

    Raises:
        ProfileError: ``features`` does not have one row of ``spec.dim`` values per
            input, or too few inputs are kept to make the folds.
    """
    settings = settings or TrainSettings()
    x = _checked_features(profile, features, spec)
    started = time.perf_counter()

    # 1. The held-out inputs, stratified by subject where there is one.
    strata = profile.metadata.get(STRATUM_FIELD)
    if settings.held_out_fraction > 0.0:
        kept, held_out = holdout_split(
            profile.num_inputs, settings.held_out_fraction, settings.seed, strata
        )
    else:
        kept = np.arange(profile.num_inputs, dtype=np.int64)
        held_out = np.zeros(0, dtype=np.int64)
    kept_strata = None if strata is None else strata[kept]

    # 2-4. Out-of-fold logits, the knob, and the final heads.
    heads, validation, threshold = _fit_and_calibrate(
        profile.radix,
        profile.correct[kept],
        x[kept],
        kept_strata,
        costs,
        settings,
        progress,
    )
    router = LearnedRouter(
        workflow=profile.workflow,
        family=profile.family,
        radix=tuple(profile.radix),
        features=spec,
        heads=heads,
        threshold_logit=threshold,
        target=settings.target,
        validation=validation,
        provenance=Provenance(profile_digest(profile), held_out, settings.seed),
    )
    logger.info(
        "trained a %s router for %s on %d inputs (%d held out) in %.1f s",
        settings.kind,
        profile.workflow,
        kept.size,
        held_out.size,
        time.perf_counter() - started,
    )
    return router


def learned_viable_sets(
    profile: AccuracyProfile,
    space: ConfigSpace,
    seed: int = 0,
    target: float = DEFAULT_TARGET,
    *,
    num_folds: int = 2,
    settings: TrainSettings | None = None,
) -> list[np.ndarray]:
    """Predicted viable sets for every input of a generated ``profile``, each from a
    router that never trained on that input: the inputs are cut into
    ``num_folds`` seeded folds, and each fold is routed by a router trained and
    calibrated on the others (its ``features`` metadata in, ``target`` kept).

    This is what ``aragog simulate --router learned`` replays in place of the
    oracle's sets.

    Returns:
        One int64 array per input, sorted, always holding the most expensive
        configuration.

    Raises:
        ProfileError: the profile does not fit ``space`` or has no ``features``.
    """
    profile.check_fits(space)
    features = profile.metadata.get("features")
    if features is None or features.ndim != 2:
        raise ProfileError(
            f"profile {profile.workflow!r}: metadata 'features' missing or not "
            "[inputs, dim]; generate the profile with aragog's generator"
        )
    base = settings or TrainSettings(target=target, seed=seed)
    if num_folds < 2:
        raise ConfigError(f"folds: expected at least 2, found {num_folds}")
    spec = FeatureSpec("features", "", 0, int(features.shape[1]))
    costs = space.mean_costs()

    # Each fold routed by heads that never saw it.
    folds = fold_ids(profile.num_inputs, num_folds, seed)
    viable = np.zeros(profile.correct.shape, dtype=bool)
    for fold in range(num_folds):
        train = np.flatnonzero(folds != fold)
        heads, validation, threshold = _fit_and_calibrate(
            profile.radix,
            profile.correct[train],
            features[train],
            None,
            costs,
            base,
            None,
        )
        router = LearnedRouter(
            workflow=profile.workflow,
            family=profile.family,
            radix=tuple(profile.radix),
            features=spec,
            heads=heads,
            threshold_logit=threshold,
            target=base.target,
            validation=validation,
            provenance=Provenance(profile_digest(profile), np.zeros(0, np.int64), seed),
        )
        routed = np.flatnonzero(folds == fold)
        viable[routed], _ = router.route_many(features[routed])
    logger.info(
        "learned viable sets for %d inputs of %s: mean share %.3f of %d configurations",
        profile.num_inputs,
        profile.workflow,
        viable.mean(),
        profile.num_configs,
    )
    return [np.flatnonzero(row).astype(np.int64) for row in viable]


def _fit_and_calibrate(
    radix: tuple[int, ...],
    correct: np.ndarray,
    x: np.ndarray,
    strata: np.ndarray | None,
    costs: np.ndarray,
    settings: TrainSettings,
    progress: ProgressFn | None,
) -> tuple[Heads, Validation, float]:
    """Final heads, the validation the knob was calibrated on, and the knob."""
    labels = preserving_labels(correct)
    num_inputs, num_configs = labels.shape
    if num_inputs < settings.num_folds:
        raise ProfileError(
            f"training: {num_inputs} inputs kept, fewer than the {settings.num_folds} "
            "folds"
        )
    lattice = DominanceLattice(radix)

    # Out-of-fold logits: each fold scored by heads fitted on the others.
    folds = fold_ids(num_inputs, settings.num_folds, settings.seed, strata)
    logits = np.empty((num_inputs, num_configs), dtype=np.float32)
    for fold in range(settings.num_folds):
        inside = folds != fold
        heads = _fit(x[inside], labels[inside], settings, progress)
        logits[~inside] = heads.logits(x[~inside])

    # The knob on those, then the heads that ship, on everything kept.
    point = calibrate(lattice, logits, correct, costs, settings.target)
    heads = _fit(x, labels, settings, progress)
    validation = Validation(logits=logits, correct=np.array(correct), costs=costs)
    return heads, validation, point.threshold_logit


def _fit(
    x: np.ndarray,
    labels: np.ndarray,
    settings: TrainSettings,
    progress: ProgressFn | None,
) -> Heads:
    return fit_heads(
        x,
        labels,
        kind=settings.kind,
        seed=settings.seed,
        regularization=settings.regularization,
        hidden_size=settings.hidden_size,
        progress=progress,
    )


def _checked_features(
    profile: AccuracyProfile, features: np.ndarray, spec: FeatureSpec
) -> np.ndarray:
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != profile.num_inputs:
        rows = x.shape[0] if x.ndim else 0
        raise ProfileError(
            f"profile {profile.workflow!r}: {profile.num_inputs} inputs, but the "
            f"inputs give {rows} feature rows"
        )
    if x.shape[1] != spec.dim:
        raise ProfileError(
            f"inputs: feature rows hold {x.shape[1]} values, {spec.describe()} says "
            f"{spec.dim}"
        )
    if not np.all(np.isfinite(x)):
        raise ProfileError("inputs: feature rows hold NaN or infinite values")
    return x
