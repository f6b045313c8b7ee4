"""The contract of one scheduling round, shared by the compiled core and its reference.

A round takes flat arrays (so the compiled core reads them without touching Python
objects) and answers, for every ready (request, stage) item, the engine it goes to or
-1. Its meaning, which :mod:`aragog.scheduling.reference` spells out line by line:

1. Items run in meta-queue order: by request (index 0 is the head of the meta-queue),
   then deeper stages first (``item_depth`` descending), then by agent index.
2. A beam keeps the ``beam_width`` best partial assignments. Each is extended, for the
   next item, by every engine (ascending index) that has a free slot left in that
   partial assignment and whose model, at that agent, occurs in some configuration of
   the request's viable set that also agrees with the partial assignment's earlier
   choices for the same request. A partial assignment with no valid engine for the
   item carries on unchanged: the item is skipped there and keeps its place.
3. Candidates are ranked by utilization gain U (descending): the sum, over the added
   stage calls, of the throughput each engine's curve gains from one more running
   stage at its load so far. Ties go to flexibility F (descending): the mean, over the
   requests given a stage in this round, of the share of their viable configurations
   that agree with every choice made for them. Remaining ties keep generation order.
4. The round stops once every item is tried or no engine has a free slot left.

Requests are grouped so that a request's items are consecutive; each request's viable
configurations must be strictly increasing ids of its workflow's space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class RoundInput:
    """Everything one round reads, as flat arrays.

    Workflow tables (one round may hold requests of several workflows):
        agent_offsets: int32[W+1]; workflow ``w`` owns global agents
            ``agent_offsets[w]:agent_offsets[w+1]`` (local agent ``a`` is global
            ``agent_offsets[w] + a``; digit strides follow this order).
        candidate_offsets: int32[A+1]; global agent ``g``'s candidate models are
            ``candidate_models[candidate_offsets[g]:candidate_offsets[g+1]]``; the
            position in that slice is the agent's digit.
        candidate_models: int32[...]; model indices.
    Meta-queue (requests in FIFO order, head first):
        request_workflow: int32[R].
        viable_offsets: int64[R+1]; request ``r``'s viable set is
            ``viable_configs[viable_offsets[r]:viable_offsets[r+1]]``.
        viable_configs: int64[V]; configuration ids, strictly increasing per request.
    Ready items:
        item_request: int32[I]; item_agent: int32[I] (local); item_depth: int32[I].
    Engines:
        engine_model: int32[E]; engine_free_slots: int32[E] (saturation batch minus
            occupancy, may be <= 0); engine_load: int32[E] (occupancy).
        curve_offsets: int32[E+1]; engine ``e``'s throughput-versus-load curve is the
            piecewise-linear function through ``(curve_load[j], curve_throughput[j])``
            for ``j`` in its slice: loads strictly increasing, starting at 0, flat past
            the last point; throughputs finite, within [-1e18, 1e18].
    beam_width: B >= 1.
    """

    agent_offsets: np.ndarray
    candidate_offsets: np.ndarray
    candidate_models: np.ndarray
    request_workflow: np.ndarray
    viable_offsets: np.ndarray
    viable_configs: np.ndarray
    item_request: np.ndarray
    item_agent: np.ndarray
    item_depth: np.ndarray
    engine_model: np.ndarray
    engine_free_slots: np.ndarray
    engine_load: np.ndarray
    curve_offsets: np.ndarray
    curve_load: np.ndarray
    curve_throughput: np.ndarray
    beam_width: int


@dataclass(frozen=True, slots=True)
class RoundResult:
    """The best assignment of one round.

    Attributes:
        item_engine: int32[I], in the input's item order: the engine each item goes
            to, or -1 when it waits for a later round.
        utilization_gain: U of the chosen assignment.
        flexibility: F of the chosen assignment (0.0 when nothing was assigned).
    """

    item_engine: np.ndarray
    utilization_gain: float
    flexibility: float


def run_round(round_input: RoundInput) -> RoundResult:
    """Run one round in the compiled core.

    Raises:
        SchedulingError: the arrays are inconsistent (wrong dtype, length or range).
    """
    from aragog import _core
    from aragog.errors import SchedulingError

    try:
        item_engine, gain, flexibility = _core.schedule_round(
            *(getattr(round_input, name) for name in ROUND_INPUT_FIELDS)
        )
    except ValueError as exc:
        raise SchedulingError(str(exc)) from None
    return RoundResult(item_engine, gain, flexibility)


ROUND_INPUT_FIELDS = tuple(RoundInput.__dataclass_fields__)
