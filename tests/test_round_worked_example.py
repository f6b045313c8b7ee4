"""Hand-worked rounds, each run on the compiled core and on the reference.

Models: 0 is a 7B, 1 a 14B, 2 a 32B. Curves are linear where a test needs a constant
gain per call: ``linear_curve(30.0)`` gains exactly 30 tok/s per added call.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from round_builders import EngineSpec, encode, linear_curve, make_round

from aragog.scheduling import reference
from aragog.scheduling.round import RoundInput, RoundResult, run_round

M7B, M14B, M32B = 0, 1, 2

Schedule = Callable[[RoundInput], RoundResult]


@pytest.fixture(params=[run_round, reference.schedule_round], ids=["core", "reference"])
def schedule(request: pytest.FixtureRequest) -> Schedule:
    return request.param


def _single_agent_round(
    viable_models: list[list[int]], engines: list[EngineSpec], beam_width: int
) -> RoundInput:
    """Requests of a one-agent workflow whose candidates are 7B, 14B and 32B: request
    ``r`` may use ``viable_models[r]`` and has its single stage ready."""
    candidates = [M7B, M14B, M32B]
    requests = [(0, sorted(candidates.index(m) for m in ms)) for ms in viable_models]
    items = [(r, 0, 0) for r in range(len(requests))]
    return make_round([[candidates]], requests, items, engines, beam_width)


def test_papers_worked_example_puts_all_three_requests_on_the_idle_small_engine(
    schedule: Schedule,
) -> None:
    # 7B: empty, 16 slots, +30 a request; 14B: full (8 of 8); 32B: empty, 4 slots, +25.
    round_input = _single_agent_round(
        [[M7B], [M7B, M14B], [M7B, M14B, M32B]],
        [
            EngineSpec(M7B, free_slots=16, load=0, curve=[(0.0, 0.0), (16.0, 480.0)]),
            EngineSpec(M14B, free_slots=0, load=8, curve=[(0.0, 0.0), (8.0, 400.0)]),
            EngineSpec(M32B, free_slots=4, load=0, curve=[(0.0, 0.0), (4.0, 100.0)]),
        ],
        beam_width=2,
    )

    result = schedule(round_input)

    # U: 30 + 30 + 30 = 90 beats 30 + 30 + 25 = 85 (R3 on 32B); F is equal for both.
    np.testing.assert_array_equal(result.item_engine, [0, 0, 0])
    assert result.utilization_gain == 90.0
    assert result.flexibility == (1.0 + 1 / 2 + 1 / 3) / 3


def test_round_skips_a_request_whose_only_model_is_full_and_schedules_a_later_one(
    schedule: Schedule,
) -> None:
    round_input = _single_agent_round(
        [[M14B], [M7B]],
        [
            EngineSpec(M7B, free_slots=16, load=0, curve=linear_curve(30.0)),
            EngineSpec(M14B, free_slots=0, load=8, curve=linear_curve(40.0)),
        ],
        beam_width=4,
    )

    result = schedule(round_input)

    np.testing.assert_array_equal(result.item_engine, [-1, 0])
    assert result.utilization_gain == 30.0
    assert result.flexibility == 1.0


def test_round_serves_the_head_of_the_meta_queue_first_whatever_the_item_order(
    schedule: Schedule,
) -> None:
    # One free slot, two one-stage requests; the items are listed tail first.
    round_input = make_round(
        [[[M7B]]],
        [(0, [0]), (0, [0])],
        [(1, 0, 0), (0, 0, 0)],
        [EngineSpec(M7B, free_slots=1, load=0, curve=linear_curve(30.0))],
        beam_width=2,
    )

    result = schedule(round_input)

    np.testing.assert_array_equal(result.item_engine, [-1, 0])


def test_round_gives_the_deeper_stage_of_a_request_the_last_free_slot(
    schedule: Schedule,
) -> None:
    # Two parallel agents of one request: agent 1 is deeper (depth 1) than agent 0.
    round_input = make_round(
        [[[M7B], [M7B]]],
        [(0, [0])],
        [(0, 0, 0), (0, 1, 1)],
        [EngineSpec(M7B, free_slots=1, load=0, curve=linear_curve(30.0))],
        beam_width=1,
    )

    result = schedule(round_input)

    np.testing.assert_array_equal(result.item_engine, [-1, 0])
    assert result.utilization_gain == 30.0


@pytest.mark.parametrize(
    ("beam_width", "expected_engines", "expected_gain"),
    [
        # Greedy takes 7B for agent 0 (+30 against +25), so agent 1 must take 7B too,
        # which gains nothing more.
        (1, [0, 0], 30.0),
        # The beam also keeps 32B for agent 0; agent 1 then gains 25 more on 32B.
        (2, [1, 1], 50.0),
    ],
)
def test_parallel_items_of_a_request_agree_on_a_viable_configuration(
    schedule: Schedule,
    beam_width: int,
    expected_engines: list[int],
    expected_gain: float,
) -> None:
    # Viable: (7B, 7B) and (32B, 32B) only. Mixing (7B then 32B, +55) would gain the
    # most but is no configuration of the viable set.
    agents = [[M7B, M32B], [M7B, M32B]]
    viable = [encode(agents, [M7B, M7B]), encode(agents, [M32B, M32B])]
    round_input = make_round(
        [agents],
        [(0, viable)],
        [(0, 0, 1), (0, 1, 1)],
        [
            EngineSpec(M7B, free_slots=4, load=0, curve=[(0, 0), (1, 30), (2, 30)]),
            EngineSpec(M32B, free_slots=4, load=0, curve=linear_curve(25.0)),
        ],
        beam_width=beam_width,
    )

    result = schedule(round_input)

    np.testing.assert_array_equal(result.item_engine, expected_engines)
    assert result.utilization_gain == expected_gain
    assert result.flexibility == 1 / 2


def test_flexibility_breaks_a_tie_in_utilization_gain_towards_more_configurations(
    schedule: Schedule,
) -> None:
    # Agent 0 on 7B keeps 2 of the 3 viable configurations, on 14B only 1. Both engines
    # have the same curve and load, so U ties; the 14B engine comes first (index 0).
    agents = [[M7B, M14B], [M7B, M14B]]
    viable = sorted(
        encode(agents, models) for models in ([M7B, M7B], [M7B, M14B], [M14B, M7B])
    )
    same_curve = linear_curve(20.0)
    round_input = make_round(
        [agents],
        [(0, viable)],
        [(0, 0, 1)],
        [
            EngineSpec(M14B, free_slots=2, load=3, curve=same_curve),
            EngineSpec(M7B, free_slots=2, load=3, curve=same_curve),
        ],
        beam_width=2,
    )

    result = schedule(round_input)

    np.testing.assert_array_equal(result.item_engine, [1])
    assert result.utilization_gain == 20.0
    assert result.flexibility == 2 / 3


def test_equal_replicas_tie_in_gain_and_flexibility_and_the_first_engine_wins(
    schedule: Schedule,
) -> None:
    same_curve = [(0.0, 0.0), (2.0, 50.0), (6.0, 80.0)]
    round_input = _single_agent_round(
        [[M7B, M32B]],
        [
            EngineSpec(M32B, free_slots=0, load=0, curve=linear_curve(99.0)),
            EngineSpec(M7B, free_slots=3, load=4, curve=same_curve),
            EngineSpec(M7B, free_slots=3, load=4, curve=same_curve),
        ],
        beam_width=3,
    )

    result = schedule(round_input)

    # Load 4 is on the second segment, (2, 50) to (6, 80): interp(5) - interp(4).
    np.testing.assert_array_equal(result.item_engine, [1])
    assert result.utilization_gain == (50.0 + 30.0 * 3.0 / 4.0) - (
        50.0 + 30.0 * 2.0 / 4.0
    )
    assert result.flexibility == 1 / 2


@pytest.mark.parametrize(
    ("beam_width", "expected_engines", "expected_gain", "expected_flexibility"),
    [
        # Greedy: R1 takes A (+30 against +25), which fills A, so R2 (A only) waits.
        (1, [0, -1], 30.0, 1 / 2),
        # Beam: R1 on B (+25) leaves A for R2 (+30): 55, and R2 keeps its only
        # configuration, so F = (1/2 + 1) / 2.
        (2, [1, 0], 55.0, (1 / 2 + 1.0) / 2),
    ],
)
def test_a_wider_beam_finds_a_better_assignment_than_greedy(
    schedule: Schedule,
    beam_width: int,
    expected_engines: list[int],
    expected_gain: float,
    expected_flexibility: float,
) -> None:
    # Engine A serves 7B with one free slot (+30), engine B serves 14B (+25).
    round_input = _single_agent_round(
        [[M7B, M14B], [M7B]],
        [
            EngineSpec(M7B, free_slots=1, load=0, curve=linear_curve(30.0)),
            EngineSpec(M14B, free_slots=1, load=0, curve=linear_curve(25.0)),
        ],
        beam_width=beam_width,
    )

    result = schedule(round_input)

    np.testing.assert_array_equal(result.item_engine, expected_engines)
    assert result.utilization_gain == expected_gain
    assert result.flexibility == expected_flexibility


def test_round_stops_once_no_engine_has_a_free_slot(schedule: Schedule) -> None:
    round_input = _single_agent_round(
        [[M7B], [M7B], [M7B]],
        [EngineSpec(M7B, free_slots=2, load=0, curve=linear_curve(30.0))],
        beam_width=4,
    )

    result = schedule(round_input)

    np.testing.assert_array_equal(result.item_engine, [0, 0, -1])
    assert result.utilization_gain == 60.0


def test_a_round_without_items_assigns_nothing_with_zero_gain_and_flexibility(
    schedule: Schedule,
) -> None:
    round_input = make_round(
        [[[M7B]]],
        [(0, [0])],
        [],
        [EngineSpec(M7B, free_slots=2, load=0, curve=linear_curve(30.0))],
        beam_width=4,
    )

    result = schedule(round_input)

    assert result.item_engine.shape == (0,)
    assert result.utilization_gain == 0.0
    assert result.flexibility == 0.0
