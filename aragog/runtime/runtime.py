"""The runtime: the asyncio shell that drives the orchestrator on wall time.

The simulator (:mod:`aragog.sim.loop`) drives the orchestrator on virtual time with
simulated engines; this module drives the very same state machine with real engines
(in-process vLLM, remote endpoints), so every decision a simulation shows is made
here by the same code. The loop is the simulator's, event for event:

- a run arrives: the router gives its viable set, it joins the meta-queue's tail (a
  learned router first embeds the run's text in a worker thread, then settles the
  viable set within the run's expected wait for its first stage, as the method does);
- a stage call finishes: the orchestrator releases the next stages (or completes the
  run), the engine's monitor records what it measured;
- after either, one scheduling round; its dispatches start stage calls.

One scheduler task runs the rounds (a round is microseconds in the compiled core);
everything else is one task per run (the caller's) and one per stage call. Before a
round the monitors' occupancy and curves are fed to the orchestrator.

Guarantees: a run is refused at once (:class:`QueueFull`, :class:`InvalidInput`, ...)
or accepted; an accepted run ends with a :class:`RunResult` or a :class:`RunFailed`
(an engine error or timeout fails the run with the engine's message, never a hang);
cancelling the task awaiting :meth:`Runtime.run` aborts the run's stage calls in
their engines and drops it from the meta-queue.

Embedded use::

    async with Runtime.from_config("deploy.yaml") as rt:
        result = await rt.run("self-refine", {"question": "..."})
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import logging
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from aragog.engines.base import Engine, StageOutput
from aragog.orchestrator import Dispatch, EngineView, Orchestrator
from aragog.runtime.deploy import Deployment, EngineEntry, ServedWorkflow
from aragog.runtime.engines import build_engine, start_engines
from aragog.runtime.errors import (
    EngineStartError,
    InvalidInput,
    NotReady,
    QueueFull,
    RunFailed,
    UnknownWorkflow,
)
from aragog.runtime.monitor import (
    EngineMonitor,
    ThroughputProfile,
    load_throughput_profile,
)
from aragog.runtime.prompts import normalize_input
from aragog.runtime.results import RunResult, StageResult
from aragog.runtime.routing import (
    Route,
    WorkflowRouter,
    build_learned,
    build_router,
)

logger = logging.getLogger(__name__)

# Without events, the scheduler still wakes this often: the monitors' measurements
# (engine-reported load, corrected curves) may free capacity no event announced.
TICK_S = 0.25

# The expected wait for a first stage (a learned router's budget) is a moving average
# of measured ones; each new measurement has this weight.
FIRST_WAIT_WEIGHT = 0.2


class RuntimeState(enum.Enum):
    CREATED = "created"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class RuntimeObserver(Protocol):
    """What the runtime reports as it works (the server turns it into metrics)."""

    def on_run_end(self, workflow: str, outcome: str, latency_s: float) -> None:
        """A run ended: ``outcome`` is completed, failed, cancelled or refused."""
        ...

    def on_stage_end(self, workflow: str, stage: StageResult) -> None: ...

    def on_dispatch(self, model: str, engine: str) -> None: ...

    def on_round(self, round_s: float, num_dispatched: int) -> None: ...


class _NoObserver:
    def on_run_end(self, workflow: str, outcome: str, latency_s: float) -> None:
        pass

    def on_stage_end(self, workflow: str, stage: StageResult) -> None:
        pass

    def on_dispatch(self, model: str, engine: str) -> None:
        pass

    def on_round(self, round_s: float, num_dispatched: int) -> None:
        pass


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """One engine as the runtime sees it now (for health checks and metrics)."""

    name: str
    model: str
    num_in_flight: int
    saturation_batch: int
    num_running: int | None
    num_waiting: int | None
    kv_cache_usage: float | None


@dataclass(frozen=True, slots=True)
class OverheadStats:
    """Totals of aragog's own work, since start (what the overhead benchmark reads).

    Attributes:
        num_runs_routed: runs the router gave a viable set.
        route_s: seconds spent routing them (input checks, hashing, viable set),
            admitting them to the meta-queue included; a learned router's embedding
            is not in it (see ``embed_s``).
        route_cpu_s: the CPU time of the same (wall time minus preemption: on a
            machine whose cores the engines also use, the two differ).
        num_rounds: scheduling rounds that ran the core.
        round_s: seconds spent scheduling: feeding the monitors' figures, gathering
            ready items, the core's round, narrowing viable sets; calls that found
            nothing to place included.
        round_cpu_s: the CPU time of the same.
        num_stages: stage calls that finished.
        dispatch_s: seconds from a round's decision to the engine call, plus from the
            engine's answer to the orchestrator knowing it, over those calls.
        engine_s: seconds the engines took for those calls.
        num_runs_embedded: runs whose text a learned router embedded.
        embed_s: seconds those embeddings took in the worker thread (off the event
            loop, so concurrent with scheduling and engine work).
    """

    num_runs_routed: int
    route_s: float
    route_cpu_s: float
    num_rounds: int
    round_s: float
    round_cpu_s: float
    num_stages: int
    dispatch_s: float
    engine_s: float
    num_runs_embedded: int = 0
    embed_s: float = 0.0

    def per_stage(self) -> dict[str, float]:
        """Each cost per finished stage call, in microseconds, and aragog's share.

        Routing is per run, so a run's routing is spread over its stage calls; a
        round places several calls, so its time is spread over them too. The share
        is aragog's three costs over the engines' time, per stage call.
        """
        n = max(1, self.num_stages)
        route_us = self.route_s / n * 1e6
        round_us = self.round_s / n * 1e6
        dispatch_us = self.dispatch_s / n * 1e6
        engine_us = self.engine_s / n * 1e6
        overhead_us = route_us + round_us + dispatch_us
        return {
            "route_us": route_us,
            "round_us": round_us,
            "dispatch_us": dispatch_us,
            "overhead_us": overhead_us,
            "engine_us": engine_us,
            "overhead_share": overhead_us / engine_us if engine_us > 0 else math.nan,
            "round_us_mean": self.round_s / max(1, self.num_rounds) * 1e6,
            "route_cpu_us": self.route_cpu_s / n * 1e6,
            "round_cpu_us": self.round_cpu_s / n * 1e6,
            "embed_us_per_run": self.embed_s / max(1, self.num_runs_embedded) * 1e6,
        }


class _Counters:
    """Running totals behind :class:`OverheadStats`."""

    __slots__ = (
        "num_runs_routed",
        "route_s",
        "route_cpu_s",
        "num_rounds",
        "round_s",
        "round_cpu_s",
        "num_stages",
        "dispatch_s",
        "engine_s",
        "num_runs_embedded",
        "embed_s",
    )

    def __init__(self) -> None:
        self.num_runs_routed = self.num_rounds = self.num_stages = 0
        self.route_s = self.route_cpu_s = self.round_s = self.round_cpu_s = 0.0
        self.dispatch_s = self.engine_s = 0.0
        self.num_runs_embedded = 0
        self.embed_s = 0.0


class _Run:
    """The mutable state of one accepted run."""

    __slots__ = (
        "id",
        "served",
        "router",
        "fields",
        "input_text",
        "profile_input",
        "route",
        "max_tokens",
        "arrived_s",
        "ready_s",
        "outputs",
        "stages",
        "tasks",
        "future",
        "closed",
    )

    def __init__(
        self,
        run_id: str,
        served: ServedWorkflow,
        router: WorkflowRouter,
        fields: dict[str, str],
        input_text: str,
        profile_input: int,
        max_tokens: list[int],
        arrived_s: float,
    ) -> None:
        num_agents = served.workflow.num_agents
        self.id = run_id
        self.served = served
        self.router = router
        self.fields = fields
        self.input_text = input_text
        self.profile_input = profile_input
        # Set when the run joins the meta-queue (at once, or once a learned router
        # has settled its viable set).
        self.route: Route | None = None
        self.max_tokens = max_tokens
        self.arrived_s = arrived_s
        self.ready_s = [arrived_s] * num_agents
        self.outputs: dict[str, str] = {}
        self.stages: list[StageResult | None] = [None] * num_agents
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.future: asyncio.Future[RunResult] = (
            asyncio.get_running_loop().create_future()
        )
        self.closed = False


class Runtime:
    """Serve a deployment's workflows on its engines (see the module note).

    Args:
        deployment: a loaded deployment (:func:`aragog.runtime.deploy.load_deployment`).
        engines: engines to use instead of building them from the deployment, in the
            deployment's engine order (tests and benchmarks pass their own).
        observer: receives run, stage and round events (the server's metrics).
    """

    def __init__(
        self,
        deployment: Deployment,
        engines: Sequence[Engine] | None = None,
        observer: RuntimeObserver | None = None,
    ) -> None:
        if engines is not None and len(engines) != len(deployment.engines):
            raise ValueError(
                f"expected {len(deployment.engines)} engines, got {len(engines)}"
            )
        self.deployment = deployment
        self._given_engines = list(engines) if engines is not None else None
        self._observer: RuntimeObserver = observer or _NoObserver()
        self._state = RuntimeState.CREATED
        self._failure: str | None = None
        self._engines: list[Engine] = []
        self._monitors: list[EngineMonitor] = []
        self._routers: dict[str, WorkflowRouter] = {}
        self._orchestrator: Orchestrator | None = None
        self._views: list[EngineView] = []
        self._runs: dict[str, _Run] = {}
        self._wake = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._counters = _Counters()
        # Learned routers embed texts here: one thread, so the embedding model and
        # its cache are never used by two threads at once.
        self._embed_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._first_wait_s = 0.0

    @classmethod
    def from_config(
        cls,
        path: str | Path,
        observer: RuntimeObserver | None = None,
        routers: Sequence[str | Path] = (),
    ) -> Runtime:
        """A runtime for the deployment file at ``path`` (not started yet).

        Args:
            routers: learned router files (``aragog router train``), each routing
                the runs of the workflow it was trained for, in place of the
                deployment's routing.

        Raises:
            DeploymentError: the file, or a router file, is invalid (one line naming
                the file and field).
        """
        from aragog.runtime.deploy import load_deployment, with_learned_routers

        deployment = load_deployment(path)
        if routers:
            deployment = with_learned_routers(deployment, [str(r) for r in routers])
        return cls(deployment, observer=observer)

    # --- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    @property
    def state(self) -> RuntimeState:
        return self._state

    @property
    def failure(self) -> str | None:
        """Why the runtime failed to start, when it did."""
        return self._failure

    async def start(self) -> None:
        """Build the routers, start every engine (concurrently), begin scheduling.

        Cancelling the caller does not leave engines behind: the engines still
        starting finish starting, then everything is shut down.

        Raises:
            ProfileError: a router's profile cannot be read or does not fit.
            EngineStartError: an engine failed to start; the others are shut down.
        """
        if self._state is not RuntimeState.CREATED:
            raise NotReady(f"runtime: start() called when {self._state.value}")
        self._state = RuntimeState.STARTING
        self._starting = asyncio.ensure_future(self._start())
        try:
            await asyncio.shield(self._starting)
        except asyncio.CancelledError:
            await asyncio.shield(self.shutdown())
            raise
        except BaseException as exc:
            self._failure = str(exc)
            self._state = RuntimeState.FAILED
            await self._stop_engines()
            raise

    async def shutdown(self) -> None:
        """Fail every run still in the system, stop scheduling, stop every engine.

        Safe to call more than once and at any state; waits for engines that are
        still starting, so that none is left running.
        """
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._stopping)

    async def _start(self) -> None:
        began_s = time.monotonic()

        # Routers and curves first: a bad file fails before any engine is started.
        dep = self.deployment
        embedders: dict[tuple, Any] = {}
        for name, served in dep.workflows.items():
            learned = None
            if served.learned_router_path is not None:
                learned = build_learned(
                    served.learned_router_path, dep.router.embedding_model, embedders
                )
            self._routers[name] = build_router(
                served.space,
                served.profile_path,
                dep.router.default,
                dep.router.num_inputs,
                dep.router.seed,
                dep.served_models,
                learned,
            )
        await self._load_embedders()

        profile = None
        if dep.throughput_profile is not None:
            profile = load_throughput_profile(dep.throughput_profile)

        # Engines, at once where they share no GPU; one failure stops the others.
        engines = self._given_engines or [build_engine(e) for e in dep.engines]
        self._engines = engines
        results = await start_engines(engines, dep.engines)
        failed = [(e, r) for e, r in zip(engines, results, strict=True) if r]
        if failed:
            engine, exc = failed[0]
            raise EngineStartError(
                f"{dep.path}: engine {engine.name!r} failed to start: {exc} "
                f"({len(failed)} of {len(engines)} engines failed)"
            )

        # Monitors, the orchestrator over their views, and the scheduler task.
        self._monitors = [
            _build_monitor(e, entry, dep, profile)
            for e, entry in zip(engines, dep.engines, strict=True)
        ]
        spaces = {name: w.space for name, w in dep.workflows.items()}
        views = [m.view() for m in self._monitors]
        self._orchestrator = Orchestrator(spaces, views, dep.beam_width)
        self._views = list(views)
        if self._state is not RuntimeState.STARTING:
            logger.info(
                "engines up after %.1f s, but the runtime is stopping",
                time.monotonic() - began_s,
            )
            return
        self._scheduler = asyncio.create_task(self._schedule_forever())
        self._state = RuntimeState.READY
        logger.info(
            "runtime ready: %d engines, %d workflows, started in %.1f s",
            len(engines),
            len(self._routers),
            time.monotonic() - began_s,
        )

    async def _shutdown(self) -> None:
        began_s = time.monotonic()
        if self._state is not RuntimeState.FAILED:
            self._state = RuntimeState.STOPPING

        # Let engines that are starting come up, so that they can be stopped.
        if self._starting is not None and not self._starting.done():
            logger.info("shutdown: waiting for engines that are still starting")
            await asyncio.gather(self._starting, return_exceptions=True)

        # Fail the runs still in the system, then stop scheduling.
        for run in list(self._runs.values()):
            self._close(run, NotReady("the runtime is shutting down"), "failed")
        if self._scheduler is not None:
            self._wake.set()
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)

        await self._stop_engines()
        if self._state is not RuntimeState.FAILED:
            self._state = RuntimeState.STOPPED
        logger.info("runtime stopped in %.1f s", time.monotonic() - began_s)

    async def _load_embedders(self) -> None:
        """Load the learned routers' embedding models in the embedding thread."""
        learned = [r.learned for r in self._routers.values() if r.learned is not None]
        if not learned:
            return
        self._embed_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="aragog-embed"
        )
        loop = asyncio.get_running_loop()
        for routing in learned:
            await loop.run_in_executor(self._embed_pool, routing.load)

    async def _stop_engines(self) -> None:
        if self._embed_pool is not None:
            self._embed_pool.shutdown(wait=False, cancel_futures=True)
        results = await asyncio.gather(
            *(e.shutdown() for e in self._engines), return_exceptions=True
        )
        for engine, result in zip(self._engines, results, strict=True):
            if isinstance(result, BaseException):
                logger.warning("engine %s: shutdown failed: %s", engine.name, result)

    # --- runs ------------------------------------------------------------------------

    async def run(
        self,
        workflow: str,
        input: Mapping[str, Any],
        *,
        profile_input: int | None = None,
        max_tokens: Mapping[str, int] | None = None,
    ) -> RunResult:
        """Run ``workflow`` on ``input`` and return its result.

        Args:
            workflow: a served workflow's name.
            input: the run's named input fields (see :mod:`aragog.runtime.prompts`).
            profile_input: the accuracy-profile row to route by; by default a hash
                of ``input`` picks one (benchmarks replaying a profile pass it).
            max_tokens: per-agent caps on output tokens for this run, below the
                workflow's own (benchmarks replaying a trace's lengths pass them).

        Raises:
            NotReady: the engines are starting, or the runtime is stopping.
            UnknownWorkflow: the deployment does not serve ``workflow``.
            InvalidInput: the input lacks a field a template reads, or an argument
                is out of range.
            QueueFull: the meta-queue holds ``max_num_queued_runs`` runs.
            RunFailed: an accepted run failed (an engine error or timeout).
            asyncio.CancelledError: the caller was cancelled; the run's stage calls
                were aborted and it left the meta-queue.
        """
        run = self._admit(workflow, input, profile_input, max_tokens)
        try:
            if run.route is None:
                await self._route_learned(run)
            return await run.future
        except asyncio.CancelledError:
            if not run.closed:
                self._close(run, None, "cancelled")
            raise

    def _admit(
        self,
        workflow: str,
        input: Mapping[str, Any],
        profile_input: int | None,
        max_tokens: Mapping[str, int] | None,
    ) -> _Run:
        began_s = time.perf_counter()
        began_cpu_s = time.thread_time()
        now_s = time.monotonic()

        # Refuse what cannot be served: not ready, unknown, malformed, no room.
        if self._state is not RuntimeState.READY:
            raise NotReady(f"the runtime is {self._state.value}, not ready")
        served = self.deployment.workflows.get(workflow)
        if served is None:
            raise UnknownWorkflow(
                f"unknown workflow {workflow!r} (served: "
                f"{', '.join(self.deployment.workflows)})"
            )
        fields, text = normalize_input(input, served.templates, workflow)
        caps = _max_tokens(served, max_tokens)
        if len(self._runs) >= self.deployment.max_num_queued_runs:
            self._observer.on_run_end(workflow, "refused", 0.0)
            raise QueueFull(
                f"queue full: {len(self._runs)} runs are queued or running, the "
                "deployment's limit (scheduler.max_num_queued_runs); retry later"
            )

        # The oracle routes at once; a learned router embeds the text first (in
        # run(), off the event loop), while the run holds its place in the queue.
        router = self._routers[workflow]
        run_id = uuid.uuid4().hex
        if router.learned is not None:
            row = router.row(fields, profile_input)
            run = _Run(run_id, served, router, fields, text, row, caps, now_s)
            self._runs[run_id] = run
            return run
        route = router.route(fields, profile_input)
        run = _Run(
            run_id, served, router, fields, text, route.profile_input, caps, now_s
        )
        self._enqueue(run, route)
        self._count_routing(began_s, began_cpu_s)
        return run

    async def _route_learned(self, run: _Run) -> None:
        """Embed the run's text in the embedding thread, settle its viable set
        within its budget, and queue it; a failure fails the run."""
        router = run.router
        learned = router.learned
        assert learned is not None and self._embed_pool is not None

        # The embedding, off the event loop.
        began_s = time.perf_counter()
        try:
            features = await asyncio.get_running_loop().run_in_executor(
                self._embed_pool, learned.embed, run.input_text
            )
        except asyncio.CancelledError:
            # A shutdown cancels pending embeddings after failing their runs: the
            # run's future says why. Otherwise the caller was cancelled.
            if run.closed:
                return
            raise
        except Exception as exc:
            logger.warning("run %s: embedding failed: %s", run.id, exc)
            message = f"the learned router could not embed the input: {exc}"
            self._close(run, RunFailed(message), "failed")
            return
        if run.closed:
            return
        counters = self._counters
        counters.num_runs_embedded += 1
        counters.embed_s += time.perf_counter() - began_s

        # The heads and the lattice, within what is left of the expected wait.
        began_s = time.perf_counter()
        began_cpu_s = time.thread_time()
        budget_s = self.routing_budget_s(time.monotonic() - run.arrived_s)
        try:
            route = router.route_learned(run.profile_input, features, budget_s)
        except RunFailed as exc:
            self._close(run, exc, "failed")
            return
        self._enqueue(run, route)
        self._count_routing(began_s, began_cpu_s)

    def routing_budget_s(self, waited_s: float) -> float:
        """A learned router's time for a run that has waited ``waited_s``: what is
        left of the expected wait for a first stage, and never below the
        deployment's ``router.min_budget_ms``."""
        floor_s = self.deployment.router.min_budget_s
        return max(floor_s, self._first_wait_s - waited_s)

    def _enqueue(self, run: _Run, route: Route) -> None:
        """Give the run its viable set, join the meta-queue's tail, wake the
        scheduler."""
        assert self._orchestrator is not None
        run.route = route
        self._orchestrator.add_request(run.id, run.served.name, route.viable)
        self._runs[run.id] = run
        self._wake.set()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "run %s (%s): %s router, profile input %d, %d viable configurations",
                run.id,
                run.served.name,
                route.router,
                route.profile_input,
                route.viable.size,
            )

    def _count_routing(self, began_s: float, began_cpu_s: float) -> None:
        counters = self._counters
        counters.num_runs_routed += 1
        counters.route_s += time.perf_counter() - began_s
        counters.route_cpu_s += time.thread_time() - began_cpu_s

    def _close(self, run: _Run, error: Exception | None, outcome: str) -> None:
        """End a run that did not complete: abort its calls, leave the queue."""
        if run.closed:
            return
        run.closed = True
        del self._runs[run.id]
        assert self._orchestrator is not None
        if run.route is not None:
            self._orchestrator.cancel(run.id)
        current = asyncio.current_task()
        for task in run.tasks.values():
            if task is not current:
                task.cancel()
        if error is not None and not run.future.done():
            run.future.set_exception(error)
        latency_s = time.monotonic() - run.arrived_s
        self._observer.on_run_end(run.served.name, outcome, latency_s)
        logger.info(
            "run %s (%s) %s after %.2f s, %d stage calls aborted",
            run.id,
            run.served.name,
            outcome,
            latency_s,
            sum(not t.done() for t in run.tasks.values()),
        )
        self._wake.set()

    # --- scheduling and stage calls -------------------------------------------------

    async def _schedule_forever(self) -> None:
        # The loop ends on the state, not only on cancellation: on Python 3.10 and
        # 3.11, wait_for swallows a cancel that arrives as its awaitable completes
        # (a run's last stage sets the wake event just before a shutdown).
        while self._state in (RuntimeState.READY, RuntimeState.STARTING):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_S)
            self._wake.clear()
            try:
                self._round()
            except Exception:
                # A bug here would otherwise stall every run silently.
                logger.exception("scheduling round failed; failing the queued runs")
                for run in list(self._runs.values()):
                    self._close(run, RunFailed("internal scheduling error"), "failed")

    def _round(self) -> None:
        orchestrator = self._orchestrator
        assert orchestrator is not None
        if not self._runs:
            return

        # Feed what the monitors measured, then one round in the core.
        began_s = time.perf_counter()
        began_cpu_s = time.thread_time()
        for e, monitor in enumerate(self._monitors):
            orchestrator.set_occupancy(e, monitor.occupancy())
        views = [m.view() for m in self._monitors]
        # A monitor hands back the same view until its curve moves by over 5%.
        if any(a is not b for a, b in zip(views, self._views, strict=True)):
            orchestrator.set_engine_views(views)
            self._views = views
        num_rounds = orchestrator.num_rounds
        dispatches = orchestrator.schedule()
        decided_s = time.perf_counter()

        # Every call costs; only one that ran the core counts as a round (as in the
        # simulator: no free slot or no ready stage means no round).
        counters = self._counters
        counters.round_s += decided_s - began_s
        counters.round_cpu_s += time.thread_time() - began_cpu_s
        if orchestrator.num_rounds != num_rounds:
            counters.num_rounds += 1
            self._observer.on_round(decided_s - began_s, len(dispatches))

        # Start the stage calls it dispatched.
        now_s = time.monotonic()
        for d in dispatches:
            self._dispatch(d, now_s, decided_s)

    def _dispatch(self, d: Dispatch, now_s: float, decided_s: float) -> None:
        run = self._runs[str(d.request_id)]
        served = run.served
        agent = served.workflow.agents[d.agent]
        prompt = served.templates[d.agent].render(
            run.input_text, run.fields, run.outputs
        )
        engine = self._engines[d.engine]
        self._monitors[d.engine].on_dispatch()
        self._observer.on_dispatch(d.model, engine.name)
        if not agent.upstream:
            # A first stage: what it waited since arrival feeds the routing budget.
            waited_s = now_s - run.arrived_s
            self._first_wait_s += FIRST_WAIT_WEIGHT * (waited_s - self._first_wait_s)
        run.tasks[d.agent] = asyncio.create_task(
            self._stage(run, d, prompt, agent.temperature, now_s, decided_s),
            name=f"stage {run.id}:{agent.name}",
        )

    async def _stage(
        self,
        run: _Run,
        d: Dispatch,
        prompt: str,
        temperature: float,
        dispatched_s: float,
        decided_s: float,
    ) -> None:
        engine = self._engines[d.engine]
        monitor = self._monitors[d.engine]
        agent = run.served.workflow.agents[d.agent]
        timeout_s = self.deployment.stage_timeout_s

        # The engine call; cancelling this task aborts it in the engine.
        called_s = time.perf_counter()
        started_s = time.monotonic()
        try:
            output = await asyncio.wait_for(
                engine.generate(
                    f"{run.id}-{d.agent}", prompt, run.max_tokens[d.agent], temperature
                ),
                timeout_s,
            )
        except asyncio.CancelledError:
            monitor.on_abort()
            raise
        except asyncio.TimeoutError:
            monitor.on_abort()
            message = f"stage {agent.name} on engine {engine.name} timed out after "
            self._close(run, RunFailed(f"{message}{timeout_s:g} s"), "failed")
            return
        except Exception as exc:
            monitor.on_abort()
            logger.warning("run %s: stage %s failed: %s", run.id, agent.name, exc)
            message = f"stage {agent.name} on engine {engine.name} failed: {exc}"
            self._close(run, RunFailed(message), "failed")
            return
        answered_s = time.perf_counter()
        run_s = time.monotonic() - started_s
        monitor.on_finish(run_s, output.num_prompt_tokens, output.num_output_tokens)

        # Record the stage, release the next ones, and finish the run if it was last.
        if run.closed:
            return
        stage = StageResult(
            agent=agent.name,
            model=d.model,
            engine=engine.name,
            queue_wait_s=max(0.0, dispatched_s - run.ready_s[d.agent]),
            run_s=run_s,
            num_prompt_tokens=output.num_prompt_tokens,
            num_output_tokens=output.num_output_tokens,
        )
        try:
            self._finish_stage(run, d, output, stage)
        except Exception as exc:
            # A bug here must fail the run, not leave its caller waiting forever.
            logger.exception("run %s: recording stage %s failed", run.id, agent.name)
            self._close(
                run,
                RunFailed(f"internal error after stage {agent.name}: {exc}"),
                "failed",
            )
            return
        counters = self._counters
        counters.num_stages += 1
        counters.dispatch_s += (called_s - decided_s) + (
            time.perf_counter() - answered_s
        )
        counters.engine_s += answered_s - called_s

    def _finish_stage(
        self, run: _Run, d: Dispatch, output: StageOutput, stage: StageResult
    ) -> None:
        assert self._orchestrator is not None
        workflow = run.served.workflow
        run.outputs[stage.agent] = output.text
        run.stages[d.agent] = stage
        self._observer.on_stage_end(workflow.name, stage)
        completion = self._orchestrator.finish_stage(run.id, d.agent)
        now_s = time.monotonic()
        for down in workflow.downstream_ids[d.agent]:
            run.ready_s[down] = now_s
        self._wake.set()
        if completion is None:
            return

        # The last stage: build the result and hand it to the waiting caller.
        run.closed = True
        del self._runs[run.id]
        config = completion.config
        route = run.route
        assert route is not None
        correct, correct_max = run.router.outcome(route.profile_input, config)
        stages = tuple(s for s in run.stages if s is not None)
        latency_s = now_s - run.arrived_s
        result = RunResult(
            run_id=run.id,
            workflow=workflow.name,
            output=run.outputs[workflow.agents[_last_sink(run.served)].name],
            outputs=MappingProxyType(dict(run.outputs)),
            stages=stages,
            config=config,
            profile_input=route.profile_input,
            num_viable=int(route.viable.size),
            profile_correct=correct,
            profile_correct_max_config=correct_max,
            latency_s=latency_s,
            router=route.router,
            router_complete=route.complete,
        )
        if not run.future.done():
            run.future.set_result(result)
        self._observer.on_run_end(workflow.name, "completed", latency_s)

    # --- what the server reads ------------------------------------------------------

    @property
    def num_queued(self) -> int:
        """Runs accepted and not finished (waiting or running)."""
        return len(self._runs)

    @property
    def num_rounds(self) -> int:
        return self._counters.num_rounds

    def engines(self) -> list[EngineStatus]:
        """Every engine's in-flight calls and reported load (empty before start)."""
        statuses = []
        for engine, monitor in zip(self._engines, self._monitors, strict=False):
            load = engine.load()
            statuses.append(
                EngineStatus(
                    name=engine.name,
                    model=engine.model,
                    num_in_flight=monitor.num_in_flight,
                    saturation_batch=monitor.view().saturation_batch,
                    num_running=load.num_running,
                    num_waiting=load.num_waiting,
                    kv_cache_usage=load.kv_cache_usage,
                )
            )
        return statuses

    def engine(self, name: str) -> Engine:
        """The engine named ``name`` (started runtimes only).

        Raises:
            KeyError: no engine has that name.
        """
        for engine in self._engines:
            if engine.name == name:
                return engine
        raise KeyError(f"no engine named {name!r}")

    def router(self, workflow: str) -> WorkflowRouter:
        """The router of a served workflow (started runtimes only)."""
        return self._routers[workflow]

    def overhead(self) -> OverheadStats:
        """Totals of aragog's own work since start (see :class:`OverheadStats`)."""
        # The counters carry exactly the fields of OverheadStats.
        c = self._counters
        return OverheadStats(**{name: getattr(c, name) for name in _Counters.__slots__})


def _max_tokens(served: ServedWorkflow, caps: Mapping[str, int] | None) -> list[int]:
    limits = [a.output.max_tokens for a in served.workflow.agents]
    if not caps:
        return limits
    if not isinstance(caps, Mapping):
        raise InvalidInput("max_tokens: expected an object of agent names to counts")
    names = served.workflow.agent_names
    for name, cap in caps.items():
        if name not in names:
            raise InvalidInput(
                f"max_tokens.{name}: no such agent in {served.name!r} (agents: "
                f"{', '.join(names)})"
            )
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise InvalidInput(
                f"max_tokens.{name}: expected a count >= 1, found {cap!r}"
            )
        i = names.index(name)
        limits[i] = min(limits[i], cap)
    return limits


def _last_sink(served: ServedWorkflow) -> int:
    downstream = served.workflow.downstream_ids
    return max(i for i, d in enumerate(downstream) if not d)


def _build_monitor(
    engine: Engine,
    entry: EngineEntry,
    dep: Deployment,
    profile: ThroughputProfile | None,
) -> EngineMonitor:
    """The engine's monitor: its measured curve if the profile has one, else the
    latency model's; capped by the engine's batch limit where the file sets one."""
    curve = profile.curve_for(entry.name, entry.model) if profile else None
    max_num_seqs = entry.vllm.max_num_seqs if entry.vllm is not None else None
    return EngineMonitor(
        engine,
        dep.family.model(entry.model),
        dep.family.gpu,
        curve=curve,
        max_num_seqs=max_num_seqs,
    )
