"""The simulated engine: continuous batching, admission, and event-driven time."""

from __future__ import annotations

import random

import pytest

from aragog.engines.latency import LatencyModel
from aragog.engines.simulated import SimulatedEngine
from aragog.models import load_family


def qwen_7b_latency() -> LatencyModel:
    family = load_family("qwen2.5")
    return LatencyModel(family.model("qwen2.5-7b"), family.gpu)


LATENCY = qwen_7b_latency()
it = LATENCY.iteration_s


def engine(max_batch: int = 256) -> SimulatedEngine:
    return SimulatedEngine("qwen2.5-7b#0", LATENCY, max_batch)


def test_an_idle_engine_has_no_next_event():
    e = engine()

    assert e.next_event_s() is None
    assert e.advance(10.0) == []


def test_a_single_call_takes_one_prefill_iteration_and_then_one_per_token():
    # 500 prompt tokens, 10 output tokens: the prefill yields token 1, then 9 decode
    # iterations at a context of 501 (the context at the segment's second iteration).
    e = engine()
    expected_s = 2.0 + it(0, 0, 500) + 9 * it(1, 501)

    e.submit(2.0, 7, 500, 10)

    assert e.num_running == 1 and e.num_waiting == 0
    assert e.next_event_s() == pytest.approx(expected_s, rel=1e-12)
    assert e.advance(expected_s - 1e-6) == []
    [(call_id, finish_s)] = e.advance(expected_s)
    assert call_id == 7 and finish_s == pytest.approx(expected_s, rel=1e-12)
    assert e.next_event_s() is None and e.num_running == 0


def test_a_one_token_call_finishes_with_its_prefill():
    e = engine()

    e.submit(0.0, 1, 300, 1)

    assert e.advance(1.0) == [(1, pytest.approx(it(0, 0, 300), rel=1e-12))]


def test_two_calls_submitted_together_share_their_iterations():
    # A: 100 prompt, 5 output; B: 200 prompt, 8 output, both at t = 0. One prefill
    # iteration for both prompts, 4 shared decode iterations (context 100+1 + 200+1),
    # then B alone for 3 more at its context after 5 tokens (205).
    e = engine()
    first_s = it(0, 0, 300, 100**2 + 200**2)
    a_finish_s = first_s + 4 * it(2, 302)
    b_finish_s = a_finish_s + 3 * it(1, 205)

    e.submit(0.0, 1, 100, 5)
    e.submit(0.0, 2, 200, 8)
    done = e.advance(10.0)

    assert [call_id for call_id, _ in done] == [1, 2]
    assert done[0][1] == pytest.approx(a_finish_s, rel=1e-12)
    assert done[1][1] == pytest.approx(b_finish_s, rel=1e-12)


def test_a_call_beyond_the_maximum_batch_waits_for_a_slot():
    # max_batch 1: B waits while A (100 prompt, 3 output) runs, then is prefilled at
    # A's finish and decodes 1 more token.
    e = engine(max_batch=1)
    a_finish_s = it(0, 0, 100) + 2 * it(1, 101)
    b_finish_s = a_finish_s + it(0, 0, 100) + it(1, 101)

    e.submit(0.0, 1, 100, 3)
    e.submit(0.0, 2, 100, 2)

    assert e.num_running == 1 and e.num_waiting == 1
    assert e.advance(a_finish_s) == [(1, pytest.approx(a_finish_s, rel=1e-12))]
    assert e.num_running == 1 and e.num_waiting == 0
    assert e.advance(10.0) == [(2, pytest.approx(b_finish_s, rel=1e-12))]


def test_a_call_arriving_mid_iteration_joins_at_the_next_boundary():
    # A (100 prompt, 100 output) starts at 0; B (100 prompt, 5 output) arrives in the
    # middle of A's second iteration, so joins at its end (boundary 2). B's prefill
    # iteration runs beside A's decode at context 102; then both decode.
    e = engine()
    a_first_s, a_iter_s = it(0, 0, 100), it(1, 101)
    b_arrival_s = a_first_s + 0.5 * a_iter_s
    b_start_s = a_first_s + a_iter_s
    b_finish_s = b_start_s + it(1, 102, 100) + 4 * it(2, 103 + 101)

    e.submit(0.0, 1, 100, 100)
    e.submit(b_arrival_s, 2, 100, 5)

    assert e.next_event_s() == pytest.approx(b_finish_s, rel=1e-12)
    latency_s = e.advance(b_finish_s)[0][1] - b_arrival_s
    assert latency_s == pytest.approx(
        (b_start_s - b_arrival_s) + it(1, 102, 100) + 4 * it(2, 204), rel=1e-12
    )


def test_a_call_arriving_at_a_boundary_joins_the_iteration_that_starts_there():
    # A (100, 2) finishes at its boundary; B arrives exactly then on the idle engine.
    e = engine()
    a_finish_s = it(0, 0, 100) + it(1, 101)
    e.submit(0.0, 1, 100, 2)
    [(_, finish_s)] = e.advance(a_finish_s)

    e.submit(finish_s, 2, 50, 1)

    assert e.advance(10.0) == [(2, pytest.approx(a_finish_s + it(0, 0, 50)))]


def random_workload(seed: int) -> list[tuple[float, int, int, int]]:
    rng = random.Random(seed)
    t_s, calls = 0.0, []
    for call_id in range(60):
        t_s += rng.expovariate(20.0)
        calls.append((t_s, call_id, rng.randint(10, 3000), rng.randint(1, 300)))
    return calls


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_advancing_in_small_steps_gives_the_finishes_of_one_big_step(seed):
    calls = random_workload(seed)
    stepped, jumped = engine(max_batch=8), engine(max_batch=8)
    stepped_done = []

    for i, (t_s, call_id, prompt, output) in enumerate(calls):
        stepped.submit(t_s, call_id, prompt, output)
        jumped.submit(t_s, call_id, prompt, output)
        # Steps of 1.37 ms (mid-iteration, mostly) until the next arrival.
        next_s = calls[i + 1][0] if i + 1 < len(calls) else 1e6
        while t_s + 0.00137 < next_s and stepped.next_event_s() is not None:
            t_s += 0.00137
            stepped_done += stepped.advance(t_s)
    jumped_done = jumped.advance(1e6)

    assert len(jumped_done) == len(calls)
    assert [c for c, _ in stepped_done] == [c for c, _ in jumped_done]
    for (_, a), (_, b) in zip(stepped_done, jumped_done, strict=True):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-12)


def test_following_next_event_returns_every_call_once_in_finish_order():
    calls = random_workload(3)
    e = engine(max_batch=4)
    done = []

    for t_s, call_id, prompt, output in calls:
        while e.next_event_s() is not None and e.next_event_s() <= t_s:
            done += e.advance(e.next_event_s())
        e.submit(t_s, call_id, prompt, output)
    while e.next_event_s() is not None:
        finished = e.advance(e.next_event_s())
        assert finished, "next_event_s must name a time at which a call finishes"
        done += finished

    assert sorted(c for c, _ in done) == list(range(len(calls)))
    assert [t for _, t in done] == sorted(t for _, t in done)
    submit_s = {call_id: t_s for t_s, call_id, _, _ in calls}
    assert all(t >= submit_s[c] for c, t in done)


def test_time_going_back_is_rejected():
    e = engine()
    e.submit(5.0, 1, 100, 10)

    with pytest.raises(ValueError, match="time went back"):
        e.advance(4.0)


def test_a_call_without_output_tokens_is_rejected():
    e = engine()

    with pytest.raises(ValueError, match="output_tokens >= 1"):
        e.submit(0.0, 1, 100, 0)
