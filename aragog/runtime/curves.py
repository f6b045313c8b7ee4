"""Throughput-versus-batch curves measured on a running engine, and their profile file.

The measurement: for each batch size ``b`` of a ladder (1, 2, 4, ... up to the
engine's batch limit), ``b`` identical stage calls (a fixed prompt, a fixed number of
output tokens) are sent to the engine at once, and the output tokens they produced
are divided by the time until the last one answered. That is what an offline batch
benchmark measures, prefill included, and what the monitors read as the engine's
throughput at load ``b`` (see :mod:`aragog.runtime.monitor`).

The fit: measured throughput can dip from one batch size to the next (a preemption,
a noisy neighbour); the scheduler reads a dip as "one more call loses throughput".
The curve kept is the running maximum of the points (a batch can always be served
as well as a smaller one, by leaving the extra calls waiting), and its saturation
batch is the monitors' rule (:func:`aragog.runtime.monitor.curve_from_points`).

The file is the monitors' throughput profile (:func:`load_throughput_profile`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aragog.engines.base import Engine
from aragog.runtime.monitor import (
    ThroughputCurve,
    curve_from_points,
    load_throughput_profile,
    throughput_profile_dict,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """One batch of the measurement: its size, duration and tokens produced."""

    batch_size: int
    seconds: float
    num_output_tokens: int

    @property
    def tokens_per_s(self) -> float:
        return self.num_output_tokens / self.seconds if self.seconds > 0 else 0.0


def batch_ladder(max_batch: int) -> list[int]:
    """1, 2, 4, ... below ``max_batch``, then ``max_batch`` itself."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, found {max_batch}")
    ladder = [1]
    while ladder[-1] * 2 < max_batch:
        ladder.append(ladder[-1] * 2)
    if ladder[-1] != max_batch:
        ladder.append(max_batch)
    return ladder


async def measure_curve(
    engine: Engine,
    batch_sizes: Sequence[int],
    prompt: str,
    output_tokens: int,
    timeout_s: float = 120.0,
) -> list[CurvePoint]:
    """Time one batch of identical calls per batch size on a started ``engine``.

    The engine must generate exactly ``output_tokens`` per call (vLLM with
    ``ignore_eos``), or the tokens it reports are what counts. Stops early, keeping
    the points so far, when a batch takes longer than ``timeout_s``.
    """
    points: list[CurvePoint] = []
    for b in batch_sizes:
        began_s = time.perf_counter()
        calls = [
            engine.generate(f"curve-{engine.name}-{b}-{k}", prompt, output_tokens, 0.0)
            for k in range(b)
        ]
        try:
            outputs = await asyncio.wait_for(asyncio.gather(*calls), timeout_s)
        except asyncio.TimeoutError:
            logger.warning(
                "engine %s: a batch of %d took over %.0f s; curve stops at %d points",
                engine.name,
                b,
                timeout_s,
                len(points),
            )
            break
        point = CurvePoint(
            b, time.perf_counter() - began_s, sum(o.num_output_tokens for o in outputs)
        )
        logger.info(
            "engine %s: batch %d, %.2f s, %.0f output tokens/s",
            engine.name,
            b,
            point.seconds,
            point.tokens_per_s,
        )
        points.append(point)
    return points


def fit_curve(points: Sequence[CurvePoint]) -> ThroughputCurve:
    """The curve kept from measured points: their running maximum (see the module
    note), through (0, 0), with the monitors' saturation rule.

    Raises:
        ValueError: no point, or batch sizes that do not increase.
    """
    if not points:
        raise ValueError("no measured point to fit")
    loads = np.array([p.batch_size for p in points], dtype=np.float64)
    tokens_per_s = np.maximum.accumulate([p.tokens_per_s for p in points])
    return curve_from_points(loads, tokens_per_s)


def curve_entry(
    model: str,
    curve: ThroughputCurve,
    *,
    engine: str | None = None,
    gpu: str | None = None,
    tensor_parallel: int | None = None,
    prompt_tokens: int | None = None,
    output_tokens: int | None = None,
) -> dict[str, Any]:
    """One ``curves`` entry of a throughput profile (the (0, 0) point left out)."""
    keep = curve.loads > 0
    entry: dict[str, Any] = {"model": model}
    optional = {
        "engine": engine,
        "gpu": gpu,
        "tensor_parallel": tensor_parallel,
        "prompt_tokens": prompt_tokens,
        "output_tokens": output_tokens,
    }
    entry.update({k: v for k, v in optional.items() if v is not None})
    entry["loads"] = [float(x) for x in curve.loads[keep]]
    entry["tokens_per_s"] = [round(float(y), 3) for y in curve.tokens_per_s[keep]]
    entry["saturation_batch"] = int(curve.saturation_batch)
    return entry


def write_profile(
    path: str | Path, entries: Sequence[dict[str, Any]], hardware: str | None = None
) -> None:
    """Write a throughput profile (JSON) and read it back, so a file that the
    monitors would refuse is never left behind.

    Raises:
        ProfileError: an entry the monitors' loader rejects.
    """
    document = throughput_profile_dict(list(entries), hardware)
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    load_throughput_profile(path)
    logger.info("wrote throughput profile %s (%d curves)", path, len(entries))
