"""Sweeps: every policy at a ladder of rates, run in parallel, and maximum throughput.

Maximum throughput (the README defines it for users): the completed throughput at the
highest offered rate where the policy still keeps up, meaning completed throughput is
within 5% of the offered rate and P95 latency is within 5x of the policy's P95 at the
lowest rate of the sweep.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

from aragog.sim.experiment import Experiment, ExperimentSpec, summarize

logger = logging.getLogger(__name__)

KEEP_UP_THROUGHPUT_SHARE = 0.95
KEEP_UP_P95_FACTOR = 5.0
DEFAULT_NUM_RATES = 8
# The ladder spans these shares of the node's ideal capacity (every engine at peak).
LOW_RATE_SHARE, HIGH_RATE_SHARE = 0.1, 0.8

_worker_experiment: Experiment | None = None


def default_rates(
    experiment: Experiment, num_rates: int = DEFAULT_NUM_RATES
) -> list[float]:
    """A ladder of rates from light load to past what the node can serve."""
    capacity = experiment.capacity_rps()
    shares = np.linspace(LOW_RATE_SHARE, HIGH_RATE_SHARE, num_rates)
    return [float(f"{capacity * s:.3g}") for s in shares]


def run_grid(
    spec: ExperimentSpec,
    rates: Sequence[float],
    workers: int | None = None,
    on_done: Callable[[str, float], None] | None = None,
) -> dict[str, list[dict]]:
    """Run every (policy, rate) pair; returns per policy its records by rate."""
    jobs = [(p, r) for r in rates for p in spec.policies]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    results: dict[tuple[str, float], dict] = {}
    if workers == 1:
        experiment = Experiment(spec)
        for policy, rate in jobs:
            results[(policy, rate)] = summarize(experiment.run(policy, rate), rate)
            if on_done:
                on_done(policy, rate)
    else:
        with ProcessPoolExecutor(
            workers, initializer=_init_worker, initargs=(spec,)
        ) as pool:
            futures = {pool.submit(_run_one, p, r): (p, r) for p, r in jobs}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if on_done:
                    on_done(*futures[future])
    return {p: [results[(p, r)] for r in rates] for p in spec.policies}


def keeps_up(record: dict, base_p95: float) -> bool:
    """Whether a run served its offered rate: throughput and P95 both hold."""
    p95 = record["latency_s"]["p95"]
    return (
        record["throughput_rps"]
        >= KEEP_UP_THROUGHPUT_SHARE * record["offered_rate_rps"]
        and math.isfinite(p95)
        and p95 <= KEEP_UP_P95_FACTOR * base_p95
    )


def max_throughput(records: Sequence[dict]) -> float:
    """Completed throughput at the highest rate where the policy keeps up (0 if none).

    ``records`` are one policy's runs in ascending rate; the first is the low-load one.
    """
    if not records:
        return 0.0
    base_p95 = records[0]["latency_s"]["p95"]
    kept = [r["throughput_rps"] for r in records if keeps_up(r, base_p95)]
    return max(kept, default=0.0)


def highest_common_rate(grid: dict[str, list[dict]]) -> float:
    """The highest rate at which every policy keeps up (else the lowest rate)."""
    rates = [r["offered_rate_rps"] for r in next(iter(grid.values()))]
    common = [
        rate
        for i, rate in enumerate(rates)
        if all(keeps_up(recs[i], recs[0]["latency_s"]["p95"]) for recs in grid.values())
    ]
    return max(common, default=rates[0])


def _init_worker(spec: ExperimentSpec) -> None:
    global _worker_experiment
    _worker_experiment = Experiment(spec)


def _run_one(policy: str, rate: float) -> dict:
    assert _worker_experiment is not None, "worker initialised"
    return summarize(_worker_experiment.run(policy, rate), rate)
