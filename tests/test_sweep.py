"""Maximum throughput and the keep-up rule of a sweep."""

from __future__ import annotations

import numpy as np
import pytest

from aragog.sim.experiment import completed_throughput
from aragog.sim.sweep import (
    _bisect_rate,
    highest_common_rate,
    keeps_up,
    max_throughput,
)


def _record(offered: float, throughput: float, p95: float) -> dict:
    return {
        "offered_rate_rps": offered,
        "throughput_rps": throughput,
        "latency_s": {"p95": p95},
    }


def test_a_run_keeps_up_within_5_percent_of_the_rate_and_5x_the_low_load_p95():
    assert keeps_up(_record(10.0, 9.5, 50.0), base_p95=10.0)
    assert not keeps_up(_record(10.0, 9.49, 10.0), base_p95=10.0)
    assert not keeps_up(_record(10.0, 10.0, 50.1), base_p95=10.0)


def test_maximum_throughput_is_the_best_throughput_among_runs_that_keep_up():
    records = [
        _record(1.0, 1.0, 10.0),
        _record(2.0, 1.98, 12.0),
        _record(3.0, 2.5, 20.0),  # falls behind
        _record(4.0, 3.9, 80.0),  # latency blew up
    ]

    assert max_throughput(records) == 1.98


def test_the_common_rate_is_the_highest_every_policy_keeps_up_with():
    grid = {
        "a": [_record(1, 1, 5), _record(2, 2, 6), _record(3, 3, 7)],
        "b": [_record(1, 1, 5), _record(2, 2, 6), _record(3, 2, 9)],
    }

    assert highest_common_rate(grid, [1, 2, 3]) == 2


def test_throughput_counts_completions_over_the_middle_of_their_span():
    # 101 completions, one every 0.5 s, then a straggler 100 s later.
    finish = np.append(np.arange(101) * 0.5, 150.0)

    # Percentile positions 5 and 96 of 102 sorted times: 91 gaps of 0.5 s.
    assert completed_throughput(finish) == pytest.approx(2.0)


def test_throughput_ignores_requests_that_never_completed():
    finish = np.array([0.0, 1.0, np.nan, 2.0, np.nan])

    assert completed_throughput(finish) == pytest.approx(1.0)


def test_refinement_bisects_between_the_last_rate_kept_and_the_first_lost():
    records = [
        _record(1.0, 1.0, 10.0),
        _record(4.0, 3.9, 12.0),
        _record(16.0, 6.0, 90.0),
    ]

    assert _bisect_rate(records) == 8.0  # the geometric middle of 4 and 16


def test_no_refinement_when_every_rate_or_no_rate_keeps_up():
    assert _bisect_rate([_record(1.0, 1.0, 10.0), _record(2.0, 2.0, 11.0)]) is None
    assert _bisect_rate([_record(1.0, 0.5, 10.0), _record(2.0, 0.6, 11.0)]) is None
