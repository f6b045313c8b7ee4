"""A simulated serving engine: continuous batching on virtual time, no GPU.

The model: the engine runs iterations back to back while it has running calls. In one
iteration every running call produces one token; a call admitted at an iteration
boundary has its prompt prefilled in the next iteration, which also yields its first
token, so a call of ``O`` output tokens finishes at the end of its ``O``-th iteration.
Calls that arrive while the batch is full wait in FIFO order for a slot; a call that
arrives while a slot is free joins at the next iteration boundary (or at once when
the engine is idle).

The batch only changes at events (an admission or a completion), and between two
events every iteration costs the same, so the engine jumps from event to event: a
*segment* starts at an event boundary and holds its first iteration's length (longer
when it prefills new prompts) and the length of every later one. The KV context of
the running calls is updated at each event; within a segment, iterations use the
context at the segment's start (its second iteration's, for the later ones), which
undercounts the context's growth between events by at most one token per call per
iteration. Each event costs O(log n) for n running calls.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import deque
from dataclasses import dataclass

from aragog.engines.latency import LatencyModel
from aragog.engines.measured import MeasuredLatency

logger = logging.getLogger(__name__)

_TIME_EPS_S = 1e-9
"""Times this close count as equal: boundaries are recomputed from a segment's start,
and a caller may pass back a time this engine returned after float round-off."""


@dataclass(frozen=True, slots=True)
class _Call:
    call_id: int
    prompt_tokens: int
    output_tokens: int
    submit_s: float


class SimulatedEngine:
    """One engine replaying stage calls against a :class:`LatencyModel`.

    Args:
        name: the engine's name, for logs.
        latency: the latency model of its model on its GPUs, or a measured curve.
        max_batch: most calls running at once (KV cache capacity).

    Raises:
        ValueError: ``max_batch`` below 1.
    """

    def __init__(
        self, name: str, latency: LatencyModel | MeasuredLatency, max_batch: int
    ) -> None:
        if max_batch < 1:
            raise ValueError(
                f"engine {name!r}: max_batch must be >= 1, got {max_batch}"
            )
        self.name = name
        self.latency = latency
        self.max_batch = max_batch
        self._now_s = -math.inf
        self._waiting: deque[_Call] = deque()
        self._finished: deque[tuple[int, float]] = deque()

        # Running calls: a heap of (finishing iteration, admission order, call), and
        # sums that give the running calls' total context at any iteration count g:
        # sum(prompt) + n * g - sum(admission iteration).
        self._running: list[tuple[int, int, _Call]] = []
        self._num_admitted = 0
        self._sum_prompt_tokens = 0
        self._sum_admit_iter = 0

        # The current segment: it starts at time `_seg_start_s`, after
        # `_seg_start_iter` iterations since the engine was built; its first
        # iteration lasts `_seg_first_s`, every later one `_seg_iter_s`. The calls
        # admitted at its start (prefilled in its first iteration) are summed apart.
        self._seg_start_s = 0.0
        self._seg_start_iter = 0
        self._seg_first_s = 0.0
        self._seg_iter_s = 0.0
        self._seg_num_new = 0
        self._seg_new_prompt_tokens = 0
        self._seg_new_prompt_tokens_sq = 0

    @property
    def num_running(self) -> int:
        """Calls in the batch, counting those that join at the next boundary."""
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        """Calls queued for a free slot."""
        return len(self._waiting)

    def submit(
        self, now_s: float, call_id: int, prompt_tokens: int, output_tokens: int
    ) -> None:
        """A stage call arrives at ``now_s``; it waits while the batch is full.

        Raises:
            ValueError: ``now_s`` earlier than a time already given, fewer than one
                output token, or a negative prompt.
        """
        if output_tokens < 1 or prompt_tokens < 0:
            raise ValueError(
                f"engine {self.name!r}: call {call_id} needs output_tokens >= 1 and "
                f"prompt_tokens >= 0, got {output_tokens} and {prompt_tokens}"
            )
        self._advance_to(now_s)
        self._waiting.append(_Call(call_id, prompt_tokens, output_tokens, now_s))
        self._admit_arrivals(now_s)

    def next_event_s(self) -> float | None:
        """When the next call finishes if nothing else arrives; None when idle.

        A finish already reached but not yet returned by :meth:`advance` counts.
        """
        if self._finished:
            return self._finished[0][1]
        if not self._running:
            return None
        return self._boundary_s(self._running[0][0] - self._seg_start_iter)

    def advance(self, now_s: float) -> list[tuple[int, float]]:
        """Move the engine to ``now_s``; return the calls finished by then.

        Returns:
            (call_id, finish_time_s) of every call finished at or before ``now_s``
            and not returned before, in finish order.

        Raises:
            ValueError: ``now_s`` earlier than a time already given.
        """
        self._advance_to(now_s)
        done = []
        while self._finished and self._finished[0][1] <= now_s + _TIME_EPS_S:
            done.append(self._finished.popleft())
        return done

    # --- Events ---------------------------------------------------------------------

    def _advance_to(self, now_s: float) -> None:
        # Process every completion boundary up to now; admissions only happen at those
        # boundaries here (arrivals are admitted by `_admit_arrivals`).
        if now_s < self._now_s - _TIME_EPS_S:
            raise ValueError(
                f"engine {self.name!r}: time went back from {self._now_s} to {now_s}"
            )
        self._now_s = max(self._now_s, now_s)
        while self._running:
            k = self._running[0][0] - self._seg_start_iter
            if self._boundary_s(k) > now_s + _TIME_EPS_S:
                break
            self._start_segment(k)

    def _admit_arrivals(self, now_s: float) -> None:
        # A call that finds a free slot joins at the first boundary at or after its
        # arrival: at once on an idle engine, in the current segment's first
        # iteration when that starts now, else at a later boundary, which is taken
        # as an event right away (so the engine's state may run slightly ahead of
        # `now_s`; nothing that arrives later can change what happens before it).
        if not self._waiting or len(self._running) >= self.max_batch:
            return
        if not self._running:
            self._seg_start_s = max(now_s, self._seg_start_s)
            self._seg_num_new = 0
            self._seg_new_prompt_tokens = 0
            self._seg_new_prompt_tokens_sq = 0
            self._admit_waiting()
            self._plan_segment()
        elif now_s <= self._seg_start_s + _TIME_EPS_S:
            self._admit_waiting()
            self._plan_segment()
        else:
            self._start_segment(self._first_boundary_at_or_after(now_s))

    def _start_segment(self, k: int) -> None:
        # Move to the k-th boundary of the current segment: finish the calls that end
        # there, admit waiting calls into the freed slots, plan the new segment.
        start_s = self._boundary_s(k)
        start_iter = self._seg_start_iter + k
        while self._running and self._running[0][0] <= start_iter:
            finish_iter, _, call = heapq.heappop(self._running)
            assert finish_iter == start_iter, "a call finished between boundaries"
            self._sum_prompt_tokens -= call.prompt_tokens
            self._sum_admit_iter -= finish_iter - call.output_tokens
            self._finished.append((call.call_id, start_s))
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "engine %s: call %d finished at %.6f s after %.6f s",
                    self.name,
                    call.call_id,
                    start_s,
                    start_s - call.submit_s,
                )
        self._seg_start_s = start_s
        self._seg_start_iter = start_iter
        self._seg_num_new = 0
        self._seg_new_prompt_tokens = 0
        self._seg_new_prompt_tokens_sq = 0
        self._admit_waiting()
        self._plan_segment()

    def _admit_waiting(self) -> None:
        # FIFO into free slots, at the current segment's start.
        g = self._seg_start_iter
        while self._waiting and len(self._running) < self.max_batch:
            call = self._waiting.popleft()
            heapq.heappush(
                self._running, (g + call.output_tokens, self._num_admitted, call)
            )
            self._num_admitted += 1
            self._sum_prompt_tokens += call.prompt_tokens
            self._sum_admit_iter += g
            self._seg_num_new += 1
            self._seg_new_prompt_tokens += call.prompt_tokens
            self._seg_new_prompt_tokens_sq += call.prompt_tokens**2

    def _plan_segment(self) -> None:
        # Iteration lengths of the segment from the running calls at its start.
        n = len(self._running)
        if n == 0:
            return
        g = self._seg_start_iter
        num_old = n - self._seg_num_new
        context_all = self._sum_prompt_tokens + n * g - self._sum_admit_iter
        if self._seg_num_new == 0:
            self._seg_iter_s = self.latency.iteration_s(n, context_all)
            self._seg_first_s = self._seg_iter_s
            return
        # New calls were admitted at g (admission iteration g, no token yet).
        context_old = context_all - self._seg_new_prompt_tokens
        self._seg_first_s = self.latency.iteration_s(
            num_old,
            context_old,
            self._seg_new_prompt_tokens,
            self._seg_new_prompt_tokens_sq,
        )
        self._seg_iter_s = self.latency.iteration_s(n, context_all + n)

    # --- Segment arithmetic ---------------------------------------------------------

    def _boundary_s(self, k: int) -> float:
        # Time of the end of the segment's k-th iteration (k = 0: its start). Always
        # computed from the start, never accumulated, so every caller agrees.
        if k <= 0:
            return self._seg_start_s
        return self._seg_start_s + self._seg_first_s + (k - 1) * self._seg_iter_s

    def _first_boundary_at_or_after(self, t_s: float) -> int:
        after_first_s = t_s - self._seg_start_s - self._seg_first_s
        if after_first_s <= _TIME_EPS_S:
            return 1
        # The ceiling may land one off either way after round-off; settle it on the
        # boundaries themselves.
        k = 1 + math.ceil(after_first_s / self._seg_iter_s)
        while self._boundary_s(k) < t_s - _TIME_EPS_S:
            k += 1
        while k > 1 and self._boundary_s(k - 1) >= t_s - _TIME_EPS_S:
            k -= 1
        return k
