"""Trace loading, validation and the load-changing transforms."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from aragog.errors import TraceError
from aragog.sim.traces import (
    Trace,
    load_azure,
    load_burstgpt,
    load_mooncake,
    load_trace,
    poisson_arrivals,
    rescale_to_rate,
    summarize,
    take,
)

DATA = Path(__file__).parent / "data"
BROKEN = DATA / "broken"


def _trace(arrival_s, context_tokens=None, generated_tokens=None) -> Trace:
    """A trace of the given arrivals; tokens default to 10, 20, ... and 1, 2, ..."""
    n = len(arrival_s)
    if context_tokens is None:
        context_tokens = [10 * (i + 1) for i in range(n)]
    if generated_tokens is None:
        generated_tokens = [i + 1 for i in range(n)]
    arrival_s = np.asarray(arrival_s, dtype=float)
    return Trace("hand", arrival_s, context_tokens, generated_tokens)


def _cv(trace: Trace) -> float:
    return summarize(trace)["interarrival_cv"]


# --- Loaders ----------------------------------------------------------------------


def test_azure_loader_counts_seconds_from_the_first_request_across_midnight():
    trace = load_azure(DATA / "azure_small.csv")

    # 18:15:46.68059 is 0; 18:16:00 is 13.31941 s later; 00:00:01.68059 the next
    # day is 5 h 44 min 15 s = 20,655 s later.
    assert trace.name == "azure_small"
    np.testing.assert_allclose(
        trace.arrival_s, [0.0, 0.5, 0.5, 2.75, 13.31941, 20655.0], rtol=0, atol=1e-9
    )
    assert trace.context_tokens.tolist() == [374, 396, 879, 91, 1030, 197]
    assert trace.generated_tokens.tolist() == [44, 109, 55, 16, 434, 183]
    assert trace.arrival_s.dtype == np.float64
    assert trace.context_tokens.dtype == np.int64
    assert trace.generated_tokens.dtype == np.int64


def test_burstgpt_loader_sorts_rows_and_keeps_failed_requests():
    trace = load_burstgpt(DATA / "burstgpt_small.csv")

    # Timestamps 5, 45, 47, 46, 118, 118.5: the row at 46 moves before the one at 47,
    # and the two failed requests (0 response tokens) stay.
    assert trace.name == "burstgpt_small"
    assert trace.arrival_s.tolist() == [0.0, 40.0, 41.0, 42.0, 113.0, 113.5]
    assert trace.context_tokens.tolist() == [472, 1087, 1360, 417, 300, 25]
    assert trace.generated_tokens.tolist() == [18, 0, 523, 334, 120, 0]


def test_mooncake_loader_converts_milliseconds_to_seconds():
    trace = load_mooncake(DATA / "mooncake_small.jsonl")

    assert trace.name == "mooncake_small"
    assert trace.arrival_s.tolist() == pytest.approx([0.0, 0.0, 3.052, 5.5, 6.25])
    assert trace.context_tokens.tolist() == [6755, 7319, 7234, 2287, 9013]
    assert trace.generated_tokens.tolist() == [500, 490, 794, 316, 3]


@pytest.mark.parametrize(
    ("file_name", "loader"),
    [
        ("azure_small.csv", load_azure),
        ("burstgpt_small.csv", load_burstgpt),
        ("mooncake_small.jsonl", load_mooncake),
    ],
)
def test_load_trace_detects_the_format_of_a_file(file_name, loader):
    path = DATA / file_name

    detected = load_trace(str(path))

    expected = loader(path)
    assert detected.name == expected.name
    assert detected.arrival_s.tolist() == expected.arrival_s.tolist()
    assert detected.context_tokens.tolist() == expected.context_tokens.tolist()
    assert detected.generated_tokens.tolist() == expected.generated_tokens.tolist()


def test_load_trace_reads_a_json_lines_file_without_the_jsonl_extension(tmp_path):
    path = tmp_path / "mooncake.txt"
    path.write_text((DATA / "mooncake_small.jsonl").read_text())

    trace = load_trace(path)

    assert trace.arrival_s.tolist() == pytest.approx([0.0, 0.0, 3.052, 5.5, 6.25])


def test_the_shipped_azure_conversation_trace_is_one_hour_of_19366_requests():
    trace = load_trace("azure-conv")

    assert trace.name == "azure-conv"
    assert trace.num_requests == 19_366
    assert trace.arrival_s[0] == 0.0
    assert 3_400.0 < trace.duration_s < 3_600.0
    # The second row is at 18:15:50.9951690, 4.314579 s after the first.
    assert trace.arrival_s[1] == pytest.approx(4.314579, abs=1e-9)
    assert trace.context_tokens[:3].tolist() == [374, 396, 879]
    assert trace.generated_tokens[:3].tolist() == [44, 109, 55]


# --- Loader errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_name", "row", "field"),
    [
        ("unknown_format.csv", 1, "header"),
        ("azure_missing_column.csv", 1, "GeneratedTokens"),
        ("azure_non_numeric.csv", 3, "ContextTokens"),
        ("azure_negative_count.csv", 4, "GeneratedTokens"),
        ("azure_bad_timestamp.csv", 2, "TIMESTAMP"),
        ("azure_short_row.csv", 3, "GeneratedTokens"),
        ("burstgpt_non_numeric_timestamp.csv", 3, "Timestamp"),
        ("burstgpt_negative_count.csv", 4, "Response tokens"),
        ("mooncake_missing_field.jsonl", 2, "output_length"),
        ("mooncake_negative_count.jsonl", 3, "input_length"),
        ("mooncake_non_numeric.jsonl", 1, "timestamp"),
        ("mooncake_bad_json.jsonl", 2, None),
    ],
)
def test_a_broken_file_names_its_file_row_and_field_in_one_line(file_name, row, field):
    path = BROKEN / file_name

    with pytest.raises(TraceError) as caught:
        load_trace(path)

    message = str(caught.value)
    assert "\n" not in message
    prefix = f"{path}: row {row}: " + (f"{field}: " if field else "")
    assert message.startswith(prefix), message


def test_a_file_with_only_a_header_has_no_request():
    path = BROKEN / "azure_header_only.csv"

    with pytest.raises(TraceError, match=re.escape(f"{path}: no request")):
        load_azure(path)


def test_a_specific_loader_names_the_column_a_file_of_another_format_lacks():
    path = DATA / "burstgpt_small.csv"

    with pytest.raises(TraceError, match=re.escape(f"{path}: row 1: TIMESTAMP: ")):
        load_azure(path)


def test_an_unknown_name_that_is_no_file_lists_the_shipped_traces():
    with pytest.raises(TraceError, match="not a shipped trace .*azure-conv"):
        load_trace("azure-cov")


# --- The Trace type ---------------------------------------------------------------


def test_a_trace_reports_its_count_duration_and_rate_from_its_gaps():
    trace = _trace([0.0, 1.0, 3.0])

    assert trace.num_requests == 3
    assert trace.duration_s == 3.0
    # Two gaps over three seconds.
    assert trace.mean_rate_rps == pytest.approx(2.0 / 3.0, rel=1e-15)


def test_a_trace_owns_read_only_copies_of_its_arrays():
    arrival_s = np.array([0.0, 1.0])
    trace = _trace(arrival_s)

    arrival_s[1] = 5.0

    assert trace.arrival_s.tolist() == [0.0, 1.0]
    with pytest.raises(ValueError):
        trace.arrival_s[1] = 2.0


@pytest.mark.parametrize(
    ("arrival_s", "context_tokens", "match"),
    [
        ([1.0, 2.0], [1, 1], "first arrival at 0.0"),
        ([0.0, 2.0, 1.0], [1, 1, 1], "non-decreasing"),
        ([0.0, 1.0], [1, -1], "context_tokens: expected counts >= 0"),
        ([0.0, 1.0], [1.5, 1], "context_tokens: expected whole numbers"),
        ([0.0, 1.0], [1], "1-D arrays of one length"),
    ],
)
def test_a_trace_rejects_arrays_that_break_its_invariants(
    arrival_s, context_tokens, match
):
    with pytest.raises(TraceError, match=match):
        Trace("bad", np.array(arrival_s), context_tokens, [1] * len(arrival_s))


def test_head_keeps_the_first_requests_and_no_more_than_there_are():
    trace = _trace([0.0, 1.0, 3.0])

    assert trace.head(2).arrival_s.tolist() == [0.0, 1.0]
    assert trace.head(2).generated_tokens.tolist() == [1, 2]
    assert trace.head(10).num_requests == 3
    assert trace.head(0).num_requests == 0


# --- Rescaling --------------------------------------------------------------------


@pytest.mark.parametrize("rate_rps", [0.5, 10.0, 123.4])
def test_rescaling_hits_the_rate_and_keeps_the_burstiness(rate_rps):
    trace = load_trace("azure-conv")

    rescaled = rescale_to_rate(trace, rate_rps)

    assert rescaled.mean_rate_rps == pytest.approx(rate_rps, rel=1e-12)
    assert _cv(rescaled) == pytest.approx(_cv(trace), rel=1e-12)
    assert rescaled.context_tokens.tolist() == trace.context_tokens.tolist()


def test_rescaling_multiplies_every_arrival_by_one_factor():
    trace = _trace([0.0, 1.0, 3.0])

    # Rate 2/3 -> 2: every time divided by 3.
    rescaled = rescale_to_rate(trace, 2.0)

    assert rescaled.arrival_s.tolist() == pytest.approx([0.0, 1.0 / 3.0, 1.0])


@pytest.mark.parametrize("rate_rps", [0.0, -1.0, math.inf, math.nan])
def test_rescaling_rejects_a_rate_that_is_not_positive_and_finite(rate_rps):
    with pytest.raises(TraceError, match="rate_rps: expected a positive finite"):
        rescale_to_rate(_trace([0.0, 1.0]), rate_rps)


def test_rescaling_a_trace_without_gaps_is_an_error():
    with pytest.raises(TraceError, match="no rate to scale"):
        rescale_to_rate(_trace([0.0, 0.0]), 1.0)


# --- Taking and wrapping ----------------------------------------------------------


def test_take_wraps_around_one_mean_gap_after_the_last_request():
    trace = _trace([0.0, 1.0, 3.0])

    taken = take(trace, num_requests=7)

    # Mean gap 1.5 s, so each lap lasts 4.5 s: 0 1 3 | 4.5 5.5 7.5 | 9.
    assert taken.arrival_s.tolist() == [0.0, 1.0, 3.0, 4.5, 5.5, 7.5, 9.0]
    assert taken.context_tokens.tolist() == [10, 20, 30, 10, 20, 30, 10]
    assert taken.generated_tokens.tolist() == [1, 2, 3, 1, 2, 3, 1]


@pytest.mark.parametrize(
    ("duration_s", "expected_arrival_s"),
    [
        (0.0, []),
        (1.0, [0.0]),
        (2.0, [0.0, 1.0]),
        (5.5, [0.0, 1.0, 3.0, 4.5]),
        (5.75, [0.0, 1.0, 3.0, 4.5, 5.5]),
        (9.25, [0.0, 1.0, 3.0, 4.5, 5.5, 7.5, 9.0]),
    ],
)
def test_take_by_duration_keeps_the_requests_arriving_before_it(
    duration_s, expected_arrival_s
):
    trace = _trace([0.0, 1.0, 3.0])

    taken = take(trace, duration_s=duration_s)

    assert taken.arrival_s.tolist() == expected_arrival_s


def test_take_with_both_bounds_stops_at_the_first_reached():
    trace = _trace([0.0, 1.0, 3.0])

    assert take(trace, num_requests=2, duration_s=100.0).num_requests == 2
    assert take(trace, num_requests=100, duration_s=5.0).num_requests == 4


def test_take_over_whole_laps_keeps_the_mean_rate():
    trace = _trace([0.0, 1.0, 3.0])

    taken = take(trace, num_requests=9)

    # Last arrival 2 laps * 4.5 s + 3 s = 12 s; 8 gaps over 12 s.
    assert taken.duration_s == 12.0
    assert taken.mean_rate_rps == pytest.approx(trace.mean_rate_rps, rel=1e-15)


def test_take_of_a_long_duration_stops_right_before_it():
    trace = load_trace("azure-conv")

    taken = take(trace, duration_s=10_000.0)
    one_more = take(trace, num_requests=taken.num_requests + 1)

    assert taken.num_requests > 2 * trace.num_requests
    assert taken.arrival_s[-1] < 10_000.0 <= one_more.arrival_s[-1]
    assert np.all(np.diff(taken.arrival_s) >= 0.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "give num_requests, duration_s or both"),
        ({"num_requests": -1}, "num_requests: expected >= 0"),
        ({"duration_s": -1.0}, "duration_s: expected a finite time >= 0"),
        ({"duration_s": math.inf}, "duration_s: expected a finite time >= 0"),
    ],
)
def test_take_rejects_missing_or_negative_bounds(kwargs, match):
    with pytest.raises(TraceError, match=match):
        take(_trace([0.0, 1.0]), **kwargs)


def test_take_cannot_wrap_a_single_request():
    trace = _trace([0.0])

    assert take(trace, num_requests=1).num_requests == 1
    with pytest.raises(TraceError, match="no inter-arrival time to repeat"):
        take(trace, num_requests=2)
    with pytest.raises(TraceError, match="cannot repeat 1 request"):
        take(trace, duration_s=10.0)


# --- Poisson arrivals -------------------------------------------------------------


def test_poisson_arrivals_have_the_asked_rate_and_a_cv_of_one():
    trace = take(_trace([0.0, 1.0, 3.0]), num_requests=200_000)

    poisson = poisson_arrivals(trace, 8.0, seed=7)

    # The rate estimate's relative error is about 1/sqrt(n) = 0.2%.
    assert poisson.mean_rate_rps == pytest.approx(8.0, rel=0.01)
    assert _cv(poisson) == pytest.approx(1.0, rel=0.02)
    assert poisson.arrival_s[0] == 0.0
    assert poisson.context_tokens.tolist() == trace.context_tokens.tolist()
    assert poisson.generated_tokens.tolist() == trace.generated_tokens.tolist()


def test_poisson_arrivals_are_reproducible_from_the_seed():
    trace = _trace([0.0, 1.0, 3.0, 4.0])

    first = poisson_arrivals(trace, 2.0, seed=3)
    again = poisson_arrivals(trace, 2.0, seed=3)
    other = poisson_arrivals(trace, 2.0, seed=4)

    assert first.arrival_s.tolist() == again.arrival_s.tolist()
    assert first.arrival_s.tolist() != other.arrival_s.tolist()


# --- Summaries --------------------------------------------------------------------


def test_summarize_reports_rate_burstiness_and_token_lengths():
    trace = _trace([0.0, 1.0, 3.0], [10, 20, 60], [1, 2, 3])

    summary = summarize(trace)

    # Gaps 1 and 2: mean 1.5, standard deviation 0.5.
    assert summary == {
        "name": "hand",
        "num_requests": 3,
        "duration_s": 3.0,
        "mean_rate_rps": pytest.approx(2.0 / 3.0),
        "interarrival_cv": pytest.approx(1.0 / 3.0),
        "mean_context_tokens": 30.0,
        "p50_context_tokens": 20.0,
        "mean_generated_tokens": 2.0,
        "p50_generated_tokens": 2.0,
    }


def test_summarize_marks_undefined_statistics_of_an_empty_trace_as_nan():
    summary = summarize(_trace([]))

    assert summary["num_requests"] == 0
    assert math.isnan(summary["interarrival_cv"])
    assert math.isnan(summary["mean_context_tokens"])
