"""Micro benchmarks: one scheduling round, compiled core against the reference.

Each group holds one round (queue size, beam width, number of models) timed in both
implementations, so the report shows their ratio. Inputs are built outside the timed
call, and each benchmark first checks that the core's answer equals the reference's.
Run with ``pytest bench/ --benchmark-only`` (see bench/README.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from aragog import _core
from aragog.scheduling import reference
from aragog.scheduling.bench import random_round
from aragog.scheduling.round import ROUND_INPUT_FIELDS, RoundInput

QUEUE_SIZES = (16, 64, 256)
BEAM_WIDTHS = (1, 4, 8)
NUM_MODELS = (3, 6)
CASES = [(n, b, m) for m in NUM_MODELS for n in QUEUE_SIZES for b in BEAM_WIDTHS]


def _core_call(round_input: RoundInput):
    arguments = tuple(getattr(round_input, name) for name in ROUND_INPUT_FIELDS)
    return lambda: _core.schedule_round(*arguments)


def _reference_call(round_input: RoundInput):
    def call():
        result = reference.schedule_round(round_input)
        return result.item_engine, result.utilization_gain, result.flexibility

    return call


@pytest.mark.parametrize("implementation", ["core", "reference"])
@pytest.mark.parametrize(
    ("num_items", "beam_width", "num_models"),
    CASES,
    ids=[f"q{n}-b{b}-m{m}" for n, b, m in CASES],
)
def test_one_round(
    benchmark, implementation: str, num_items: int, beam_width: int, num_models: int
) -> None:
    round_input = random_round(num_items, beam_width, num_models, seed=0)
    call = (_core_call if implementation == "core" else _reference_call)(round_input)
    benchmark.group = f"round queue={num_items} beam={beam_width} models={num_models}"
    benchmark.extra_info.update(
        num_items=num_items, beam_width=beam_width, num_models=num_models
    )

    # Check once, before timing: the core answers exactly as the reference does.
    engines, gain, flexibility = call()
    expected = reference.schedule_round(round_input)
    np.testing.assert_array_equal(engines, expected.item_engine)
    assert gain == expected.utilization_gain
    assert flexibility == expected.flexibility

    benchmark(call)
