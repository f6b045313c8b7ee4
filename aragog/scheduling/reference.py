"""The pure-Python reference of one scheduling round.

Slow and plain on purpose: it is the specification the compiled core is held to by the
property-based tests. Every floating-point value is computed with the same operations
in the same order as in ``csrc/core/round.cc``, so ties resolve identically.

Model of the round (see :mod:`aragog.scheduling.round` for the contract): a beam search
over items in meta-queue order; a partial assignment records, per engine, how many
stage calls it adds, its utilization gain U, and enough about flexibility F to rank it.
Because a request's items are consecutive, only the current request's surviving
configurations are needed to decide validity; requests already passed contribute a
finished fraction to F.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from aragog.errors import SchedulingError
from aragog.scheduling.round import RoundInput, RoundResult

MAX_ABS_THROUGHPUT = 1e18
"""Largest magnitude of a curve's throughput: far above any engine, and far enough below
the float range that no interpolation, gain or sum of gains can overflow to inf or NaN
(which would leave the ranking undefined)."""


@dataclass
class _Partial:
    """One partial assignment of the beam."""

    added: list[int]
    gain: float = 0.0
    flex_sum: float = 0.0
    flex_count: int = 0
    request: int = -1
    viable_size: int = 1
    survivors: list[int] = field(default_factory=list)
    touched: bool = False
    choices: list[tuple[int, int]] = field(default_factory=list)

    def flexibility(self) -> float:
        """F: mean surviving share over the requests given a stage so far."""
        if self.touched:
            share = len(self.survivors) / self.viable_size
            return (self.flex_sum + share) / (self.flex_count + 1)
        if self.flex_count > 0:
            return self.flex_sum / self.flex_count
        return 0.0


def interpolate(loads: np.ndarray, throughputs: np.ndarray, load: float) -> float:
    """Piecewise-linear throughput at ``load``, flat past the last point."""
    n = len(loads)
    if load >= loads[n - 1]:
        return float(throughputs[n - 1])
    j = 1
    while loads[j] <= load:
        j += 1
    x0, x1 = float(loads[j - 1]), float(loads[j])
    y0, y1 = float(throughputs[j - 1]), float(throughputs[j])
    return y0 + (y1 - y0) * (load - x0) / (x1 - x0)


def marginal_gain(loads: np.ndarray, throughputs: np.ndarray, load: int) -> float:
    """Throughput gained by one more running stage call at ``load``."""
    return interpolate(loads, throughputs, float(load + 1)) - interpolate(
        loads, throughputs, float(load)
    )


def item_order(inp: RoundInput) -> list[int]:
    """Items in meta-queue order: request, then depth descending, then agent."""
    keys = [
        (int(inp.item_request[i]), -int(inp.item_depth[i]), int(inp.item_agent[i]), i)
        for i in range(len(inp.item_request))
    ]
    return [k[3] for k in sorted(keys)]


def schedule_round(inp: RoundInput) -> RoundResult:
    """Run one round; the same answer as ``aragog._core.schedule_round``."""
    validate(inp)
    num_engines = len(inp.engine_model)
    curves = [
        (
            inp.curve_load[inp.curve_offsets[e] : inp.curve_offsets[e + 1]],
            inp.curve_throughput[inp.curve_offsets[e] : inp.curve_offsets[e + 1]],
        )
        for e in range(num_engines)
    ]
    beams = [_Partial(added=[0] * num_engines)]

    for item in item_order(inp):
        # Stop: no partial assignment has a free slot left anywhere.
        if all(
            inp.engine_free_slots[e] - b.added[e] <= 0
            for b in beams
            for e in range(num_engines)
        ):
            break
        r = int(inp.item_request[item])
        viable = _viable(inp, r)
        stride, radix, cands = _agent_digit_space(inp, r, int(inp.item_agent[item]))

        candidates: list[_Partial] = []
        for beam in beams:
            base = _enter_request(beam, r, viable)
            extended = False
            for e in range(num_engines):
                # Reasons to pass an engine: no free slot, its model is not a
                # candidate of this agent, or no surviving configuration uses it here.
                if inp.engine_free_slots[e] - base.added[e] <= 0:
                    continue
                model = int(inp.engine_model[e])
                if model not in cands:
                    continue
                digit = cands.index(model)
                kept = [c for c in base.survivors if (c // stride) % radix == digit]
                if not kept:
                    continue
                load = int(inp.engine_load[e]) + base.added[e]
                child = _Partial(
                    added=list(base.added),
                    gain=base.gain + marginal_gain(*curves[e], load),
                    flex_sum=base.flex_sum,
                    flex_count=base.flex_count,
                    request=r,
                    viable_size=base.viable_size,
                    survivors=kept,
                    touched=True,
                    choices=[*base.choices, (item, e)],
                )
                child.added[e] += 1
                candidates.append(child)
                extended = True
            if not extended:
                candidates.append(base)

        # Rank by U, then F, keeping generation order among equals (sorted is stable).
        ranked = sorted(candidates, key=lambda c: (-c.gain, -c.flexibility()))
        beams = ranked[: inp.beam_width]

    best = beams[0]
    item_engine = np.full(len(inp.item_request), -1, dtype=np.int32)
    for item, engine in best.choices:
        item_engine[item] = engine
    return RoundResult(item_engine, best.gain, best.flexibility())


def narrow_viable_set(
    viable: np.ndarray, stride: int, radix: int, digit: int
) -> np.ndarray:
    """The configurations of ``viable`` whose digit (``stride``, ``radix``) is
    ``digit``: what a request keeps once that stage is dispatched to that model.

    Raises:
        SchedulingError: ``stride`` or ``radix`` is below 1.
    """
    if stride < 1 or radix < 1:
        _fail(f"stride and radix must be at least 1, found {stride} and {radix}")
    return viable[(viable // stride) % radix == digit]


def _enter_request(beam: _Partial, r: int, viable: list[int]) -> _Partial:
    """The beam as seen by an item of request ``r``: close the previous request."""
    if beam.request == r:
        return beam
    flex_sum, flex_count = beam.flex_sum, beam.flex_count
    if beam.touched:
        flex_sum += len(beam.survivors) / beam.viable_size
        flex_count += 1
    return _Partial(
        added=beam.added,
        gain=beam.gain,
        flex_sum=flex_sum,
        flex_count=flex_count,
        request=r,
        viable_size=max(len(viable), 1),
        survivors=list(viable),
        touched=False,
        choices=beam.choices,
    )


def _viable(inp: RoundInput, r: int) -> list[int]:
    lo, hi = int(inp.viable_offsets[r]), int(inp.viable_offsets[r + 1])
    return [int(c) for c in inp.viable_configs[lo:hi]]


def _agent_digit_space(
    inp: RoundInput, r: int, agent: int
) -> tuple[int, int, list[int]]:
    """Stride, radix and candidate models of local ``agent`` of request ``r``."""
    w = int(inp.request_workflow[r])
    first = int(inp.agent_offsets[w])
    stride = 1
    for g in range(first, first + agent):
        stride *= int(inp.candidate_offsets[g + 1] - inp.candidate_offsets[g])
    g = first + agent
    lo, hi = int(inp.candidate_offsets[g]), int(inp.candidate_offsets[g + 1])
    cands = [int(m) for m in inp.candidate_models[lo:hi]]
    return stride, hi - lo, cands


def validate(inp: RoundInput) -> None:
    """Raise :class:`SchedulingError` where the arrays break the round's contract.

    The compiled core checks the same conditions and raises ``ValueError``.
    """
    if inp.beam_width < 1:
        _fail(f"beam_width must be at least 1, found {inp.beam_width}")

    # Workflow tables.
    agent_off = np.asarray(inp.agent_offsets)
    cand_off = np.asarray(inp.candidate_offsets)
    cands = np.asarray(inp.candidate_models)
    if len(agent_off) < 2 or agent_off[0] != 0 or not _increasing(agent_off):
        _fail("agent_offsets must start at 0 and give every workflow an agent")
    if agent_off[-1] != len(cand_off) - 1:
        _fail("agent_offsets must end at the number of agents (candidate_offsets - 1)")
    if cand_off[0] != 0 or not _increasing(cand_off):
        _fail("candidate_offsets must start at 0 and give every agent a candidate")
    if cand_off[-1] != len(cands):
        _fail("candidate_offsets must end at len(candidate_models)")
    if np.any(cands < 0):
        _fail("candidate_models must be non-negative model indices")
    for g in range(len(cand_off) - 1):
        chunk = cands[cand_off[g] : cand_off[g + 1]]
        if len(set(chunk.tolist())) != len(chunk):
            _fail(f"agent {g} lists a candidate model twice")

    # Meta-queue.
    num_workflows = len(agent_off) - 1
    wf = np.asarray(inp.request_workflow)
    via_off = np.asarray(inp.viable_offsets)
    via = np.asarray(inp.viable_configs)
    if len(via_off) != len(wf) + 1 or via_off[0] != 0 or via_off[-1] != len(via):
        _fail(
            "viable_offsets must have one entry per request plus one, 0 to len(viable)"
        )
    if np.any(via_off[1:] < via_off[:-1]):
        _fail("viable_offsets must be non-decreasing")
    if np.any((wf < 0) | (wf >= num_workflows)):
        _fail("request_workflow holds an unknown workflow index")
    for r in range(len(wf)):
        w = int(wf[r])
        radix = np.diff(cand_off[agent_off[w] : agent_off[w + 1] + 1])
        num_configs = math.prod(int(x) for x in radix)
        chunk = via[via_off[r] : via_off[r + 1]]
        if len(chunk) and (chunk[0] < 0 or int(chunk[-1]) >= num_configs):
            _fail(f"request {r}: a viable configuration is out of [0, {num_configs})")
        if not _increasing(chunk):
            _fail(f"request {r}: viable configurations must be strictly increasing")

    # Items.
    req = np.asarray(inp.item_request)
    agent = np.asarray(inp.item_agent)
    depth = np.asarray(inp.item_depth)
    if not len(req) == len(agent) == len(depth):
        _fail("item_request, item_agent and item_depth must have one length")
    seen = set()
    for i in range(len(req)):
        r = int(req[i])
        if not 0 <= r < len(wf):
            _fail(f"item {i}: request {r} is not in the meta-queue")
        w = int(wf[r])
        if not 0 <= int(agent[i]) < agent_off[w + 1] - agent_off[w]:
            _fail(f"item {i}: agent {int(agent[i])} is not in workflow {w}")
        if depth[i] < 0:
            _fail(f"item {i}: depth must be non-negative")
        if (r, int(agent[i])) in seen:
            _fail(f"item {i}: request {r} lists agent {int(agent[i])} twice")
        seen.add((r, int(agent[i])))

    # Engines and their curves.
    num_engines = len(inp.engine_model)
    if not num_engines == len(inp.engine_free_slots) == len(inp.engine_load):
        _fail("engine_model, engine_free_slots and engine_load must have one length")
    if np.any(np.asarray(inp.engine_load) < 0):
        _fail("engine_load must be non-negative")
    curve_off = np.asarray(inp.curve_offsets)
    loads = np.asarray(inp.curve_load)
    thr = np.asarray(inp.curve_throughput)
    if len(curve_off) != num_engines + 1 or curve_off[0] != 0:
        _fail("curve_offsets must have one entry per engine plus one, starting at 0")
    if not _increasing(curve_off) or curve_off[-1] != len(loads):
        _fail("curve_offsets must give every engine a point and end at len(curve_load)")
    if len(thr) != len(loads):
        _fail("curve_load and curve_throughput must have one length")
    if not (np.all(np.isfinite(loads)) and np.all(np.isfinite(thr))):
        _fail("curve points must be finite")
    if np.any(np.abs(thr) > MAX_ABS_THROUGHPUT):
        _fail("curve throughputs must lie within [-1e18, 1e18]")
    for e in range(num_engines):
        chunk = loads[curve_off[e] : curve_off[e + 1]]
        if chunk[0] != 0 or not _increasing(chunk):
            _fail(f"engine {e}: curve loads must start at 0 and strictly increase")


def _increasing(values: np.ndarray) -> bool:
    """Strictly increasing. Compares neighbours directly: ``np.diff`` on integers wraps
    around on overflow and would let a decreasing pair through."""
    return not np.any(values[1:] <= values[:-1])


def _fail(message: str) -> None:
    raise SchedulingError(message)
