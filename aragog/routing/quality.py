"""How much accuracy a router's viable sets keep, and how much flexibility they leave.

A router is judged on labelled inputs by two numbers that pull against each other:

- *accuracy kept*: the accuracy of the requests when each runs on the cheapest
  configuration of its viable set (the per-input binding, and the pessimistic one:
  the scheduler may pick a larger, usually more accurate, member), divided by the
  accuracy of the most expensive configuration on the same inputs;
- *flexibility*: the mean share of the configuration space in the viable sets, the
  room the scheduler has. For a one-agent, two-model profile the same room reads as
  the *cheap share*: the share of requests allowed on the cheap model.

The yardstick is a *random router at the same accuracy*: it gives a random share
``q`` of the requests every configuration and the rest only the most expensive one.
``q`` is set so that its expected accuracy equals the router's, which for two models
is RouteLLM's random baseline (send a random share of the queries to the cheap
model). A learned router earns its keep by leaving more flexibility than that.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from aragog.errors import ProfileError


@dataclass(frozen=True, slots=True)
class RoutingQuality:
    """A router's figures on a set of labelled inputs.

    Attributes:
        num_inputs: inputs judged.
        accuracy: accuracy when each input runs on its cheapest viable configuration.
        reference_accuracy: accuracy of the most expensive configuration.
        accuracy_kept: ``accuracy / reference_accuracy`` (1.0 when the reference is
            never right and neither is the router).
        flexibility: mean share of the configurations in the viable sets.
        cheap_share: share of inputs whose cheapest viable configuration is not the
            most expensive one (for two models: sent to the cheap model).
        random_cheap_share: ``q``, the share the random router at the same accuracy
            opens; also its cheap share.
        random_flexibility: that random router's flexibility,
            ``q + (1 - q) / num_configs``.
        mean_evaluations: classifier evaluations per input (0 when not counted).
        num_configs: configurations in the space.
    """

    num_inputs: int
    accuracy: float
    reference_accuracy: float
    accuracy_kept: float
    flexibility: float
    cheap_share: float
    random_cheap_share: float
    random_flexibility: float
    mean_evaluations: float
    num_configs: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def judge(
    viable: np.ndarray,
    correct: np.ndarray,
    costs: np.ndarray,
    evaluations: np.ndarray | None = None,
) -> RoutingQuality:
    """Judge viable sets against the truth.

    Args:
        viable: bool ``[n, C]``; the most expensive configuration (the last id) is
            taken as viable for every input whatever the mask says.
        correct: bool ``[n, C]``, the profile's correctness of the same inputs.
        costs: float ``[C]``: the cost of each configuration; the cheapest viable
            one is the per-input binding (ties go to the lower id).
        evaluations: int ``[n]``, classifier evaluations per input, or ``None``.

    Raises:
        ProfileError: shapes disagree or there is no input.
    """
    viable = np.array(viable, dtype=bool)
    correct = np.asarray(correct, dtype=bool)
    costs = np.asarray(costs, dtype=np.float64)
    if viable.shape != correct.shape or viable.ndim != 2 or viable.shape[0] == 0:
        raise ProfileError(
            f"judge: viable sets {viable.shape} and correctness {correct.shape} must "
            "be the same non-empty [inputs, configurations]"
        )
    num_inputs, num_configs = viable.shape
    if costs.shape != (num_configs,):
        raise ProfileError(
            f"judge: costs: expected one per configuration ({num_configs}), found "
            f"shape {costs.shape}"
        )
    top = num_configs - 1
    viable[:, top] = True

    # The cheapest viable configuration of every input: mask the rest with +inf.
    order_costs = np.where(viable, costs[None, :], np.inf)
    # Ties go to the lower id: argmin returns the first minimum.
    chosen = np.argmin(order_costs, axis=1)
    rows = np.arange(num_inputs)
    accuracy = float(correct[rows, chosen].mean())
    reference = float(correct[:, top].mean())
    cheapest = int(np.lexsort((np.arange(num_configs), costs))[0])
    floor = float(correct[:, cheapest].mean())

    # The random router with the same expected accuracy.
    share = random_share_at(accuracy, floor, reference)
    return RoutingQuality(
        num_inputs=num_inputs,
        accuracy=accuracy,
        reference_accuracy=reference,
        accuracy_kept=_ratio(accuracy, reference),
        flexibility=float(viable.mean()),
        cheap_share=float(np.mean(chosen != top)),
        random_cheap_share=share,
        random_flexibility=share + (1.0 - share) / num_configs,
        mean_evaluations=float(np.mean(evaluations))
        if evaluations is not None
        else 0.0,
        num_configs=num_configs,
    )


def random_share_at(accuracy: float, cheapest: float, reference: float) -> float:
    """The share ``q`` of requests that a random router may open to every
    configuration so that its expected accuracy, ``q * cheapest + (1 - q) *
    reference``, equals ``accuracy``; in ``[0, 1]``.

    When the cheapest configuration is as accurate as the reference, any share
    keeps the accuracy and the answer is 1.
    """
    gap = reference - cheapest
    if gap <= 0.0:
        return 1.0
    return float(np.clip((reference - accuracy) / gap, 0.0, 1.0))


def _ratio(accuracy: float, reference: float) -> float:
    if reference > 0.0:
        return accuracy / reference
    return 1.0 if accuracy == 0.0 else float("inf")
