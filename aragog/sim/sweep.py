"""Sweeps: every policy at a ladder of rates, run in parallel, and maximum throughput.

Maximum throughput (the README defines it for users): the completed throughput at the
highest offered rate where the policy still keeps up, meaning completed throughput is
at least 95% of the offered rate and P95 latency is within 5x of the policy's P95 at
the lowest rate of the sweep.

The ladder is geometric, from light load to past the node's ideal capacity, and is
shared by every policy so that they can be compared at the same rates. Because the
policies' limits differ by several times, each policy's bracket (its last rate that
keeps up, its first that does not) is then bisected a few times on its own.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed

import numpy as np

from aragog.sim.experiment import Experiment, ExperimentSpec, summarize

logger = logging.getLogger(__name__)

KEEP_UP_THROUGHPUT_SHARE = 0.95
KEEP_UP_P95_FACTOR = 5.0
DEFAULT_NUM_RATES = 10
DEFAULT_NUM_REFINEMENTS = 2
# The ladder spans these shares of the node's ideal capacity (every engine at peak).
LOW_RATE_SHARE, HIGH_RATE_SHARE = 0.01, 0.8

OnDone = Callable[[str, float], None]
_worker_experiment: Experiment | None = None


def default_rates(
    experiment: Experiment, num_rates: int = DEFAULT_NUM_RATES
) -> list[float]:
    """A geometric ladder of rates from light load to past what the node can serve."""
    capacity = experiment.capacity_rps()
    shares = np.geomspace(LOW_RATE_SHARE, HIGH_RATE_SHARE, num_rates)
    return [float(f"{capacity * s:.3g}") for s in shares]


def run_sweep(
    spec: ExperimentSpec,
    rates: Sequence[float],
    workers: int | None = None,
    num_refinements: int = DEFAULT_NUM_REFINEMENTS,
    on_done: OnDone | None = None,
) -> dict[str, list[dict]]:
    """Run every policy at every rate, then refine each policy's bracket.

    Returns, per policy, its records in ascending offered rate.
    """
    workers = max(
        1, min(workers or os.cpu_count() or 1, len(rates) * len(spec.policies))
    )
    with _executor(spec, workers) as pool:
        # The shared ladder.
        records = _run_jobs(
            pool, spec, [(p, r) for r in rates for p in spec.policies], on_done
        )

        # Bisect each policy's bracket, all policies in parallel at each step.
        for _ in range(num_refinements):
            jobs = []
            for policy in spec.policies:
                mine = sorted((r for p, r in records if p == policy))
                rate = _bisect_rate([records[(policy, r)] for r in mine])
                if rate is not None and (policy, rate) not in records:
                    jobs.append((policy, rate))
            records.update(_run_jobs(pool, spec, jobs, on_done))

    return {
        p: [records[(p, r)] for r in sorted(r for q, r in records if q == p)]
        for p in spec.policies
    }


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


def highest_common_rate(grid: dict[str, list[dict]], ladder: Sequence[float]) -> float:
    """The highest ladder rate at which every policy keeps up (else the lowest)."""
    common = []
    for rate in ladder:
        ok = True
        for records in grid.values():
            base_p95 = records[0]["latency_s"]["p95"]
            at_rate = next(r for r in records if r["offered_rate_rps"] == rate)
            ok = ok and keeps_up(at_rate, base_p95)
        if ok:
            common.append(rate)
    return max(common, default=min(ladder))


def _bisect_rate(records: Sequence[dict]) -> float | None:
    """The geometric middle of the policy's bracket, or None without one."""
    base_p95 = records[0]["latency_s"]["p95"]
    kept = [r["offered_rate_rps"] for r in records if keeps_up(r, base_p95)]
    if not kept:
        return None
    low = max(kept)
    above = [r["offered_rate_rps"] for r in records if r["offered_rate_rps"] > low]
    if not above:
        return None
    return float(f"{math.sqrt(low * min(above)):.3g}")


def _run_jobs(
    pool: Executor | None,
    spec: ExperimentSpec,
    jobs: list[tuple[str, float]],
    on_done: OnDone | None,
) -> dict[tuple[str, float], dict]:
    results = {}
    if pool is None:
        experiment = _experiment(spec)
        for policy, rate in jobs:
            results[(policy, rate)] = summarize(experiment.run(policy, rate), rate)
            if on_done:
                on_done(policy, rate)
        return results
    futures = {pool.submit(_run_one, p, r): (p, r) for p, r in jobs}
    for future in as_completed(futures):
        results[futures[future]] = future.result()
        if on_done:
            on_done(*futures[future])
    return results


class _NoPool:
    """Stands in for a process pool when one worker is asked for."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _executor(spec: ExperimentSpec, workers: int) -> ProcessPoolExecutor | _NoPool:
    if workers == 1:
        return _NoPool()
    return ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(spec,))


def _experiment(spec: ExperimentSpec) -> Experiment:
    global _worker_experiment
    if _worker_experiment is None or _worker_experiment.spec != spec:
        _worker_experiment = Experiment(spec)
    return _worker_experiment


def _init_worker(spec: ExperimentSpec) -> None:
    _experiment(spec)


def _run_one(policy: str, rate: float) -> dict:
    assert _worker_experiment is not None, "worker initialised"
    return summarize(_worker_experiment.run(policy, rate), rate)
