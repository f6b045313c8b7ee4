"""What the scheduler knows of a real engine: its load now and its throughput curve.

One :class:`EngineMonitor` per engine. The runtime tells it when it dispatches a stage
call to the engine and when the call ends; the engine reports its own running and
waiting requests and KV-cache use where it can. From these the monitor answers the
two things a scheduling round reads: the engine's *occupancy* (so free slots are the
saturation batch minus it) and its *throughput-versus-load curve*.

The curve. Its base is a measured profile when the deployment gives one (see
:func:`load_throughput_profile` for the file format), otherwise the roofline latency
model of the engine's model and GPU at the stage lengths seen so far. Either way it is
corrected online by one factor, the ratio of measured to predicted throughput:

- Every ``settings.window_s`` or more, at a call's end, the monitor takes the output
  tokens of the calls that ended in the window and the time-average of the in-flight
  count over it: measured throughput ``m`` at mean load ``n``.
- Where ``n`` is at least ``settings.min_window_load`` (an idle engine says nothing
  about its speed) and no call was aborted in the window (its tokens are unknown),
  the ratio ``m / base(n)`` is folded into the factor by an
  exponential moving average over time, with time constant ``settings.tau_s``, and the
  factor is bounded to ``[settings.min_correction, settings.max_correction]`` so one
  odd window (a burst of completions, a pause) cannot swing the curve far.
- The published curve is ``factor * base``. A constant factor keeps the saturation
  batch of the base, which is capped by the engine's ``max_num_seqs`` when known.
- A new :class:`EngineView` is made only when the factor moved by more than
  ``settings.republish_fraction`` since the last one, or the base changed; callers
  can compare views by identity to skip rebuilding their tables.

Throughput counted at call ends arrives in lumps (a call's tokens land when it ends),
which the window and the time constant smooth out; the engine's own token counters
would be finer, but not every engine has them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aragog.engines.base import EngineLoad
from aragog.engines.latency import SATURATION_FRACTION, LatencyModel
from aragog.errors import ConfigError, ProfileError
from aragog.models import GpuSpec, ModelSpec
from aragog.orchestrator import EngineView

logger = logging.getLogger(__name__)

PROFILE_VERSION = 1


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    """How a monitor smooths and bounds what it measures.

    Attributes:
        latency_alpha: weight of the newest call in the moving average of latency.
        window_s: shortest span over which throughput is measured.
        tau_s: time constant of the throughput and correction averages.
        min_window_load: mean in-flight calls a window needs to correct the curve.
        min_correction, max_correction: bounds of the correction factor.
        republish_fraction: relative change of the factor that makes a new view.
        prompt_tokens, output_tokens: stage lengths assumed by the latency-model
            curve until calls have been measured.
        rebase_fraction: relative drift of the measured mean lengths from those of
            the latency-model curve that recomputes it.
        count_foreign_load: count running and waiting requests the engine reports
            beyond this runtime's own calls (an engine shared with other clients).
    """

    latency_alpha: float = 0.1
    window_s: float = 1.0
    tau_s: float = 30.0
    min_window_load: float = 0.5
    min_correction: float = 0.2
    max_correction: float = 5.0
    republish_fraction: float = 0.05
    prompt_tokens: float = 512.0
    output_tokens: float = 256.0
    rebase_fraction: float = 0.25
    count_foreign_load: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.latency_alpha <= 1:
            raise ConfigError(
                f"monitor: latency_alpha must be in (0, 1], found {self.latency_alpha}"
            )
        if not 0 < self.min_correction <= 1 <= self.max_correction:
            raise ConfigError(
                f"monitor: expected min_correction <= 1 <= max_correction, found "
                f"{self.min_correction} and {self.max_correction}"
            )
        for name in ("window_s", "tau_s", "prompt_tokens", "output_tokens"):
            if not getattr(self, name) > 0:
                raise ConfigError(
                    f"monitor: {name} must be positive, found {getattr(self, name)}"
                )


@dataclass(frozen=True, slots=True)
class ThroughputCurve:
    """Output tokens per second against load, piecewise linear.

    Attributes:
        loads: float64, strictly increasing from 0.
        tokens_per_s: float64, one per load; 0 at load 0.
        saturation_batch: the load past which throughput stops growing.
    """

    loads: np.ndarray
    tokens_per_s: np.ndarray
    saturation_batch: int

    def at(self, load: float) -> float:
        """Throughput at ``load``, flat past the last point."""
        return float(np.interp(load, self.loads, self.tokens_per_s))

    def capped(self, max_load: int) -> ThroughputCurve:
        """The curve of an engine that runs at most ``max_load`` calls at once."""
        if max_load >= self.loads[-1]:
            return self
        keep = self.loads < max_load
        loads = np.append(self.loads[keep], float(max_load))
        tokens_per_s = np.append(self.tokens_per_s[keep], self.at(max_load))
        return ThroughputCurve(
            loads, tokens_per_s, max(1, min(self.saturation_batch, max_load))
        )


def curve_from_points(
    loads: list[float] | np.ndarray, tokens_per_s: list[float] | np.ndarray
) -> ThroughputCurve:
    """A curve through measured points; a (0, 0) point is added when missing.

    The saturation batch is the smallest measured load whose throughput reaches
    :data:`aragog.engines.latency.SATURATION_FRACTION` of the highest one, the same
    rule as the latency model's.

    Raises:
        ValueError: lengths differ, loads are not increasing, or a value is negative.
    """
    x = np.asarray(loads, dtype=np.float64)
    y = np.asarray(tokens_per_s, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError(
            f"expected loads and tokens_per_s of one equal length, found "
            f"{x.shape} and {y.shape}"
        )
    if np.any(np.diff(x) <= 0) or x[0] < 0 or np.any(y < 0):
        raise ValueError("expected loads increasing from 0 and non-negative values")
    if x[0] > 0:
        x, y = np.insert(x, 0, 0.0), np.insert(y, 0, 0.0)
    positive = x > 0
    reaching = positive & (y >= SATURATION_FRACTION * y[positive].max())
    saturation = max(1, int(math.ceil(x[int(np.argmax(reaching))])))
    return ThroughputCurve(x, y, saturation)


def model_curve(
    latency: LatencyModel, prompt_tokens: float, output_tokens: float
) -> ThroughputCurve:
    """The latency model's curve for calls of these mean lengths."""
    # A decoding call holds its prompt plus, on average, half its output.
    context = prompt_tokens + output_tokens / 2
    loads, tokens_per_s = latency.throughput_curve(context, output_tokens)
    saturation = latency.saturation_batch(context, output_tokens)
    return ThroughputCurve(loads, tokens_per_s, saturation)


# --- the profile file --------------------------------------------------------------


class _ProfileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1)
    engine: str | None = None
    gpu: str | None = None
    tensor_parallel: int | None = Field(default=None, gt=0)
    prompt_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, gt=0)
    loads: list[float] = Field(min_length=1)
    tokens_per_s: list[float] = Field(min_length=1)
    saturation_batch: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _points(self) -> _ProfileEntry:
        curve_from_points(self.loads, self.tokens_per_s)
        return self


class _ProfileFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    version: int
    hardware: str | None = None
    curves: list[_ProfileEntry] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class ThroughputProfile:
    """Measured curves, by engine name and by model (see the loader for the file)."""

    by_engine: Mapping[str, ThroughputCurve]
    by_model: Mapping[str, ThroughputCurve]

    def curve_for(self, engine: str, model: str) -> ThroughputCurve | None:
        """The engine's own curve, else its model's, else None."""
        return self.by_engine.get(engine) or self.by_model.get(model)


def load_throughput_profile(path: str | Path) -> ThroughputProfile:
    """Read a throughput profile: measured curves for the monitors.

    The file is YAML or JSON (JSON is YAML)::

        version: 1
        hardware: 1x H200                 # free text, for the reader
        curves:
          - model: qwen2.5-7b             # a model of the deployment's family
            engine: qwen2.5-7b#0          # optional: this engine only
            gpu: H200                     # optional, informational
            tensor_parallel: 1            # optional, informational
            prompt_tokens: 512            # optional: the measured workload
            output_tokens: 256
            loads: [1, 2, 4, 8, 16, 32]   # concurrent calls, increasing
            tokens_per_s: [60, 118, 230, 440, 800, 1300]  # output tokens/s
            saturation_batch: 32          # optional; else the 95% rule

    An engine takes the curve naming it, else the (first) curve of its model.

    Raises:
        ProfileError: a missing file, bad YAML, or a malformed entry; one line naming
            the file and the field.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ProfileError(
            f"{path}: not valid YAML ({str(exc).splitlines()[0]})"
        ) from None
    try:
        spec = _ProfileFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "top"
        raise ProfileError(f"{path}: {loc}: {err['msg'].lower()}") from None
    if spec.version != PROFILE_VERSION:
        raise ProfileError(
            f"{path}: version: expected {PROFILE_VERSION}, found {spec.version}"
        )
    by_engine: dict[str, ThroughputCurve] = {}
    by_model: dict[str, ThroughputCurve] = {}
    for entry in spec.curves:
        curve = curve_from_points(entry.loads, entry.tokens_per_s)
        if entry.saturation_batch is not None:
            curve = ThroughputCurve(
                curve.loads, curve.tokens_per_s, entry.saturation_batch
            )
        if entry.engine is not None:
            by_engine[entry.engine] = curve
        else:
            by_model.setdefault(entry.model, curve)
    logger.debug("throughput profile %s: %d curves", path, len(spec.curves))
    return ThroughputProfile(by_engine, by_model)


def throughput_profile_dict(
    curves: list[dict[str, Any]], hardware: str | None = None
) -> dict[str, Any]:
    """The document :func:`load_throughput_profile` reads, from curve entries.

    Each entry holds ``model``, ``loads`` and ``tokens_per_s`` and any optional field
    of the format; the result is ready for ``json.dump`` or ``yaml.safe_dump``.

    Raises:
        ProfileError: an entry the loader would reject.
    """
    doc: dict[str, Any] = {"version": PROFILE_VERSION, "curves": curves}
    if hardware is not None:
        doc["hardware"] = hardware
    try:
        _ProfileFile.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ProfileError(f"throughput profile: {loc}: {err['msg'].lower()}") from None
    return doc


# --- the monitor -------------------------------------------------------------------


class _Reporting(Protocol):
    """What a monitor reads from its engine."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    def load(self) -> EngineLoad: ...


class EngineMonitor:
    """Load, measured speed and the corrected throughput curve of one engine.

    Args:
        engine: the engine (its name, model and self-reported load are read).
        model: the engine's catalog model, for the latency-model curve.
        gpu: the engine's GPU, for the latency-model curve; may be None when
            ``curve`` is given.
        curve: a measured base curve (from a profile); None uses the latency model.
        max_num_seqs: the most calls the engine runs at once, when known: caps the
            saturation batch and the curve.
        settings: smoothing and bounds (see :class:`MonitorSettings`).
        clock: seconds, monotonic; tests pass a fake.

    Raises:
        ConfigError: neither a GPU nor a curve, or a ``max_num_seqs`` below 1.
    """

    def __init__(
        self,
        engine: _Reporting,
        model: ModelSpec,
        gpu: GpuSpec | None = None,
        *,
        curve: ThroughputCurve | None = None,
        max_num_seqs: int | None = None,
        settings: MonitorSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        latency = None
        if curve is None:
            if gpu is None:
                raise ConfigError(
                    f"engine {engine.name!r}: a monitor needs a GPU or a measured curve"
                )
            latency = LatencyModel(model, gpu)
        if max_num_seqs is not None and max_num_seqs < 1:
            raise ConfigError(
                f"engine {engine.name!r}: max_num_seqs must be positive, "
                f"found {max_num_seqs}"
            )
        self._engine = engine
        self._settings = settings or MonitorSettings()
        self._clock = clock
        self._max_num_seqs = max_num_seqs
        self._latency = latency

        # Counts and moving averages.
        self.num_in_flight = 0
        self.num_finished = 0
        self.num_aborted = 0
        self.latency_s: float | None = None
        self.tokens_per_s: float | None = None
        self.mean_prompt_tokens: float | None = None
        self.mean_output_tokens: float | None = None
        self.correction = 1.0

        # The current window: start, integral of in-flight calls, tokens ended.
        now = clock()
        self._last_change_s = now
        self._window_start_s = now
        self._window_load_s = 0.0
        self._window_tokens = 0
        self._window_has_abort = False

        # The base curve and the view last published.
        s = self._settings
        self._base_lengths = (s.prompt_tokens, s.output_tokens)
        self._base = self._cap(curve or self._model_curve(*self._base_lengths))
        self._view_correction = 1.0
        self._view = self._make_view()

    # --- what the runtime tells the monitor ---------------------------------------

    def on_dispatch(self) -> None:
        """A stage call was sent to the engine."""
        self._advance()
        self.num_in_flight += 1

    def on_abort(self) -> None:
        """A stage call ended without output (cancelled or failed)."""
        self._advance()
        self.num_in_flight -= 1
        self.num_aborted += 1
        # Its load counted in the window but its tokens never will: the window's
        # throughput would read low, so it corrects nothing.
        self._window_has_abort = True
        assert self.num_in_flight >= 0, f"{self.name}: more calls ended than started"

    def on_finish(
        self, run_s: float, num_prompt_tokens: int, num_output_tokens: int
    ) -> None:
        """A stage call ended with output after ``run_s`` seconds."""
        self._advance()
        self.num_in_flight -= 1
        self.num_finished += 1
        assert self.num_in_flight >= 0, f"{self.name}: more calls ended than started"

        # Per-call averages: latency and stage lengths.
        a = self._settings.latency_alpha
        self.latency_s = _ema(self.latency_s, run_s, a)
        self.mean_prompt_tokens = _ema(self.mean_prompt_tokens, num_prompt_tokens, a)
        self.mean_output_tokens = _ema(self.mean_output_tokens, num_output_tokens, a)

        # Throughput over the window, and the correction it implies.
        self._window_tokens += num_output_tokens
        if self._clock() - self._window_start_s >= self._settings.window_s:
            self._close_window()

    # --- what the scheduler reads -------------------------------------------------

    @property
    def name(self) -> str:
        return self._engine.name

    @property
    def saturation_batch(self) -> int:
        return self._base.saturation_batch

    def occupancy(self) -> int:
        """The load to schedule against: this runtime's calls in flight, plus the
        engine's other requests when ``count_foreign_load`` is set."""
        if not self._settings.count_foreign_load:
            return self.num_in_flight
        load = self._engine.load()
        if load.num_running is None:
            return self.num_in_flight
        reported = load.num_running + (load.num_waiting or 0)
        return max(self.num_in_flight, reported)

    def free_slots(self) -> int:
        """Calls the engine can take before it passes its saturation batch."""
        return max(0, self.saturation_batch - self.occupancy())

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """The corrected curve: loads and output tokens per second."""
        return self._view.curve_load, self._view.curve_throughput

    def view(self) -> EngineView:
        """The engine as the orchestrator sees it; the same object until it changes."""
        return self._view

    # --- helpers -----------------------------------------------------------------

    def _advance(self) -> None:
        # Integrate the in-flight count up to now, before it changes.
        now = self._clock()
        self._window_load_s += self.num_in_flight * (now - self._last_change_s)
        self._last_change_s = now

    def _close_window(self) -> None:
        s = self._settings
        now = self._clock()
        span_s = now - self._window_start_s
        mean_load = self._window_load_s / span_s
        measured = self._window_tokens / span_s
        weight = 1.0 - math.exp(-span_s / s.tau_s)
        self.tokens_per_s = _ema(self.tokens_per_s, measured, weight)

        # Correct the curve only from a busy window with a meaningful prediction.
        predicted = self._base.at(mean_load)
        busy = mean_load >= s.min_window_load and not self._window_has_abort
        if busy and predicted > 0:
            ratio = measured / predicted
            corrected = self.correction + weight * (ratio - self.correction)
            self.correction = min(s.max_correction, max(s.min_correction, corrected))
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "engine %s: %.1f tokens/s at load %.2f over %.2f s, predicted "
                    "%.1f; correction %.3f",
                    self.name,
                    measured,
                    mean_load,
                    span_s,
                    predicted,
                    self.correction,
                )
        self._window_start_s = now
        self._window_load_s = 0.0
        self._window_tokens = 0
        self._window_has_abort = False
        self._maybe_rebase()
        self._maybe_republish()

    def _maybe_rebase(self) -> None:
        # Only a latency-model base follows the measured stage lengths.
        if self._latency is None or self.mean_output_tokens is None:
            return
        assert self.mean_prompt_tokens is not None
        measured = (self.mean_prompt_tokens, max(1.0, self.mean_output_tokens))
        drift = max(
            abs(m - b) / b for m, b in zip(measured, self._base_lengths, strict=True)
        )
        if drift <= self._settings.rebase_fraction:
            return
        logger.info(
            "engine %s: stage lengths now %.0f prompt / %.0f output tokens; "
            "recomputing the latency-model curve",
            self.name,
            *measured,
        )
        self._base_lengths = measured
        self._base = self._cap(self._model_curve(*measured))
        self._view = self._make_view()

    def _maybe_republish(self) -> None:
        change = abs(self.correction - self._view_correction) / self._view_correction
        if change > self._settings.republish_fraction:
            self._view = self._make_view()

    def _make_view(self) -> EngineView:
        self._view_correction = self.correction
        return EngineView(
            self._engine.name,
            self._engine.model,
            self._base.saturation_batch,
            self._base.loads,
            self._base.tokens_per_s * self.correction,
        )

    def _model_curve(
        self, prompt_tokens: float, output_tokens: float
    ) -> ThroughputCurve:
        assert self._latency is not None
        return model_curve(self._latency, prompt_tokens, output_tokens)

    def _cap(self, curve: ThroughputCurve) -> ThroughputCurve:
        if self._max_num_seqs is None:
            return curve
        return curve.capped(self._max_num_seqs)


def _ema(current: float | None, sample: float, weight: float) -> float:
    return float(sample) if current is None else current + weight * (sample - current)
