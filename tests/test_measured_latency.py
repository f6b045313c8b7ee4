"""Simulated engines on a measured throughput curve, and simulations that load one."""

from __future__ import annotations

import json

import pytest

from aragog.engines.measured import MeasuredLatency
from aragog.engines.simulated import SimulatedEngine
from aragog.errors import ProfileError
from aragog.runtime.monitor import curve_from_points
from aragog.sim.experiment import Experiment, ExperimentSpec

# 100 tokens/s per running call up to 4 calls, then flat at 400: an iteration takes
# 10 ms with up to 4 calls, and n / 400 s with n > 4.
CURVE = curve_from_points([1, 2, 4, 8], [100, 200, 400, 400])


def test_an_iteration_of_n_calls_takes_n_over_the_throughput_at_n():
    latency = MeasuredLatency(CURVE)

    assert latency.iteration_s(1, 100) == pytest.approx(0.01)
    assert latency.iteration_s(3, 300) == pytest.approx(0.01)
    assert latency.iteration_s(8, 800) == pytest.approx(0.02)
    # Past the last point throughput stays flat.
    assert latency.iteration_s(16, 1600) == pytest.approx(0.04)
    # Two new calls with 50-token prompts count as two calls, whatever the lengths.
    assert latency.iteration_s(6, 600, 100, 2 * 50**2) == pytest.approx(0.02)
    assert latency.iteration_s(0, 0, 500) == pytest.approx(0.01)
    assert latency.max_batch(1000.0) == 8
    assert latency.saturation_batch(1000.0, 100.0) == CURVE.saturation_batch == 4


def test_a_simulated_engine_on_a_measured_curve_runs_at_its_speed():
    # One call of 10 tokens: 10 iterations of 10 ms. Then 8 calls of 5 tokens at
    # once: 5 iterations of 8 / 400 s each.
    engine = SimulatedEngine("m#0", MeasuredLatency(CURVE), max_batch=8)

    engine.submit(1.0, 0, 500, 10)
    [(_, first_s)] = engine.advance(2.0)
    for call in range(1, 9):
        engine.submit(3.0, call, 40, 5)
    finished = engine.advance(4.0)

    assert first_s == pytest.approx(1.1)
    assert sorted(c for c, _ in finished) == list(range(1, 9))
    assert [t for _, t in finished] == pytest.approx([3.1] * 8)


def test_a_curve_without_throughput_at_one_call_is_refused():
    with pytest.raises(ValueError, match="positive throughput from one running call"):
        MeasuredLatency(curve_from_points([1, 2], [0, 10]))


def _profile(path, curves) -> str:
    path.write_text(json.dumps({"version": 1, "curves": curves}))
    return str(path)


def test_a_simulation_runs_the_engines_a_profile_covers_at_the_measured_speed(
    tmp_path,
):
    # The 7B engines measured at a tenth of what the latency model predicts.
    base = Experiment(ExperimentSpec(num_requests=20))
    _, _, lengths = base.requests(1.0)
    views = {v.name: v for v in base.node(lengths).views}
    seven = views["qwen2.5-7b#0"]
    slow = [float(t) / 10 for t in seven.curve_throughput[1:]]
    loads = [float(x) for x in seven.curve_load[1:]]
    path = _profile(
        tmp_path / "slow.json",
        [{"model": "qwen2.5-7b", "loads": loads, "tokens_per_s": slow}],
    )

    measured = Experiment(ExperimentSpec(num_requests=20, throughput_profile=path))
    node = measured.node(lengths)

    for view, engine in zip(node.views, node.engines, strict=True):
        if view.model == "qwen2.5-7b":
            assert isinstance(engine.latency, MeasuredLatency)
            assert list(view.curve_throughput[1:]) == pytest.approx(slow)
        else:
            assert list(view.curve_throughput) == list(
                views[view.name].curve_throughput
            )
    assert measured.capacity_rps() < base.capacity_rps()


def test_a_profile_covering_no_engine_of_the_family_is_refused(tmp_path):
    path = _profile(
        tmp_path / "llama.json",
        [{"model": "llama3-8b", "loads": [1, 2], "tokens_per_s": [10, 20]}],
    )

    with pytest.raises(ProfileError) as caught:
        Experiment(ExperimentSpec(throughput_profile=path))

    assert str(caught.value) == (
        f"--throughput-profile {path}: no curve for any engine of qwen2.5 (models "
        "qwen2.5-7b, qwen2.5-14b, qwen2.5-32b)"
    )
