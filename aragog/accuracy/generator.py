"""Seeded synthetic accuracy profiles for any workflow's configuration space.

Real per-input accuracy tables exist for one agent and two models (RouteLLM's MMLU
responses, :mod:`aragog.accuracy.mmlu`), not for multi-agent workflows over a model
family. This module generates them from a small latent-trait (probit) model whose
global constants are fitted to that real table, so that simulations and routers see
inputs of varying difficulty, models that are nearly (not exactly) monotone in size,
and downstream agents that repair and spoil upstream work.

The model, for input ``x``, agent ``a`` and the model ``m`` the configuration gives
that agent. Agent ``a``'s output is correct when its latent score is positive::

    Z[x, a, m] = skill[m] - difficulty[x] + CARRY * (2 * q[x, a] - 1)
                 + shared[x, a] + own[x, a, m]

- ``skill[m]``: the model's skill, in units of the latent's standard deviation, so
  that a source agent (no upstream) answers correctly with probability
  ``Phi(skill[m])``. For a model family the skill grows with size:
  ``SKILL_PER_DOUBLING * log2(num_params / COIN_FLIP_PARAMS)``
  (:func:`skill_from_params`). For the two-model calibration profile it is read off
  a measured accuracy: ``Phi^-1(accuracy)`` (:func:`skill_from_accuracy`).
- ``difficulty[x] ~ N(0, DIFFICULTY_SD^2)``: one value per input, shared by every
  agent and model. Hard inputs are hard for everybody; it is also what the per-input
  ``features`` reveal, noisily, to a learned router.
- ``shared[x, a] ~ N(0, SHARED_NOISE_SD^2)``: noise of one agent on one input that
  every model at that agent shares (a misleading phrasing trips small and large models
  alike). ``own[x, a, m] ~ N(0, MODEL_NOISE_SD^2)`` is each model's own noise. Because
  most of the noise is common, a larger model is right on nearly every input a smaller
  one gets right, but not on all: the real table has GPT-4 wrong on 5.3% of questions
  Mixtral gets right.
- ``q[x, a]``: the share of agent ``a``'s upstream agents whose output is correct (the
  term is absent for a source agent). With every upstream right the agent gets
  ``+CARRY``, with every upstream wrong ``-CARRY``. So a downstream agent usually
  keeps a right answer but may spoil it, and usually inherits a wrong one but may
  repair it; both the repair probability ``Phi(skill - CARRY - ...)`` and the chance
  of keeping a right answer grow with the downstream model's skill.

The noise variances sum to one with the difficulty's, so ``skill`` is directly a probit
of the stand-alone accuracy. A configuration's final answer is the output of the
workflow's sink agent (the last declared one if there are several). Draws are made
once per input (and agent, and candidate), then every configuration is evaluated on
the same draws, agent by agent in topological order, as one vectorised numpy pass over
``[inputs, configurations]``: a configuration that puts model ``m`` on agent ``a`` sees
exactly the same ``own[x, a, m]`` as every other configuration that does.

Calibration. For one agent and two models, the two latent scores are bivariate normal
with unit variances and correlation ``DIFFICULTY_SD^2 + SHARED_NOISE_SD^2``, and each
marginal accuracy is ``Phi(skill)``. So the skills reproduce the two accuracies exactly
and the correlation alone fixes the joint table. The correlation was fitted once,
offline, to RouteLLM's published MMLU figures (Mixtral right on 68.1% of the 14,042
questions, GPT-4 on 80.6%, both on 62.8%): bisection on the correlation of the
bivariate normal orthant probability ``P(Z1 > -Phi^-1(0.681), Z2 > -Phi^-1(0.806))``
(400-point Gauss-Legendre quadrature over one coordinate) until it equals 0.628,
giving 0.676 (the exact counts 8818/9560/11315 of the files give 0.678). That leaves
the model's own noise ``1 - 0.676 = 0.324`` of the variance. One agent cannot tell
difficulty from shared noise (both are per input), so their split is a choice: half of
each agent's noise is shared across models (``SHARED_NOISE_SHARE``), the rest of the
correlation is difficulty. ``CARRY`` and the size rule are not fitted to anything:
they are set so that, on the shipped workflows over Qwen2.5 and Llama 3, the most
expensive configuration is right on about 75-85% of inputs and most cheap
configurations preserve its outcome on most inputs, as the Aragog paper reports.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from aragog.accuracy.profile import AccuracyProfile
from aragog.configs import ConfigSpace
from aragog.errors import ConfigError

logger = logging.getLogger(__name__)

# RouteLLM's MMLU figures that the calibration reproduces (see NOTICE).
MMLU_CHEAP_ACCURACY = 0.681
MMLU_EXPENSIVE_ACCURACY = 0.806

# Fitted offline, see the module docstring: the correlation of two models' latent
# scores on one agent that makes P(both right) = 0.628 at the accuracies above.
LATENT_CORRELATION = 0.676
# Chosen (not identifiable from one agent): share of an agent's noise that every
# model at that agent shares.
SHARED_NOISE_SHARE = 0.5
MODEL_NOISE_SD = math.sqrt(1.0 - LATENT_CORRELATION)
SHARED_NOISE_SD = MODEL_NOISE_SD * math.sqrt(
    SHARED_NOISE_SHARE / (1.0 - SHARED_NOISE_SHARE)
)
DIFFICULTY_SD = math.sqrt(LATENT_CORRELATION - SHARED_NOISE_SD**2)

# Chosen: a source agent on a model of COIN_FLIP_PARAMS parameters is right half the
# time, and every doubling of parameters adds SKILL_PER_DOUBLING to the probit
# (about +7 accuracy points near 60%, +5 near 75%). Qwen2.5 7B/14B/32B then stand
# alone at 57/63/70%, Llama 3 3B/8B/70B at 48/57/77%.
COIN_FLIP_PARAMS = 4e9
SKILL_PER_DOUBLING = 0.175
# Chosen: latent bonus (all upstream right) or penalty (all upstream wrong) of a
# downstream agent, in the same units as the skill.
CARRY = 1.0

FEATURE_DIM = 8
# Each feature is loading * standardised difficulty + independent noise, with
# |loading| drawn in this range: one feature is a weak hint (correlation 0.3-0.8), all
# eight together explain most of the difficulty but nothing of the noise terms.
_FEATURE_LOADING_RANGE = (0.3, 0.8)
# Cells of [inputs, configurations, agents] held at once: bounds memory on big spaces.
_MAX_CELLS_PER_CHUNK = 1 << 22

_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class _Structure:
    """What the simulation needs of a space: per configuration and agent, the skill
    and the candidate digit; the DAG; and which agent gives the final answer."""

    skills: np.ndarray  # float64 [num_configs, num_agents]
    digits: np.ndarray  # int64 [num_configs, num_agents]
    upstream_ids: tuple[tuple[int, ...], ...]
    order: tuple[int, ...]
    sink: int
    max_radix: int


def skill_from_params(num_params: float) -> float:
    """Skill of a model with ``num_params`` parameters (the family rule above)."""
    if num_params <= 0:
        raise ConfigError(f"num_params: expected a positive count, found {num_params}")
    return SKILL_PER_DOUBLING * math.log2(num_params / COIN_FLIP_PARAMS)


def skill_from_accuracy(accuracy: float) -> float:
    """Skill at which a source agent is right on a share ``accuracy`` of inputs."""
    if not 0.0 < accuracy < 1.0:
        raise ConfigError(f"accuracy: expected a value in (0, 1), found {accuracy}")
    return _NORMAL.inv_cdf(accuracy)


def generate_profile(
    space: ConfigSpace, num_inputs: int, seed: int, *, feature_dim: int = FEATURE_DIM
) -> AccuracyProfile:
    """Generate a profile of ``num_inputs`` inputs for every configuration of
    ``space``, with model skills from parameter counts (:func:`skill_from_params`).

    The same ``seed`` gives the same profile. Metadata: ``difficulty`` (float32
    ``[num_inputs]``, larger is harder) and ``features`` (float32
    ``[num_inputs, feature_dim]``, a noisy view of the difficulty).

    Raises:
        ConfigError: ``num_inputs`` or ``feature_dim`` below 1.
    """
    # Simulate the sink agent only, then wrap with the space's identity.
    structure = _structure_of(space)
    outcomes, difficulty, features = _simulate(
        structure, num_inputs, seed, feature_dim, (structure.sink,)
    )
    return AccuracyProfile(
        workflow=space.workflow.name,
        family=space.family.name,
        radix=tuple(space.radix),
        correct=outcomes[0],
        metadata={"difficulty": difficulty, "features": features},
    )


def generate_agent_outcomes(
    space: ConfigSpace, num_inputs: int, seed: int, *, feature_dim: int = FEATURE_DIM
) -> np.ndarray:
    """bool ``[num_agents, num_inputs, num_configs]``: whether each agent's output
    is correct, on the very draws :func:`generate_profile` makes for the same
    arguments (its ``correct`` is this array at the sink agent). Useful to see where
    a configuration goes wrong and where a downstream agent repairs it.

    Raises:
        ConfigError: ``num_inputs`` or ``feature_dim`` below 1.
    """
    structure = _structure_of(space)
    agents = tuple(range(space.num_agents))
    outcomes, _, _ = _simulate(structure, num_inputs, seed, feature_dim, agents)
    return outcomes


def generate_two_model_profile(
    num_inputs: int,
    seed: int,
    cheap_accuracy: float = MMLU_CHEAP_ACCURACY,
    expensive_accuracy: float = MMLU_EXPENSIVE_ACCURACY,
    *,
    feature_dim: int = FEATURE_DIM,
) -> AccuracyProfile:
    """Generate a one-agent, two-model profile (radix ``(2,)``; configuration 0 is
    the cheap model, 1 the expensive one), the synthetic twin of the RouteLLM MMLU
    table. Each model's skill is :func:`skill_from_accuracy` of its accuracy, so the
    marginals match by construction and the fitted constants give the joint table.

    Raises:
        ConfigError: an accuracy outside (0, 1), ``num_inputs`` or ``feature_dim``
            below 1.
    """
    skills = np.array(
        [
            [skill_from_accuracy(cheap_accuracy)],
            [skill_from_accuracy(expensive_accuracy)],
        ]
    )
    structure = _Structure(
        skills=skills,
        digits=np.array([[0], [1]], dtype=np.int64),
        upstream_ids=((),),
        order=(0,),
        sink=0,
        max_radix=2,
    )
    outcomes, difficulty, features = _simulate(
        structure, num_inputs, seed, feature_dim, (0,)
    )
    return AccuracyProfile(
        workflow="single-agent",
        family="two-model",
        radix=(2,),
        correct=outcomes[0],
        metadata={"difficulty": difficulty, "features": features},
    )


def _structure_of(space: ConfigSpace) -> _Structure:
    # Per configuration and agent: the skill of the chosen model and its digit.
    model_skills = np.array(
        [skill_from_params(m.num_params) for m in space.family.models]
    )
    return _Structure(
        skills=model_skills[space.model_ids],
        digits=space.digits.astype(np.int64),
        upstream_ids=space.workflow.upstream_ids,
        order=_topological_order(space.workflow.upstream_ids),
        sink=max(i for i, d in enumerate(space.workflow.downstream_ids) if not d),
        max_radix=max(space.radix),
    )


def _simulate(
    structure: _Structure,
    num_inputs: int,
    seed: int,
    feature_dim: int,
    kept: tuple[int, ...],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outcomes of the agents in ``kept`` (bool ``[len(kept), inputs, configs]``),
    the difficulty (float32) and the features (float32)."""
    if num_inputs < 1:
        raise ConfigError(f"num_inputs: expected at least 1, found {num_inputs}")
    if feature_dim < 1:
        raise ConfigError(f"feature_dim: expected at least 1, found {feature_dim}")
    started = time.perf_counter()
    num_configs, num_agents = structure.skills.shape

    # Every draw up front, in a fixed order, so the seed alone fixes the profile.
    rng = np.random.default_rng(seed)
    difficulty = DIFFICULTY_SD * rng.standard_normal(num_inputs)
    shared = SHARED_NOISE_SD * rng.standard_normal((num_inputs, num_agents))
    own = MODEL_NOISE_SD * rng.standard_normal(
        (num_inputs, num_agents, structure.max_radix)
    )
    features = _features(rng, difficulty, feature_dim)

    # Agents in topological order over chunks of inputs; keep the agents asked for.
    outcomes = np.empty((len(kept), num_inputs, num_configs), dtype=bool)
    chunk = max(1, _MAX_CELLS_PER_CHUNK // (num_configs * num_agents))
    for start in range(0, num_inputs, chunk):
        rows = slice(start, min(start + chunk, num_inputs))
        by_agent = _agent_outcomes(structure, difficulty[rows], shared[rows], own[rows])
        for k, agent in enumerate(kept):
            outcomes[k, rows] = by_agent[agent]

    logger.debug(
        "generated profile: %d inputs x %d configurations x %d agents in %.3f s",
        num_inputs,
        num_configs,
        num_agents,
        time.perf_counter() - started,
    )
    return outcomes, difficulty.astype(np.float32), features


def _agent_outcomes(
    structure: _Structure, difficulty: np.ndarray, shared: np.ndarray, own: np.ndarray
) -> dict[int, np.ndarray]:
    """Per agent, bool ``[rows, num_configs]``: its output's correctness on the
    inputs of one chunk (``difficulty``, ``shared`` and ``own`` hold their rows)."""
    outcomes: dict[int, np.ndarray] = {}
    for agent in structure.order:
        digits = structure.digits[:, agent]
        score = structure.skills[:, agent][None, :] - difficulty[:, None]
        score = score + shared[:, agent][:, None] + own[:, agent, :][:, digits]
        upstream = structure.upstream_ids[agent]
        if upstream:
            right = sum(outcomes[u].astype(np.float64) for u in upstream)
            score += CARRY * (2.0 * right / len(upstream) - 1.0)
        outcomes[agent] = score > 0.0
    return outcomes


def _features(rng: np.random.Generator, difficulty: np.ndarray, dim: int) -> np.ndarray:
    low, high = _FEATURE_LOADING_RANGE
    loadings = rng.uniform(low, high, dim) * rng.choice([-1.0, 1.0], dim)
    noise = rng.standard_normal((difficulty.size, dim))
    standard = difficulty / DIFFICULTY_SD
    features = standard[:, None] * loadings[None, :] + noise * np.sqrt(
        1.0 - loadings**2
    )
    return features.astype(np.float32)


def _topological_order(upstream_ids: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    # Kahn's algorithm, lowest index first; the workflow was validated acyclic.
    remaining = [len(u) for u in upstream_ids]
    downstream: list[list[int]] = [[] for _ in upstream_ids]
    for agent, ups in enumerate(upstream_ids):
        for u in ups:
            downstream[u].append(agent)
    ready = sorted(i for i, n in enumerate(remaining) if n == 0)
    order = []
    while ready:
        agent = ready.pop(0)
        order.append(agent)
        for d in downstream[agent]:
            remaining[d] -= 1
            if remaining[d] == 0:
                ready.append(d)
        ready.sort()
    assert len(order) == len(upstream_ids), "workflow has a cycle"
    return tuple(order)
