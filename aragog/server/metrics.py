"""Prometheus metrics of one server, in a registry of its own.

Counters and histograms are fed by the runtime's events (:class:`ServerMetrics` is a
:class:`aragog.runtime.runtime.RuntimeObserver`); gauges of the present (queue length,
engine occupancy and load) are read from the runtime when Prometheus scrapes. Nothing
is registered globally: two servers in one process (as in tests) never share a
metric, and importing this module creates nothing.

Exposed, all prefixed ``aragog_``:

- ``runs_total{workflow, outcome}``: completed, failed, cancelled or refused runs;
- ``stage_calls_total{model, engine}``: stage calls dispatched;
- ``run_duration_seconds{workflow}``: latency of completed runs;
- ``stage_duration_seconds{model}`` and ``stage_queue_wait_seconds{model}``: each
  finished stage call's run time and the time it waited to be dispatched;
- ``scheduling_round_seconds``: time of each scheduling round;
- ``queue_length``: runs in the meta-queue (waiting or running);
- ``engine_occupancy{engine, model}``: stage calls in flight on each engine, and
  ``engine_saturation_batch``, ``engine_running``, ``engine_waiting``,
  ``engine_kv_cache_usage`` where the engine reports them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from aragog.runtime.results import StageResult
    from aragog.runtime.runtime import Runtime

# Wide enough for CPU test engines (seconds per call) and GPU runs (minutes per run).
LATENCY_BUCKETS_S = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    float("inf"),
)
# A round is microseconds in the compiled core; milliseconds would be a problem.
ROUND_BUCKETS_S = (
    5e-6,
    1e-5,
    2.5e-5,
    5e-5,
    1e-4,
    2.5e-4,
    5e-4,
    1e-3,
    5e-3,
    0.025,
    float("inf"),
)


class ServerMetrics:
    """The server's metrics; pass it as the runtime's observer, then :meth:`watch`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs = Counter(
            "aragog_runs", "Runs by outcome.", ["workflow", "outcome"], registry=r
        )
        self.stage_calls = Counter(
            "aragog_stage_calls",
            "Stage calls dispatched, by model and engine.",
            ["model", "engine"],
            registry=r,
        )
        self.run_duration = Histogram(
            "aragog_run_duration_seconds",
            "Latency of completed runs, from admission to the last stage's answer.",
            ["workflow"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.stage_duration = Histogram(
            "aragog_stage_duration_seconds",
            "Run time of finished stage calls, from dispatch to the engine's answer.",
            ["model"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.stage_queue_wait = Histogram(
            "aragog_stage_queue_wait_seconds",
            "Time finished stage calls waited, from ready to dispatched.",
            ["model"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.round_duration = Histogram(
            "aragog_scheduling_round_seconds",
            "Time of one scheduling round.",
            buckets=ROUND_BUCKETS_S,
            registry=r,
        )

    def watch(self, runtime: Runtime) -> None:
        """Read the runtime's queue and engines at every scrape."""
        self.registry.register(_RuntimeCollector(runtime))

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)

    # --- RuntimeObserver -----------------------------------------------------------

    def on_run_end(self, workflow: str, outcome: str, latency_s: float) -> None:
        self.runs.labels(workflow, outcome).inc()
        if outcome == "completed":
            self.run_duration.labels(workflow).observe(latency_s)

    def on_stage_end(self, workflow: str, stage: StageResult) -> None:
        self.stage_duration.labels(stage.model).observe(stage.run_s)
        self.stage_queue_wait.labels(stage.model).observe(stage.queue_wait_s)

    def on_dispatch(self, model: str, engine: str) -> None:
        self.stage_calls.labels(model, engine).inc()

    def on_round(self, round_s: float, num_dispatched: int) -> None:
        self.round_duration.observe(round_s)


class _RuntimeCollector(Collector):
    """Gauges read from the runtime at scrape time."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def describe(self) -> list[Metric]:
        # Described by name only, so registering reads nothing from the runtime.
        return [
            GaugeMetricFamily("aragog_queue_length", "Runs in the meta-queue."),
        ]

    def collect(self) -> Iterator[Metric]:
        runtime = self._runtime
        yield GaugeMetricFamily(
            "aragog_queue_length",
            "Runs in the meta-queue (waiting or running).",
            value=runtime.num_queued,
        )
        labels = ["engine", "model"]
        occupancy = GaugeMetricFamily(
            "aragog_engine_occupancy",
            "Stage calls in flight on the engine.",
            labels=labels,
        )
        saturation = GaugeMetricFamily(
            "aragog_engine_saturation_batch",
            "The load past which the engine's throughput stops growing.",
            labels=labels,
        )
        running = GaugeMetricFamily(
            "aragog_engine_running",
            "Requests the engine reports running.",
            labels=labels,
        )
        waiting = GaugeMetricFamily(
            "aragog_engine_waiting",
            "Requests the engine reports waiting.",
            labels=labels,
        )
        kv_cache = GaugeMetricFamily(
            "aragog_engine_kv_cache_usage",
            "Share of the KV cache the engine reports in use.",
            labels=labels,
        )
        for status in runtime.engines():
            values = [status.name, status.model]
            occupancy.add_metric(values, status.num_in_flight)
            saturation.add_metric(values, status.saturation_batch)
            if status.num_running is not None:
                running.add_metric(values, status.num_running)
            if status.num_waiting is not None:
                waiting.add_metric(values, status.num_waiting)
            if status.kv_cache_usage is not None:
                kv_cache.add_metric(values, status.kv_cache_usage)
        yield from (occupancy, saturation, running, waiting, kv_cache)
