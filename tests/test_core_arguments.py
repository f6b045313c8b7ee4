"""Bad arguments to the compiled core raise ValueError (SchedulingError through
run_round) with a one-line message naming the problem, and never crash it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from round_builders import (
    EngineSpec,
    assert_same_result,
    linear_curve,
    make_round,
    replace,
    round_inputs,
    run_both,
)

from aragog import _core
from aragog.errors import SchedulingError
from aragog.scheduling import reference
from aragog.scheduling.round import ROUND_INPUT_FIELDS, RoundInput, run_round

I32, I64, F64 = np.int32, np.int64, np.float64


def _valid_round() -> RoundInput:
    """Two workflows, three requests, four items, three engines: every table has some
    length to break."""
    return make_round(
        [[[0, 1, 2]], [[0, 2], [1, 2]]],
        [(0, [0, 1]), (1, [0, 3]), (0, [2])],
        [(0, 0, 0), (1, 0, 1), (1, 1, 0), (2, 0, 0)],
        [
            EngineSpec(0, free_slots=4, load=0, curve=linear_curve(30.0)),
            EngineSpec(1, free_slots=0, load=8, curve=[(0.0, 0.0), (8.0, 400.0)]),
            EngineSpec(2, free_slots=2, load=1, curve=[(0, 0), (2, 60), (4, 80)]),
        ],
        beam_width=2,
    )


# Arrays of the wrong kind: only the core cares (the reference takes anything numpy can
# read), and it says which argument.
WRONG_KIND_CASES = [
    (
        "int64_offsets",
        {"agent_offsets": np.array([0, 1, 3], dtype=I64)},
        "agent_offsets",
    ),
    ("int32_viable", {"viable_configs": np.array([0, 1, 0, 3, 2], dtype=I32)}, "dtype"),
    ("float32_curve", {"curve_load": np.zeros(5, dtype=np.float32)}, "curve_load"),
    ("big_endian", {"item_depth": np.array([0, 1, 0, 0], dtype=">i4")}, "item_depth"),
    ("two_dimensional", {"item_agent": np.array([[0, 0, 1, 0]], dtype=I32)}, "2-D"),
    ("zero_dimensional", {"engine_load": np.array(3, dtype=I32)}, "0-D"),
    ("python_list", {"engine_model": [0, 1, 2]}, "engine_model .* found list"),
    ("strided_view", {"item_request": np.arange(8, dtype=I32)[::2]}, "non-contiguous"),
    ("float_beam_width", {"beam_width": 2.5}, "beam_width must be an integer"),
    ("huge_negative_beam_width", {"beam_width": -(2**70)}, "beam_width must fit"),
]


@pytest.mark.parametrize(
    ("changes", "message"),
    [case[1:] for case in WRONG_KIND_CASES],
    ids=[case[0] for case in WRONG_KIND_CASES],
)
def test_core_rejects_an_argument_of_the_wrong_kind_by_name(
    changes: dict, message: str
) -> None:
    round_input = replace(_valid_round(), **changes)

    with pytest.raises(SchedulingError, match=message):
        run_round(round_input)


def _wrapping_viable() -> dict:
    # Request 0's ids are not increasing, but np.diff on int64 wraps around and used to
    # miss it.
    return {
        "viable_offsets": np.array([0, 4, 6, 7], dtype=I64),
        "viable_configs": np.array([0, 2**63 - 1, -2, 1, 0, 3, 2], dtype=I64),
    }


def _wrapping_offsets() -> dict:
    return {"viable_offsets": np.array([0, 2**63 - 1, -2, 5], dtype=I64)}


# Arrays that break the round's contract: the core and the reference raise the same
# message.
CONTRACT_CASES = [
    ("beam_width_zero", {"beam_width": 0}, "beam_width must be at least 1, found 0"),
    ("agent_offsets_not_from_0", {"agent_offsets": np.array([1, 1, 3], I32)}, "start"),
    ("agents_past_the_table", {"agent_offsets": np.array([0, 1, 4], I32)}, "end at"),
    (
        "negative_model",
        {"candidate_models": np.array([0, 1, 2, 0, 2, -1, 2], I32)},
        "non-neg",
    ),
    (
        "candidate_twice",
        {"candidate_models": np.array([0, 1, 0, 0, 2, 1, 2], I32)},
        "twice",
    ),
    ("viable_offsets_short", {"viable_offsets": np.array([0, 2, 5], I64)}, "one entry"),
    (
        "viable_offsets_decrease",
        {"viable_offsets": np.array([0, 3, 2, 5], I64)},
        "non-dec",
    ),
    ("viable_offsets_wrap", _wrapping_offsets(), "non-decreasing"),
    ("unknown_workflow", {"request_workflow": np.array([0, 2, 0], I32)}, "unknown"),
    (
        "config_out_of_range",
        {"viable_configs": np.array([0, 1, 0, 4, 2], I64)},
        r"1: .*\[0, 4\)",
    ),
    ("negative_config", {"viable_configs": np.array([-1, 1, 0, 3, 2], I64)}, "out of"),
    (
        "viable_not_increasing",
        {"viable_configs": np.array([1, 0, 0, 3, 2], I64)},
        "strictly",
    ),
    ("viable_not_increasing_wrap", _wrapping_viable(), "strictly increasing"),
    ("item_lengths_differ", {"item_agent": np.array([0, 0, 1], I32)}, "one length"),
    ("unknown_request", {"item_request": np.array([0, 1, 1, 3], I32)}, "item 3"),
    ("unknown_agent", {"item_agent": np.array([0, 0, 2, 0], I32)}, "agent 2 is not"),
    ("negative_depth", {"item_depth": np.array([0, 1, -1, 0], I32)}, "depth"),
    ("agent_twice", {"item_agent": np.array([0, 1, 1, 0], I32)}, "twice"),
    ("engine_lengths_differ", {"engine_load": np.array([0, 8], I32)}, "one length"),
    ("negative_load", {"engine_load": np.array([0, -8, 1], I32)}, "non-negative"),
    ("curve_offsets_short", {"curve_offsets": np.array([0, 2, 4], I32)}, "plus one"),
    ("curve_without_point", {"curve_offsets": np.array([0, 2, 2, 7], I32)}, "point"),
    ("curve_lengths_differ", {"curve_throughput": np.zeros(6, F64)}, "one length"),
    ("curve_not_from_0", {"curve_load": np.array([0, 64, 1, 8, 0, 2, 4], F64)}, "1:"),
    (
        "curve_not_increasing",
        {"curve_load": np.array([0, 64, 0, 8, 0, 4, 2], F64)},
        "2:",
    ),
    (
        "nan_throughput",
        {"curve_throughput": np.array([0, 1, 0, np.nan, 0, 1, 2], F64)},
        "finite",
    ),
    (
        "infinite_load",
        {"curve_load": np.array([0, np.inf, 0, 8, 0, 2, 4], F64)},
        "finite",
    ),
    (
        "huge_throughput",
        {"curve_throughput": np.array([0, 1e19, 0, 1, 0, 1, 2], F64)},
        "1e18",
    ),
]


@pytest.mark.parametrize(
    ("changes", "message"),
    [case[1:] for case in CONTRACT_CASES],
    ids=[case[0] for case in CONTRACT_CASES],
)
def test_core_and_reference_reject_a_broken_contract_with_the_same_message(
    changes: dict, message: str
) -> None:
    round_input = replace(_valid_round(), **changes)

    with pytest.raises(SchedulingError, match=message) as core_error:
        run_round(round_input)
    with pytest.raises(SchedulingError) as reference_error:
        reference.schedule_round(round_input)

    assert str(core_error.value) == str(reference_error.value)
    assert "\n" not in str(core_error.value)


def test_the_core_module_itself_raises_value_error() -> None:
    round_input = replace(_valid_round(), beam_width=0)
    arguments = [getattr(round_input, name) for name in ROUND_INPUT_FIELDS]

    with pytest.raises(ValueError, match="beam_width"):
        _core.schedule_round(*arguments)


@pytest.mark.parametrize("beam_width", [np.int64(2), np.int32(3), True, 2**80])
def test_core_accepts_any_integer_beam_width_like_the_reference(
    beam_width: int,
) -> None:
    round_input = replace(_valid_round(), beam_width=beam_width)

    core, ref = run_both(round_input)

    assert_same_result(core, ref)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((np.zeros((2, 2), dtype=I64), 1, 2, 0), "2-D"),
        ((np.zeros(3, dtype=I32), 1, 2, 0), "viable .* int64"),
        (([0, 1, 2], 1, 2, 0), "found list"),
        ((np.arange(3, dtype=I64), 0, 2, 0), "stride and radix must be at least 1"),
        ((np.arange(3, dtype=I64), 1, -1, 0), "stride and radix must be at least 1"),
        ((np.arange(3, dtype=I64), 1, 2, 0.5), "digit must be an integer"),
        ((np.arange(3, dtype=I64), 2**64, 2, 0), "stride must fit"),
    ],
)
def test_narrow_viable_set_rejects_bad_arguments(
    arguments: tuple, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _core.narrow_viable_set(*arguments)


def test_reference_narrowing_rejects_a_zero_stride_like_the_core() -> None:
    with pytest.raises(SchedulingError, match="stride and radix must be at least 1"):
        reference.narrow_viable_set(np.arange(3, dtype=I64), 0, 2, 0)


# Corrupting one array of a valid round at random: the core must never crash, and must
# accept or reject exactly what the reference accepts or rejects.

_INT_FIELDS = [
    name
    for name in ROUND_INPUT_FIELDS
    if name not in ("curve_load", "curve_throughput", "beam_width")
]


@st.composite
def _corrupted_rounds(draw: st.DrawFn) -> RoundInput:
    round_input = draw(st.one_of(st.just(_valid_round()), round_inputs(max_items=6)))
    name = draw(st.sampled_from([*_INT_FIELDS, "curve_load", "curve_throughput"]))
    old = getattr(round_input, name)
    size = draw(st.integers(0, len(old) + 2))
    if old.dtype == F64:
        values = st.one_of(
            st.floats(-3, 70), st.sampled_from([np.nan, np.inf, -np.inf, 1e300])
        )
    else:
        bound = 2**31 - 1 if old.dtype == I32 else 2**63 - 1
        values = st.one_of(st.integers(-3, 10), st.integers(-bound - 1, bound))
    new = np.array(
        draw(st.lists(values, min_size=size, max_size=size)), dtype=old.dtype
    )
    return replace(round_input, **{name: new})


def _outcome(run: Callable[[RoundInput], object], round_input: RoundInput) -> object:
    try:
        result = run(round_input)
    except SchedulingError as error:
        return ("error", str(error))
    return (result.item_engine.tolist(), result.utilization_gain, result.flexibility)


@settings(
    max_examples=800,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(_corrupted_rounds())
def test_core_and_reference_agree_on_randomly_corrupted_rounds(
    round_input: RoundInput,
) -> None:
    core = _outcome(run_round, round_input)

    assert core == _outcome(reference.schedule_round, round_input)
