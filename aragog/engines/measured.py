"""Iteration times from a measured throughput curve, for the simulated engine.

The roofline :class:`aragog.engines.latency.LatencyModel` predicts an engine from its
model's and GPU's numbers; a throughput profile (``scripts/gpu_check.sh`` writes one,
:func:`aragog.runtime.monitor.load_throughput_profile` reads it) says what an engine
did. :class:`MeasuredLatency` turns such a curve into the interface the simulated
engine and the experiment read, so a simulation can replay a measured node.

The curve gives output tokens per second ``T(n)`` with ``n`` calls running. In one
iteration every running call produces one token, so an iteration of ``n`` calls
takes ``n / T(n)``. The curve was measured at one workload (its prompt and output
lengths), so it already averages prefill into its throughput: a newly admitted
call counts as one more call in its first iteration, its prompt adds nothing of its
own, and context length is not modelled. Past the last measured load, throughput is
flat, so iterations grow linearly.
"""

from __future__ import annotations

import numpy as np

from aragog.runtime.monitor import ThroughputCurve


class MeasuredLatency:
    """The simulated engine's latency interface over one measured curve.

    Args:
        curve: the engine's measured curve (loads from 0, tokens/s positive past 0).

    Raises:
        ValueError: the curve has no positive throughput at load 1 or more.
    """

    __slots__ = ("curve", "_max_load")

    def __init__(self, curve: ThroughputCurve) -> None:
        if curve.at(1.0) <= 0 or curve.loads[-1] < 1:
            raise ValueError(
                "a measured curve needs positive throughput from one running call"
            )
        self.curve = curve
        self._max_load = max(1, int(curve.loads[-1]))

    def iteration_s(
        self,
        num_decode: int,
        decode_context_tokens: float,
        prefill_tokens: float = 0,
        prefill_tokens_sq: float | None = None,
    ) -> float:
        """Seconds of one iteration with ``num_decode`` decoding calls plus the new
        calls whose prompts sum to ``prefill_tokens``.

        The new calls are counted as ``prefill_tokens**2 / prefill_tokens_sq``, which
        is their number when their prompts are of one length (and 1 for one prompt).

        Raises:
            ValueError: a negative count, or an iteration with no call at all.
        """
        if num_decode < 0 or decode_context_tokens < 0 or prefill_tokens < 0:
            raise ValueError(
                f"iteration_s: expected non-negative counts, got num_decode="
                f"{num_decode}, prefill_tokens={prefill_tokens}"
            )
        num_new = 0.0
        if prefill_tokens > 0:
            square = prefill_tokens_sq or prefill_tokens * prefill_tokens
            num_new = prefill_tokens * prefill_tokens / square
        num_calls = num_decode + num_new
        if num_calls <= 0:
            raise ValueError(
                "iteration_s: an iteration needs a decode or prefill token"
            )
        return num_calls / self.curve.at(max(1.0, num_calls))

    def max_batch(self, mean_context_tokens: float) -> int:
        """The most calls the engine runs at once: the highest measured load."""
        return self._max_load

    def throughput_curve(
        self, mean_context_tokens: float, mean_output_tokens: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The measured points (loads from 0, output tokens/s)."""
        return self.curve.loads.copy(), self.curve.tokens_per_s.copy()

    def saturation_batch(
        self, mean_context_tokens: float, mean_output_tokens: float
    ) -> int:
        """The curve's saturation batch (given in the profile, or the 95% rule)."""
        return self.curve.saturation_batch
