"""The classifier heads: per configuration, "this configuration preserves accuracy".

Each configuration of a workflow gets one binary classifier over a request's feature
vector (a text embedding, or a generated profile's ``features``). Two kinds:

- ``logistic``: one scikit-learn ``LogisticRegression`` per configuration. With
  thousands of labelled inputs and a few hundred features this is the model that
  overfits least, and its probabilities are close to calibrated.
- ``mlp``: one scikit-learn ``MLPClassifier`` with a shared hidden layer and one
  sigmoid output per configuration (multi-label), as in the paper's design of small
  heads over one shared representation.

Training needs scikit-learn; inference never does. After fitting, the weights are
copied into plain arrays (:class:`Heads`) with the feature standardisation folded
into the first layer, so that the logits of every configuration for any number of
inputs are one or two matrix products, and one configuration's logit for one input
is one dot product (what the lattice search asks for, one at a time).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aragog.errors import ConfigError

logger = logging.getLogger(__name__)

HEAD_KINDS = ("logistic", "mlp")
DEFAULT_REGULARIZATION = 1.0
DEFAULT_HIDDEN_SIZE = 256
# Widest feature vector fitted with Newton steps rather than L-BFGS.
_MAX_NEWTON_DIM = 64
# Features whose spread is below this are left unscaled (a constant column).
_MIN_SCALE = 1e-6

# Called with the number of configurations just fitted.
ProgressFn = Callable[[int], None]


@dataclass(frozen=True, slots=True, eq=False)
class Heads:
    """Fitted heads as plain arrays; standardisation is folded into the first layer.

    Attributes:
        hidden_weights: float32 ``[d, H]`` of the shared ReLU layer, or ``None`` for
            linear heads.
        hidden_bias: float32 ``[H]``, or ``None`` for linear heads.
        out_weights: float32 ``[C, k]``, one row per configuration (``k`` is ``H``
            with a hidden layer, else ``d``): row-major, so that one
            configuration's logit reads one contiguous row.
        out_bias: float32 ``[C]``.
    """

    hidden_weights: np.ndarray | None
    hidden_bias: np.ndarray | None
    out_weights: np.ndarray
    out_bias: np.ndarray

    def __post_init__(self) -> None:
        # Own contiguous float32 copies, read-only.
        for name in ("hidden_weights", "hidden_bias", "out_weights", "out_bias"):
            value = getattr(self, name)
            if value is not None:
                array = np.ascontiguousarray(value, dtype=np.float32).copy()
                array.setflags(write=False)
                object.__setattr__(self, name, array)
        if (self.hidden_weights is None) != (self.hidden_bias is None):
            raise ConfigError("heads: hidden weights and bias must come together")
        width = (
            self.out_weights.shape[1]
            if self.hidden_weights is None
            else self.hidden_weights.shape[1]
        )
        if self.out_weights.ndim != 2 or self.out_bias.shape != (
            self.out_weights.shape[0],
        ):
            raise ConfigError(
                f"heads: out weights {self.out_weights.shape} and bias "
                f"{self.out_bias.shape} disagree"
            )
        if self.out_weights.shape[1] != width:
            raise ConfigError(
                f"heads: out weights take {self.out_weights.shape[1]} inputs, the "
                f"layer below gives {width}"
            )

    @property
    def kind(self) -> str:
        return "logistic" if self.hidden_weights is None else "mlp"

    @property
    def num_configs(self) -> int:
        return int(self.out_weights.shape[0])

    @property
    def feature_dim(self) -> int:
        if self.hidden_weights is None:
            return int(self.out_weights.shape[1])
        return int(self.hidden_weights.shape[0])

    def represent(self, features: np.ndarray) -> np.ndarray:
        """float32 ``[..., k]``: what the output rows read (the features themselves
        for linear heads, the shared hidden layer otherwise)."""
        x = np.asarray(features, dtype=np.float32)
        if self.hidden_weights is None:
            return x
        assert self.hidden_bias is not None, "hidden bias missing"
        return np.maximum(x @ self.hidden_weights + self.hidden_bias, 0.0)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """float32 ``[n, C]``: every configuration's logit for every input of
        ``features`` (``[n, d]``), in two matrix products at most."""
        return self.represent(features) @ self.out_weights.T + self.out_bias

    def logit(self, representation: np.ndarray, config: int) -> float:
        """One configuration's logit for one input, from :meth:`represent`."""
        return float(self.out_weights[config] @ representation) + float(
            self.out_bias[config]
        )


def fit_heads(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    kind: str = "logistic",
    seed: int = 0,
    regularization: float = DEFAULT_REGULARIZATION,
    hidden_size: int = DEFAULT_HIDDEN_SIZE,
    progress: ProgressFn | None = None,
) -> Heads:
    """Fit one head per configuration.

    Args:
        features: float ``[n, d]``, one row per training input.
        labels: bool ``[n, C]``: whether configuration ``c`` preserves accuracy on
            input ``i``.
        kind: ``logistic`` or ``mlp``.
        seed: seeds the MLP's initialisation (logistic fits are deterministic).
        regularization: inverse L2 strength: scikit-learn's ``C`` for
            ``logistic``; the MLP's ``alpha`` (its L2 strength) is its inverse.
        hidden_size: units of the MLP's shared layer.
        progress: called with the number of configurations fitted so far.

    Raises:
        ConfigError: shapes disagree, no input, an unknown ``kind`` or a
            non-positive ``regularization`` or ``hidden_size``.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ConfigError(
            f"heads: features {x.shape} and labels {y.shape} must be [n, d] and "
            "[n, C] with the same n > 0"
        )
    if kind not in HEAD_KINDS:
        raise ConfigError(f"heads: kind: expected one of {HEAD_KINDS}, found {kind!r}")
    if regularization <= 0 or hidden_size < 1:
        raise ConfigError(
            f"heads: regularization {regularization} and hidden size {hidden_size} "
            "must be positive"
        )

    # Standardise, fit, then fold the standardisation into the first layer.
    started = time.perf_counter()
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < _MIN_SCALE] = 1.0
    standard = (x - mean) / scale
    if kind == "logistic":
        weights, bias = _fit_logistic(standard, y, regularization, progress)
        heads = Heads(
            None, None, weights / scale[None, :], bias - weights @ (mean / scale)
        )
    else:
        w1, b1, w2, b2 = _fit_mlp(standard, y, seed, regularization, hidden_size)
        if progress is not None:
            progress(y.shape[1])
        heads = Heads(w1 / scale[:, None], b1 - (mean / scale) @ w1, w2.T, b2)
    logger.info(
        "fitted %d %s heads on %d inputs x %d features in %.1f s",
        y.shape[1],
        kind,
        x.shape[0],
        x.shape[1],
        time.perf_counter() - started,
    )
    return heads


def _fit_logistic(
    x: np.ndarray, y: np.ndarray, regularization: float, progress: ProgressFn | None
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    num_inputs, num_configs = y.shape
    # Newton steps converge in a handful of iterations while the Hessian is small
    # (a few times faster on generated features); L-BFGS for wide embeddings.
    solver = "newton-cholesky" if x.shape[1] <= _MAX_NEWTON_DIM else "lbfgs"
    weights = np.zeros((num_configs, x.shape[1]))
    bias = np.zeros(num_configs)
    for config in range(num_configs):
        column = y[:, config]
        positives = int(column.sum())
        if positives in (0, num_inputs):
            # One class only: no direction to learn; the bias is the smoothed rate.
            bias[config] = np.log((positives + 1) / (num_inputs - positives + 1))
        else:
            model = LogisticRegression(C=regularization, max_iter=2000, solver=solver)
            model.fit(x, column)
            weights[config] = model.coef_[0]
            bias[config] = model.intercept_[0]
        if progress is not None:
            progress(1)
    return weights, bias


def _fit_mlp(
    x: np.ndarray, y: np.ndarray, seed: int, regularization: float, hidden_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(
        hidden_layer_sizes=(hidden_size,),
        alpha=1.0 / regularization,
        early_stopping=True,
        random_state=seed,
        max_iter=300,
    )
    # NOTE: early stopping ends on a validation plateau, which scikit-learn may
    # still report as non-convergence; the weights it keeps are the best seen.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y.astype(np.int64))
    w1, w2 = model.coefs_
    b1, b2 = model.intercepts_
    return w1, b1, w2, b2
