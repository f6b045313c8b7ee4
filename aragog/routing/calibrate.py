"""The router's one knob: the probability a configuration needs to count as viable.

Every head answers with a probability that its configuration preserves accuracy on
the input; the router calls a configuration accurate when that probability reaches
a threshold ``tau``. A high ``tau`` keeps nearly all the accuracy of the most
expensive configuration and leaves little flexibility; a low one the reverse. The
threshold is stored as a logit, ``log(tau / (1 - tau))``, and heads are compared in
logit space, so that a threshold read off a head's own output admits that output
exactly.

Calibration picks, on validation inputs the heads never trained on, the most
permissive threshold whose accuracy kept (see :mod:`aragog.routing.quality`) still
meets a target share, 0.98 by default. The candidates are the validation logits
themselves (at most :data:`MAX_NUM_CANDIDATES` of their quantiles) plus "never"
(only the most expensive configuration, which keeps all the accuracy by
definition), so calibration always finds an answer.

NOTE: the search is a bisection over the candidates, which assumes that accuracy
kept falls as the threshold falls. That holds for the decisions of each head; the
lattice order can break it by a few inputs where heads contradict the dominance
order. The chosen threshold is evaluated, so it meets the target on validation
whatever happens elsewhere on the curve.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from aragog.errors import ConfigError
from aragog.routing.lattice import DominanceLattice
from aragog.routing.quality import RoutingQuality, judge

logger = logging.getLogger(__name__)

DEFAULT_TARGET = 0.98
MAX_NUM_CANDIDATES = 512
# The threshold that admits nothing: only the most expensive configuration remains.
NEVER = math.inf


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """The router's figures at one setting of the knob.

    Attributes:
        threshold_logit: the knob, as a logit (``inf``: nothing but the most
            expensive configuration).
        quality: the figures of the viable sets it gives.
    """

    threshold_logit: float
    quality: RoutingQuality

    @property
    def probability(self) -> float:
        """The knob as the probability ``tau`` a head must reach."""
        return logit_to_probability(self.threshold_logit)


def logit_to_probability(logit: float) -> float:
    if logit == NEVER:
        return 1.0
    return 1.0 / (1.0 + math.exp(-logit))


def probability_to_logit(probability: float) -> float:
    """``log(tau / (1 - tau))``; 1.0 gives :data:`NEVER`.

    Raises:
        ConfigError: ``probability`` outside (0, 1].
    """
    if not 0.0 < probability <= 1.0:
        raise ConfigError(
            f"threshold: expected a probability in (0, 1], found {probability}"
        )
    if probability == 1.0:
        return NEVER
    return math.log(probability) - math.log1p(-probability)


def decision_rates(logits: np.ndarray, threshold_logit: float) -> np.ndarray:
    """float32 ``[C]``: the share of inputs each head calls accurate at a setting.

    This is the lattice's search order at that setting: how often an evaluation of
    each configuration settles its up-set rather than its down-set. (Label rates
    would mislead it: at a strict setting the heads call cheap configurations
    inaccurate far more often than the labels do.)
    """
    decisions = np.asarray(logits) >= threshold_logit
    return np.asarray(decisions.mean(axis=0, dtype=np.float32))


def evaluate_setting(
    lattice: DominanceLattice,
    logits: np.ndarray,
    correct: np.ndarray,
    costs: np.ndarray,
    threshold_logit: float,
    prior: np.ndarray | None = None,
) -> CurvePoint:
    """Route every input of ``logits`` (``[n, C]``) through the lattice at one
    setting and judge the viable sets against ``correct``.

    Args:
        prior: the search order; by default the decision rates of ``logits``
            themselves at this setting.
    """
    decisions = logits >= threshold_logit
    if prior is None:
        prior = decisions.mean(axis=0, dtype=np.float32)
    viable, evaluations = lattice.prune_many(decisions, prior)
    return CurvePoint(threshold_logit, judge(viable, correct, costs, evaluations))


def knob_curve(
    lattice: DominanceLattice,
    logits: np.ndarray,
    correct: np.ndarray,
    costs: np.ndarray,
    probabilities: list[float] | np.ndarray,
    prior_logits: np.ndarray | None = None,
) -> list[CurvePoint]:
    """The figures at each probability of ``probabilities``, strictest first.

    Args:
        prior_logits: logits whose decision rates order the search at each setting
            (a router's validation logits); ``logits`` themselves when ``None``.
    """
    ordered = sorted({float(p) for p in probabilities}, reverse=True)
    rates_of = logits if prior_logits is None else prior_logits
    return [
        evaluate_setting(
            lattice,
            logits,
            correct,
            costs,
            probability_to_logit(p),
            decision_rates(rates_of, probability_to_logit(p)),
        )
        for p in ordered
    ]


def calibrate(
    lattice: DominanceLattice,
    logits: np.ndarray,
    correct: np.ndarray,
    costs: np.ndarray,
    target: float = DEFAULT_TARGET,
) -> CurvePoint:
    """The most permissive setting whose accuracy kept on these (validation) inputs
    reaches ``target``.

    Args:
        logits: float ``[n, C]``, the heads' logits on validation inputs that they
            did not train on.
        correct: bool ``[n, C]``, the truth on those inputs.
        costs: float ``[C]``, configuration costs (the cheapest viable one is used).
        target: the share of the most expensive configuration's accuracy to keep.

    Raises:
        ConfigError: ``target`` outside (0, 1].
    """
    if not 0.0 < target <= 1.0:
        raise ConfigError(f"target: expected a share in (0, 1], found {target}")

    # Candidates, strictest first: "never", then validation logits downwards.
    top = lattice.most_expensive
    values = np.unique(np.asarray(logits, dtype=np.float64)[:, :top])
    if values.size > MAX_NUM_CANDIDATES:
        picks = np.linspace(0, values.size - 1, MAX_NUM_CANDIDATES)
        values = np.unique(values[np.round(picks).astype(np.int64)])
    candidates = [NEVER, *values[::-1].tolist()]

    # Bisection for the last candidate that still meets the target.
    def meets(index: int) -> CurvePoint | None:
        point = evaluate_setting(lattice, logits, correct, costs, candidates[index])
        return point if point.quality.accuracy_kept >= target - 1e-12 else None

    best = meets(0)
    assert best is not None, "the most expensive configuration alone keeps everything"
    low, high = 0, len(candidates) - 1
    while low < high:
        middle = (low + high + 1) // 2
        point = meets(middle)
        if point is None:
            high = middle - 1
        else:
            low, best = middle, point
    logger.info(
        "calibrated the knob on %d inputs: tau %.4f keeps %.4f of the accuracy "
        "(target %.3f), flexibility %.3f, cheap share %.3f",
        best.quality.num_inputs,
        best.probability,
        best.quality.accuracy_kept,
        target,
        best.quality.flexibility,
        best.quality.cheap_share,
    )
    return best
