"""Builders for scheduling-round tests: hand-written rounds and random valid rounds.

``make_round`` turns readable Python lists into a :class:`RoundInput` with the exact
dtypes the compiled core accepts; ``round_inputs`` is a hypothesis strategy over valid
rounds, shaped to reach the corners the beam search has: ties in U and F, full engines,
empty viable sets, parallel items of one request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from aragog.scheduling import reference
from aragog.scheduling.round import RoundInput, RoundResult, run_round

Curve = Sequence[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """One engine: its model, free slots, occupancy and throughput-versus-load curve."""

    model: int
    free_slots: int
    load: int
    curve: Curve


def linear_curve(
    gain_per_call: float, max_load: float = 64.0
) -> list[tuple[float, ...]]:
    """A curve gaining ``gain_per_call`` per call up to ``max_load``, then flat."""
    return [(0.0, 0.0), (max_load, gain_per_call * max_load)]


def encode(agent_candidates: Sequence[Sequence[int]], models: Sequence[int]) -> int:
    """The configuration id giving agent ``i`` model ``models[i]`` (agent 0 least
    significant)."""
    config, stride = 0, 1
    for candidates, model in zip(agent_candidates, models, strict=True):
        config += list(candidates).index(model) * stride
        stride *= len(candidates)
    return config


def make_round(
    workflows: Sequence[Sequence[Sequence[int]]],
    requests: Sequence[tuple[int, Sequence[int]]],
    items: Sequence[tuple[int, int, int]],
    engines: Sequence[EngineSpec],
    beam_width: int,
) -> RoundInput:
    """A round from lists.

    Args:
        workflows: per workflow, per agent, the candidate model ids.
        requests: meta-queue, head first: (workflow index, viable configuration ids).
        items: ready items: (request, local agent, depth).
        engines: the engines, in index order.
        beam_width: B.
    """
    agent_offsets = np.cumsum([0] + [len(w) for w in workflows], dtype=np.int32)
    agents = [candidates for w in workflows for candidates in w]
    candidate_offsets = np.cumsum([0] + [len(c) for c in agents], dtype=np.int32)
    candidate_models = np.array([m for c in agents for m in c], dtype=np.int32)
    viable = [list(v) for _, v in requests]
    viable_offsets = np.cumsum([0] + [len(v) for v in viable], dtype=np.int64)
    curve_offsets = np.cumsum([0] + [len(e.curve) for e in engines], dtype=np.int32)
    return RoundInput(
        agent_offsets=agent_offsets,
        candidate_offsets=candidate_offsets,
        candidate_models=candidate_models,
        request_workflow=np.array([w for w, _ in requests], dtype=np.int32),
        viable_offsets=viable_offsets,
        viable_configs=np.array([c for v in viable for c in v], dtype=np.int64),
        item_request=np.array([i[0] for i in items], dtype=np.int32),
        item_agent=np.array([i[1] for i in items], dtype=np.int32),
        item_depth=np.array([i[2] for i in items], dtype=np.int32),
        engine_model=np.array([e.model for e in engines], dtype=np.int32),
        engine_free_slots=np.array([e.free_slots for e in engines], dtype=np.int32),
        engine_load=np.array([e.load for e in engines], dtype=np.int32),
        curve_offsets=curve_offsets,
        curve_load=np.array([p[0] for e in engines for p in e.curve], dtype=np.float64),
        curve_throughput=np.array(
            [p[1] for e in engines for p in e.curve], dtype=np.float64
        ),
        beam_width=beam_width,
    )


def replace(round_input: RoundInput, **changes: object) -> RoundInput:
    """A copy of ``round_input`` with some fields replaced."""
    return dataclasses.replace(round_input, **changes)


def run_both(round_input: RoundInput) -> tuple[RoundResult, RoundResult]:
    """The round's answer from the compiled core and from the reference."""
    return run_round(round_input), reference.schedule_round(round_input)


def assert_same_result(core: RoundResult, ref: RoundResult) -> None:
    """Bit-identical: the same engines, and U and F equal as floats, not roughly."""
    assert core.item_engine.dtype == np.int32
    np.testing.assert_array_equal(core.item_engine, ref.item_engine)
    assert core.utilization_gain == ref.utilization_gain
    assert core.flexibility == ref.flexibility


def assert_feasible(round_input: RoundInput, result: RoundResult) -> None:
    """The answer respects the round's constraints: every assigned item's engine serves
    one of its agent's candidates, no engine gets more calls than it has free slots, and
    each request's assigned items agree with one of its viable configurations."""
    inp = round_input
    counts = np.zeros(len(inp.engine_model), dtype=np.int64)
    by_request: dict[int, list[tuple[int, int]]] = {}
    for item, engine in enumerate(result.item_engine.tolist()):
        if engine < 0:
            continue
        counts[engine] += 1
        r = int(inp.item_request[item])
        by_request.setdefault(r, []).append((int(inp.item_agent[item]), engine))
    assert np.all(counts <= np.maximum(inp.engine_free_slots, 0))
    for r, choices in by_request.items():
        w = int(inp.request_workflow[r])
        viable = inp.viable_configs[inp.viable_offsets[r] : inp.viable_offsets[r + 1]]
        keep = np.ones(len(viable), dtype=bool)
        for agent, engine in choices:
            stride, radix, cands = _digit_space(inp, w, agent)
            model = int(inp.engine_model[engine])
            assert model in cands
            keep &= (viable // stride) % radix == cands.index(model)
        assert keep.any()


def _digit_space(inp: RoundInput, w: int, agent: int) -> tuple[int, int, list[int]]:
    first = int(inp.agent_offsets[w])
    radix = np.diff(inp.candidate_offsets)
    stride = int(np.prod(radix[first : first + agent]))
    lo, hi = (
        inp.candidate_offsets[first + agent],
        inp.candidate_offsets[first + agent + 1],
    )
    return stride, int(hi - lo), inp.candidate_models[lo:hi].tolist()


# Random valid rounds.

_INTEGER_SLOPES = (0.0, 1.0, 2.0, 3.0, 5.0)
_BEAM_WIDTHS = st.integers(1, 8)


@st.composite
def curves(draw: st.DrawFn, tie_prone: bool = False) -> list[tuple[float, float]]:
    """A throughput-versus-load curve: linear, concave, non-concave or flat.

    Tie-prone curves use integer loads and small integer slopes, so that marginal gains
    of different engines are often exactly equal.
    """
    kind = draw(st.sampled_from(["linear", "concave", "random", "flat"]))
    num_points = draw(st.integers(1, 6))
    if tie_prone:
        steps = draw(
            st.lists(
                st.integers(1, 3), min_size=num_points - 1, max_size=num_points - 1
            )
        )
    else:
        steps = draw(
            st.lists(
                st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, 7.0]),
                min_size=num_points - 1,
                max_size=num_points - 1,
            )
        )
    loads = np.concatenate([[0.0], np.cumsum(np.asarray(steps, dtype=np.float64))])
    if kind == "flat":
        level = draw(st.sampled_from([0.0, 10.0, 123.5]))
        thr = [level] * num_points
    elif kind == "linear":
        slope = draw(st.sampled_from(_INTEGER_SLOPES))
        thr = [slope * x for x in loads]
    elif kind == "concave":
        slopes = sorted(
            draw(
                st.lists(
                    st.sampled_from(
                        _INTEGER_SLOPES if tie_prone else (0.3, 1.0, 2.5, 4)
                    ),
                    min_size=num_points - 1,
                    max_size=num_points - 1,
                )
            ),
            reverse=True,
        )
        thr = [0.0]
        for slope, step in zip(slopes, np.diff(loads), strict=True):
            thr.append(thr[-1] + slope * step)
    else:
        values = st.integers(-5, 40).map(float) if tie_prone else st.floats(-50, 500)
        thr = draw(st.lists(values, min_size=num_points, max_size=num_points))
    return [(float(x), float(y)) for x, y in zip(loads, thr, strict=True)]


@st.composite
def round_inputs(
    draw: st.DrawFn,
    max_items: int = 14,
    tie_prone: bool = False,
    parallel: bool = False,
    beam_widths: st.SearchStrategy[int] = _BEAM_WIDTHS,
) -> RoundInput:
    """A random valid round.

    Args:
        max_items: upper bound on the number of ready items.
        tie_prone: engines come with identical replicas and integer curves, so U ties
            (and the F tie-break) are frequent.
        parallel: requests have several ready items (parallel agents) and sparse viable
            sets, so that consistency between a request's choices decides.
        beam_widths: where B is drawn from.
    """
    num_models = draw(st.integers(1, 6))
    model = st.integers(0, num_models - 1)

    # Workflows: 1-5 agents with 1-4 candidate models each.
    workflows = []
    for _ in range(draw(st.integers(1, 3))):
        num_agents = draw(st.integers(2 if parallel else 1, 5))
        workflows.append(
            [
                draw(
                    st.lists(
                        model, min_size=1, max_size=min(4, num_models), unique=True
                    )
                )
                for _ in range(num_agents)
            ]
        )

    # Meta-queue: each request's viable set is a random subset of its space.
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # Listed most interesting first: hypothesis leans towards a list's first elements.
    densities = [0.15, 0.3, 0.05, 0.6, 1.0, 0.0]
    if not parallel:
        densities = [1.0, 0.3, 0.6, 0.1, 1.0, 0.0]
    requests, items = [], []
    for r in range(draw(st.integers(1, 8))):
        w = draw(st.integers(0, len(workflows) - 1))
        num_configs = int(np.prod([len(a) for a in workflows[w]]))
        density = draw(st.sampled_from(densities))
        viable = np.flatnonzero(rng.random(num_configs) < density).tolist()
        requests.append((w, viable))
        num_agents = len(workflows[w])
        min_ready = min(2, num_agents) if parallel else 1
        ready = draw(
            st.lists(
                st.integers(0, num_agents - 1),
                min_size=min_ready,
                max_size=num_agents,
                unique=True,
            )
        )
        for agent in ready:
            items.append((r, agent, draw(st.integers(0, 3))))
    items = draw(st.permutations(items))[:max_items]

    # Engines: some replicas of one model with identical curves and loads.
    engines: list[EngineSpec] = []
    free_slots = st.sampled_from([1, 2, 1, 3, 0, 4, -1, 2, -2])
    for _ in range(draw(st.integers(1, 6))):
        spec = EngineSpec(
            model=draw(
                st.integers(0, num_models)
            ),  # num_models: a model no agent lists.
            free_slots=draw(free_slots),
            load=draw(st.integers(0, 9)),
            curve=draw(curves(tie_prone=tie_prone)),
        )
        engines.append(spec)
        if draw(st.booleans()) and (tie_prone or draw(st.booleans())):
            engines.append(dataclasses.replace(spec, free_slots=draw(free_slots)))
    if tie_prone:
        engines = draw(st.permutations(engines))

    return make_round(workflows, requests, items, engines, draw(beam_widths))


@st.composite
def huge_space_round_inputs(draw: st.DrawFn) -> RoundInput:
    """A round whose workflows have so many agents that configuration ids pass 2^32 and
    strides may pass 2^64: the core's exact-division path and its saturated strides."""
    num_models = draw(st.integers(2, 4))
    model = st.integers(0, num_models - 1)
    workflows = [
        [
            draw(st.lists(model, min_size=2, max_size=num_models, unique=True))
            for _ in range(draw(st.integers(20, 48)))
        ]
        for _ in range(draw(st.integers(1, 2)))
    ]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    requests, items = [], []
    for r in range(draw(st.integers(1, 4))):
        w = draw(st.integers(0, len(workflows) - 1))
        num_configs = int(np.prod([len(a) for a in workflows[w]], dtype=object))
        top = min(num_configs, 2**63)
        ids = rng.integers(0, top, size=draw(st.integers(0, 12)), dtype=np.int64)
        viable = sorted(
            {int(c) for c in ids} | set(draw(st.sets(st.sampled_from([0, top - 1]))))
        )
        # A few near-duplicates so that configurations share most digits.
        viable = sorted(set(viable + [c ^ 1 for c in viable if c ^ 1 < num_configs]))
        requests.append((w, viable))
        agents = st.integers(0, len(workflows[w]) - 1)
        for agent in draw(st.lists(agents, min_size=1, max_size=3, unique=True)):
            items.append((r, agent, draw(st.integers(0, 2))))
    engines = [
        EngineSpec(
            model=draw(model),
            free_slots=draw(st.integers(0, 3)),
            load=draw(st.integers(0, 5)),
            curve=draw(curves()),
        )
        for _ in range(draw(st.integers(1, 5)))
    ]
    return make_round(workflows, requests, items, engines, draw(st.integers(1, 4)))
