"""The engine monitor: occupancy, moving averages, and the corrected throughput curve.

Pure logic: a fake engine reports load, a fake clock gives time, and worked values
check the correction rule of :mod:`aragog.runtime.monitor` step by step.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from aragog.engines.base import EngineLoad
from aragog.engines.latency import LatencyModel
from aragog.errors import ConfigError, ProfileError
from aragog.models import load_family
from aragog.runtime.monitor import (
    EngineMonitor,
    MonitorSettings,
    ThroughputCurve,
    curve_from_points,
    load_throughput_profile,
    model_curve,
    throughput_profile_dict,
)

# Base curve of the worked examples: saturates at load 8 (500 >= 0.95 * 500).
LOADS = [1, 2, 4, 8]
TOKENS_PER_S = [100, 200, 400, 500]


@dataclass
class FakeEngine:
    name: str = "m0#0"
    model: str = "m0"
    reported: EngineLoad = field(default_factory=EngineLoad)

    def load(self) -> EngineLoad:
        return self.reported


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def make_monitor(
    clock: FakeClock | None = None, engine: FakeEngine | None = None, **settings: object
) -> EngineMonitor:
    """A monitor over the worked-example curve, with a 1 s window by default."""
    family = load_family("qwen2.5")
    return EngineMonitor(
        engine or FakeEngine(),
        family.models[0],
        curve=curve_from_points(LOADS, TOKENS_PER_S),
        settings=MonitorSettings(**settings),  # type: ignore[arg-type]
        clock=clock or FakeClock(),
    )


# --- curves -----------------------------------------------------------------------


def test_curve_from_points_adds_the_origin_and_saturates_by_the_95_percent_rule() -> (
    None
):
    curve = curve_from_points(LOADS, TOKENS_PER_S)

    assert curve.loads.tolist() == [0, 1, 2, 4, 8]
    assert curve.tokens_per_s.tolist() == [0, 100, 200, 400, 500]
    assert curve.saturation_batch == 8


def test_saturation_is_the_first_load_within_5_percent_of_the_peak() -> None:
    curve = curve_from_points(LOADS, [100, 200, 480, 500])

    assert curve.saturation_batch == 4


@pytest.mark.parametrize(
    ("loads", "tokens_per_s"),
    [([1, 1, 2], [1, 2, 3]), ([2, 1], [1, 2]), ([1, 2], [1, -2]), ([1, 2], [1])],
)
def test_curve_from_points_rejects_bad_points(loads: list, tokens_per_s: list) -> None:
    with pytest.raises(ValueError, match="expected"):
        curve_from_points(loads, tokens_per_s)


def test_a_capped_curve_ends_at_the_cap_and_saturates_there() -> None:
    curve = curve_from_points(LOADS, TOKENS_PER_S).capped(3)

    assert curve.loads.tolist() == [0, 1, 2, 3]
    assert curve.tokens_per_s.tolist() == [0, 100, 200, 300]
    assert curve.saturation_batch == 3


def test_curve_is_flat_past_its_last_point() -> None:
    curve = curve_from_points(LOADS, TOKENS_PER_S)

    assert curve.at(6) == 450
    assert curve.at(100) == 500


# --- occupancy and averages -------------------------------------------------------


def test_occupancy_counts_calls_in_flight_and_free_slots_the_rest() -> None:
    monitor = make_monitor()

    for _ in range(3):
        monitor.on_dispatch()
    monitor.on_finish(1.0, 10, 20)
    monitor.on_abort()

    assert monitor.occupancy() == 1
    assert monitor.free_slots() == 7
    assert (monitor.num_finished, monitor.num_aborted) == (1, 1)


def test_free_slots_never_go_below_zero() -> None:
    monitor = make_monitor()

    for _ in range(10):
        monitor.on_dispatch()

    assert monitor.free_slots() == 0


def test_foreign_load_counts_only_when_asked() -> None:
    engine = FakeEngine(reported=EngineLoad(num_running=5, num_waiting=2))
    own = make_monitor(engine=engine)
    shared = make_monitor(engine=engine, count_foreign_load=True)

    for monitor in (own, shared):
        monitor.on_dispatch()
        monitor.on_dispatch()

    assert own.occupancy() == 2
    assert shared.occupancy() == 7


def test_an_engine_that_reports_nothing_counts_only_its_calls() -> None:
    monitor = make_monitor(count_foreign_load=True)

    monitor.on_dispatch()

    assert monitor.occupancy() == 1


def test_latency_and_lengths_are_exponential_moving_averages() -> None:
    monitor = make_monitor(latency_alpha=0.5)

    monitor.on_dispatch()
    monitor.on_dispatch()
    monitor.on_finish(2.0, 100, 10)
    monitor.on_finish(4.0, 300, 30)

    assert monitor.latency_s == 3.0
    assert monitor.mean_prompt_tokens == 200
    assert monitor.mean_output_tokens == 20


# --- the online correction ----------------------------------------------------------


def test_a_slow_busy_window_scales_the_curve_down_by_the_smoothed_ratio() -> None:
    clock = FakeClock()
    monitor = make_monitor(clock, window_s=1.0, tau_s=1.0)
    first_view = monitor.view()

    # Two calls in flight for 2 s, one ends with 300 tokens: 150 tokens/s at load 2,
    # where the curve predicts 200: ratio 0.75, weighted by 1 - e^-2.
    monitor.on_dispatch()
    monitor.on_dispatch()
    clock.now_s = 2.0
    monitor.on_finish(2.0, 50, 300)

    weight = 1 - math.exp(-2.0)
    expected = 1 + weight * (0.75 - 1)
    assert monitor.tokens_per_s == pytest.approx(150.0)
    assert monitor.correction == pytest.approx(expected)
    view = monitor.view()
    assert view is not first_view
    assert view.curve_throughput == pytest.approx(
        expected * np.array([0, 100, 200, 400, 500])
    )
    assert view.curve_load.tolist() == [0, 1, 2, 4, 8]
    assert view.saturation_batch == 8


def test_an_idle_window_measures_throughput_but_leaves_the_curve() -> None:
    clock = FakeClock()
    monitor = make_monitor(clock, window_s=1.0, tau_s=1.0)
    first_view = monitor.view()

    # One call for the last second of ten: mean load 0.1, below 0.5.
    clock.now_s = 9.0
    monitor.on_dispatch()
    clock.now_s = 10.0
    monitor.on_finish(1.0, 10, 50)

    assert monitor.tokens_per_s == pytest.approx(5.0)
    assert monitor.correction == 1.0
    assert monitor.view() is first_view


def test_a_window_with_an_aborted_call_leaves_the_curve() -> None:
    clock = FakeClock()
    monitor = make_monitor(clock, window_s=1.0, tau_s=1.0)

    monitor.on_dispatch()
    monitor.on_dispatch()
    clock.now_s = 1.0
    monitor.on_abort()
    monitor.on_finish(1.0, 10, 50)

    assert monitor.tokens_per_s == pytest.approx(50.0)
    assert monitor.correction == 1.0


def test_the_correction_is_bounded() -> None:
    clock = FakeClock()
    monitor = make_monitor(clock, window_s=1.0, tau_s=1e-3, max_correction=5.0)

    monitor.on_dispatch()
    clock.now_s = 1.0
    monitor.on_finish(1.0, 10, 100_000)

    assert monitor.correction == 5.0


def test_a_call_ending_inside_the_window_waits_for_the_window_to_close() -> None:
    clock = FakeClock()
    monitor = make_monitor(clock, window_s=5.0, tau_s=1.0)

    monitor.on_dispatch()
    monitor.on_dispatch()
    clock.now_s = 1.0
    monitor.on_finish(1.0, 10, 50)
    assert monitor.tokens_per_s is None

    # At 5 s the window closes: load 2 for 1 s and 1 for 4 s, 200 tokens in all.
    clock.now_s = 5.0
    monitor.on_finish(5.0, 10, 150)

    assert monitor.tokens_per_s == pytest.approx(200 / 5.0)
    mean_load = (2 * 1.0 + 1 * 4.0) / 5.0
    ratio = (200 / 5.0) / np.interp(mean_load, [0, 1, 2], [0, 100, 200])
    assert monitor.correction == pytest.approx(1 + (1 - math.exp(-5.0)) * (ratio - 1))


def test_a_small_change_of_the_correction_keeps_the_same_view() -> None:
    clock = FakeClock()
    monitor = make_monitor(clock, window_s=1.0, tau_s=1.0, republish_fraction=0.05)
    first_view = monitor.view()

    # 98 tokens/s at load 1, predicted 100: the factor moves by about 1.3%.
    monitor.on_dispatch()
    clock.now_s = 1.0
    monitor.on_finish(1.0, 10, 98)

    assert monitor.correction < 1.0
    assert monitor.view() is first_view


# --- the latency-model base ---------------------------------------------------------


def test_without_a_profile_the_curve_comes_from_the_latency_model() -> None:
    family = load_family("qwen2.5")
    model = family.models[0]
    expected = model_curve(LatencyModel(model, family.gpu), 512, 256)

    monitor = EngineMonitor(FakeEngine(), model, family.gpu)

    loads, tokens_per_s = monitor.curve()
    assert loads.tolist() == expected.loads.tolist()
    assert tokens_per_s.tolist() == expected.tokens_per_s.tolist()
    assert monitor.saturation_batch == expected.saturation_batch


def test_max_num_seqs_caps_the_saturation_batch_and_the_curve() -> None:
    family = load_family("qwen2.5")

    monitor = EngineMonitor(FakeEngine(), family.models[0], family.gpu, max_num_seqs=16)

    assert monitor.saturation_batch == 16
    assert monitor.view().curve_load[-1] == 16


def test_measured_stage_lengths_far_from_the_assumed_ones_rebase_the_curve() -> None:
    family = load_family("qwen2.5")
    model = family.models[0]
    clock = FakeClock()
    monitor = EngineMonitor(
        FakeEngine(),
        model,
        family.gpu,
        settings=MonitorSettings(latency_alpha=1.0, window_s=1.0),
        clock=clock,
    )

    monitor.on_dispatch()
    clock.now_s = 1.0
    monitor.on_finish(1.0, 100, 50)

    expected = model_curve(LatencyModel(model, family.gpu), 100, 50)
    loads, tokens_per_s = monitor.curve()
    assert loads.tolist() == expected.loads.tolist()
    assert tokens_per_s == pytest.approx(expected.tokens_per_s * monitor.correction)


def test_a_monitor_needs_a_gpu_or_a_curve() -> None:
    family = load_family("qwen2.5")

    with pytest.raises(ConfigError, match="'m0#0': a monitor needs a GPU"):
        EngineMonitor(FakeEngine(), family.models[0])


def test_settings_reject_bounds_that_exclude_one() -> None:
    with pytest.raises(ConfigError, match="min_correction <= 1 <= max_correction"):
        MonitorSettings(min_correction=1.5)


# --- profile files ------------------------------------------------------------------


def write_profile(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_a_profile_gives_an_engine_its_own_curve_before_its_models(
    tmp_path: Path,
) -> None:
    doc = throughput_profile_dict(
        [
            {"model": "m0", "loads": LOADS, "tokens_per_s": TOKENS_PER_S},
            {
                "model": "m0",
                "engine": "m0#1",
                "loads": [1, 2],
                "tokens_per_s": [50, 60],
                "saturation_batch": 2,
            },
        ],
        hardware="1x H200",
    )
    profile = load_throughput_profile(write_profile(tmp_path / "p.json", doc))

    own = profile.curve_for("m0#1", "m0")
    shared = profile.curve_for("m0#0", "m0")

    assert own is not None and own.tokens_per_s.tolist() == [0, 50, 60]
    assert own.saturation_batch == 2
    assert shared is not None and shared.saturation_batch == 8
    assert profile.curve_for("m1#0", "m1") is None


def test_a_profile_reads_yaml_too(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\ncurves:\n  - {model: m0, loads: [1, 4], tokens_per_s: [10, 30]}\n",
        encoding="utf-8",
    )

    curve = load_throughput_profile(path).curve_for("x", "m0")

    assert isinstance(curve, ThroughputCurve)
    assert curve.loads.tolist() == [0, 1, 4]


def profile_doc(version: int = 1, **entry: object) -> dict:
    """A profile document of one entry: model m, one point, ``entry`` on top."""
    return {
        "version": version,
        "curves": [{"model": "m", "loads": [1], "tokens_per_s": [1], **entry}],
    }


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (profile_doc(version=2), "version: expected 1, found 2"),
        (
            profile_doc(loads=[1, 2]),
            "curves.0: value error, expected loads and tokens_per_s of one equal "
            "length",
        ),
        (profile_doc(speed=3), "curves.0.speed: extra inputs are not permitted"),
        ({"version": 1, "curves": []}, "curves: list should have at least 1 item"),
    ],
)
def test_a_malformed_profile_names_the_file_and_the_field(
    tmp_path: Path, doc: object, message: str
) -> None:
    path = write_profile(tmp_path / "bad.json", doc)

    with pytest.raises(ProfileError, match="bad.json: " + message.replace(".", r"\.")):
        load_throughput_profile(path)


def test_a_missing_profile_file_is_a_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="absent.json: cannot read"):
        load_throughput_profile(tmp_path / "absent.json")
