"""The compiled round is bit-identical to the pure-Python reference on random rounds.

Deterministic in CI: hypothesis is derandomized and keeps no example database, so every
run draws the same 2,700 rounds.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from round_builders import (
    EngineSpec,
    assert_feasible,
    assert_same_result,
    huge_space_round_inputs,
    linear_curve,
    make_round,
    round_inputs,
    run_both,
)

from aragog import _core
from aragog.scheduling import reference
from aragog.scheduling.bench import bench_core, random_round
from aragog.scheduling.round import RoundInput, run_round


def _deterministic(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@_deterministic(1200)
@given(round_inputs())
def test_core_matches_the_reference_on_random_rounds(round_input: RoundInput) -> None:
    core, ref = run_both(round_input)

    assert_same_result(core, ref)
    assert_feasible(round_input, core)


@_deterministic(600)
@given(round_inputs(tie_prone=True))
def test_core_breaks_ties_like_the_reference(round_input: RoundInput) -> None:
    core, ref = run_both(round_input)

    assert_same_result(core, ref)
    assert_feasible(round_input, core)


@_deterministic(500)
@given(round_inputs(parallel=True))
def test_core_keeps_parallel_items_of_a_request_consistent_like_the_reference(
    round_input: RoundInput,
) -> None:
    core, ref = run_both(round_input)

    assert_same_result(core, ref)
    assert_feasible(round_input, core)


@_deterministic(200)
@given(round_inputs(beam_widths=st.sampled_from([17, 40, 2**80])))
def test_core_matches_the_reference_with_beams_wider_than_the_candidates(
    round_input: RoundInput,
) -> None:
    core, ref = run_both(round_input)

    assert_same_result(core, ref)


@_deterministic(200)
@given(huge_space_round_inputs())
def test_core_matches_the_reference_when_configuration_ids_pass_32_bits(
    round_input: RoundInput,
) -> None:
    core, ref = run_both(round_input)

    assert_same_result(core, ref)


@_deterministic(300)
@given(
    viable=st.lists(st.integers(-(2**40), 2**40), max_size=40).map(
        lambda v: np.array(sorted(set(v)), dtype=np.int64)
    ),
    stride=st.integers(1, 300),
    radix=st.integers(1, 7),
    digit=st.integers(-1, 7),
)
def test_narrow_viable_set_matches_the_reference(
    viable: np.ndarray, stride: int, radix: int, digit: int
) -> None:
    core = _core.narrow_viable_set(viable, stride, radix, digit)

    expected = reference.narrow_viable_set(viable, stride, radix, digit)
    assert core.dtype == np.int64
    np.testing.assert_array_equal(core, expected)


def test_core_gives_the_same_answers_from_several_threads_at_once() -> None:
    # The core releases the GIL and keeps its scratch buffers per thread.
    rounds = [
        random_round(num_items, beam_width, num_models, seed)
        for seed, (num_items, beam_width, num_models) in enumerate(
            [(16, 1, 3), (64, 4, 3), (64, 8, 6), (256, 4, 3), (16, 8, 6)] * 8
        )
    ]
    expected = [run_round(r) for r in rounds]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run_round, rounds * 4))

    for result, want in zip(results, expected * 4, strict=True):
        assert_same_result(result, want)


@pytest.mark.parametrize("num_models", [1, 3, 6])
@pytest.mark.parametrize("seed", range(4))
def test_core_matches_the_reference_on_realistic_benchmark_rounds(
    num_models: int, seed: int
) -> None:
    round_input = random_round(48, 4, num_models, seed)

    core, ref = run_both(round_input)

    assert_same_result(core, ref)
    assert_feasible(round_input, core)


def test_bench_core_times_both_implementations_on_one_round() -> None:
    figures = bench_core(16, 2, 3, repeat=5, python_repeat=1)

    assert set(figures) == {"cxx_us_median", "python_us_median", "speedup"}
    assert figures["speedup"] == figures["python_us_median"] / figures["cxx_us_median"]


@pytest.mark.parametrize("seed", range(6))
def test_core_matches_the_reference_when_engines_serve_over_127_digits(
    seed: int,
) -> None:
    # 150 candidate models per agent and an engine for each: past the byte-sized slots.
    # The last request's second agent has no engine: its first item's counts decide F.
    rng = np.random.default_rng(seed)
    models = list(range(150))
    workflows = [[models, models], [models, [999]]]
    requests = [
        (0, np.flatnonzero(rng.random(150 * 150) < density).tolist())
        for density in (0.02, 0.005, 0.05)
    ]
    requests.append((1, np.flatnonzero(rng.random(150) < 0.5).tolist()))
    items = [(0, 0, 1), (0, 1, 1), (1, 1, 0), (2, 0, 0), (3, 0, 1), (3, 1, 0)]
    engines = [
        EngineSpec(
            m, int(rng.integers(-1, 3)), int(rng.integers(0, 4)), linear_curve(g)
        )
        for m, g in zip(models, rng.integers(0, 4, size=150).tolist(), strict=True)
    ]
    round_input = make_round(workflows, requests, items, engines, seed % 3 + 1)

    core, ref = run_both(round_input)

    assert_same_result(core, ref)
    assert_feasible(round_input, core)
