"""Realistic scheduling rounds, and a timer of the compiled core against the reference.

``random_round`` builds the meta-queue a saturated deployment sees: requests of a
self-refine-like chain (generate -> critique -> refine) and of a voting-like fan-in
(four voters -> aggregator), each at one ready stage, with the viable set that
accuracy-constrained routing leaves them; engines one per model plus a replica of the
smallest, few free slots, and concave throughput-versus-load curves. ``bench_core``
times one such round in both implementations, on the same inputs, in one run.
"""

from __future__ import annotations

import itertools
import statistics
import time
from dataclasses import dataclass

import numpy as np

from aragog.scheduling import reference
from aragog.scheduling.round import ROUND_INPUT_FIELDS, RoundInput


@dataclass(frozen=True, slots=True)
class _WorkflowShape:
    """Agents' depths (longest path to the sink) and, per ready stage, the agents ready
    together and the agents already dispatched."""

    depths: tuple[int, ...]
    stages: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]


_SELF_REFINE = _WorkflowShape(
    depths=(2, 1, 0),
    stages=(((0,), ()), ((1,), (0,)), ((2,), (0, 1))),
)
_VOTING = _WorkflowShape(
    depths=(1, 1, 1, 1, 0),
    # Voters are ready together; an aggregator waits for all four.
    stages=(((0, 1, 2, 3), ()), ((4,), (0, 1, 2, 3))),
)
_SHAPES = (_SELF_REFINE, _VOTING)
_SHAPE_WEIGHTS = (0.6, 0.4)

# Per model, smallest first: share of questions it answers well, saturation batch size,
# peak throughput (tokens/s). Catalog-like numbers for 7B/14B/32B and 3B/8B/70B models.
_QUALITY = (0.62, 0.70, 0.76, 0.55, 0.66, 0.80)
_SATURATION_BATCH = (48, 32, 16, 64, 40, 12)
_PEAK_THROUGHPUT = (4200.0, 2600.0, 1400.0, 6000.0, 3800.0, 900.0)


def random_round(
    num_items: int, beam_width: int, num_models: int, seed: int = 0
) -> RoundInput:
    """A realistic round with ``num_items`` ready items over ``num_models`` models.

    Raises:
        ValueError: ``num_items`` is negative or ``num_models`` is not in 1..6.
    """
    if num_items < 0 or not 1 <= num_models <= len(_QUALITY):
        raise ValueError(
            f"num_items must be >= 0 and num_models in 1..{len(_QUALITY)}, "
            f"found {num_items} and {num_models}"
        )
    rng = np.random.default_rng(seed)
    models = list(range(num_models))
    quality = np.array(_QUALITY[:num_models])

    # Every agent may use every model: a self-refine and a voting configuration space.
    spaces = [_space_quality(len(shape.depths), quality) for shape in _SHAPES]

    # Meta-queue: requests at one ready stage each until there are enough items.
    request_workflow: list[int] = []
    viable: list[np.ndarray] = []
    items: list[tuple[int, int, int]] = []
    while len(items) < num_items:
        w = int(rng.choice(len(_SHAPES), p=_SHAPE_WEIGHTS))
        shape = _SHAPES[w]
        ready, done = shape.stages[rng.integers(len(shape.stages))]
        if len(ready) > 1:
            # Some parallel agents may already be dispatched in an earlier round.
            num_ready = int(rng.integers(1, len(ready) + 1))
            done = done + ready[num_ready:]
            ready = ready[:num_ready]
        r = len(request_workflow)
        request_workflow.append(w)
        viable.append(_viable_set(spaces[w], num_models, done, rng))
        for agent in ready:
            items.append((r, agent, shape.depths[agent]))
    items = items[:num_items]

    # Engines: one per model, plus a replica of the smallest; near saturation.
    engine_model = [*models, 0]
    free_slots, loads, curves = [], [], []
    for m in engine_model:
        saturation = _SATURATION_BATCH[m]
        free = int(rng.integers(-2, saturation // 4 + 1))
        free_slots.append(free)
        loads.append(saturation - free)
        curves.append(_concave_curve(_PEAK_THROUGHPUT[m], saturation))

    candidates = [models] * sum(len(shape.depths) for shape in _SHAPES)
    agent_offsets = np.cumsum([0] + [len(s.depths) for s in _SHAPES], dtype=np.int32)
    return RoundInput(
        agent_offsets=agent_offsets,
        candidate_offsets=np.cumsum([0] + [len(c) for c in candidates], dtype=np.int32),
        candidate_models=np.array([m for c in candidates for m in c], dtype=np.int32),
        request_workflow=np.array(request_workflow, dtype=np.int32),
        viable_offsets=np.cumsum([0] + [len(v) for v in viable], dtype=np.int64),
        viable_configs=np.concatenate(viable).astype(np.int64),
        item_request=np.array([i[0] for i in items], dtype=np.int32),
        item_agent=np.array([i[1] for i in items], dtype=np.int32),
        item_depth=np.array([i[2] for i in items], dtype=np.int32),
        engine_model=np.array(engine_model, dtype=np.int32),
        engine_free_slots=np.array(free_slots, dtype=np.int32),
        engine_load=np.array(loads, dtype=np.int32),
        curve_offsets=np.cumsum([0] + [len(c) for c in curves], dtype=np.int32),
        curve_load=np.concatenate([c[:, 0] for c in curves]),
        curve_throughput=np.concatenate([c[:, 1] for c in curves]),
        beam_width=beam_width,
    )


def bench_core(
    num_items: int,
    beam_width: int,
    num_models: int,
    repeat: int = 2000,
    python_repeat: int = 20,
    seed: int = 0,
) -> dict[str, float]:
    """Median time of one round in the compiled core and in the reference.

    Both run on the same ``random_round``; the core's answer is first checked against
    the reference's. The core is timed through ``aragog._core.schedule_round`` with its
    arguments prepared (argument checks and the GIL release included), ``repeat`` times;
    the reference ``python_repeat`` times.

    Returns:
        ``cxx_us_median`` and ``python_us_median`` (microseconds) and ``speedup``
        (their ratio).

    Raises:
        RuntimeError: the two implementations disagree on the round.
    """
    from aragog import _core

    round_input = random_round(num_items, beam_width, num_models, seed)
    arguments = tuple(getattr(round_input, name) for name in ROUND_INPUT_FIELDS)

    # Check once: the same engines, U and F as the reference.
    engines, gain, flexibility = _core.schedule_round(*arguments)
    expected = reference.schedule_round(round_input)
    if not (
        np.array_equal(engines, expected.item_engine)
        and gain == expected.utilization_gain
        and flexibility == expected.flexibility
    ):
        raise RuntimeError(
            f"core and reference disagree on a round of {num_items} items, "
            f"beam width {beam_width}, {num_models} models (seed {seed})"
        )

    # Time both, medians in microseconds.
    cxx_us = _median_us(lambda: _core.schedule_round(*arguments), repeat)
    python_us = _median_us(lambda: reference.schedule_round(round_input), python_repeat)
    return {
        "cxx_us_median": cxx_us,
        "python_us_median": python_us,
        "speedup": python_us / cxx_us,
    }


def _median_us(call, repeat: int) -> float:
    """Median wall time of ``call()`` in microseconds, after a short warm-up."""
    for _ in range(min(repeat, 10)):
        call()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000.0


def _space_quality(num_agents: int, quality: np.ndarray) -> np.ndarray:
    """Expected accuracy of every configuration (mean quality of its models), indexed
    by configuration id (agent 0 least significant)."""
    num_models = len(quality)
    grids = itertools.product(range(num_models), repeat=num_agents)
    # product() varies the last position fastest; reversed, agent 0 is the lowest.
    digits = np.array([g[::-1] for g in grids], dtype=np.int64).reshape(-1, num_agents)
    return quality[digits].mean(axis=1)


def _viable_set(
    accuracy: np.ndarray,
    num_models: int,
    done: tuple[int, ...],
    rng: np.random.Generator,
) -> np.ndarray:
    """Configurations meeting a per-request accuracy target and agreeing with the
    models already chosen for the ``done`` agents (narrowed at their dispatch)."""
    configs = np.arange(len(accuracy), dtype=np.int64)
    # A target that keeps roughly the best 20-60% of the space.
    target = np.quantile(accuracy, rng.uniform(0.4, 0.8))
    keep = accuracy >= target
    for agent in done:
        stride = num_models**agent
        digit = (configs // stride) % num_models
        # The digit dispatched earlier was one of the surviving configurations' digits.
        chosen = rng.choice(np.unique(digit[keep])) if keep.any() else 0
        keep &= digit == chosen
    return configs[keep]


def _concave_curve(peak: float, saturation: int) -> np.ndarray:
    """Throughput-versus-load points of a saturating engine: nearly linear at low load,
    flat past twice the saturation batch. Rows are (load, throughput)."""
    loads = np.unique(
        np.concatenate([np.arange(0, 9), np.geomspace(8, 2 * saturation, 6)])
    )
    loads = np.round(loads, 1)
    throughput = peak * (1.0 - np.exp(-3.0 * loads / saturation))
    return np.column_stack([loads, np.round(throughput, 2)])
