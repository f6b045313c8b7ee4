"""The discrete-event loop: requests arrive, the orchestrator dispatches, engines run.

Virtual time only moves from one event to the next: an arrival from the trace, or a
stage call finishing on a simulated engine. At each event time the loop first lets
every engine finish what ends by then, then asks the orchestrator for one round and
submits its dispatches, exactly what the real runtime does on wall time.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from aragog.accuracy.profile import AccuracyProfile
from aragog.configs import ConfigSpace
from aragog.engines.simulated import SimulatedEngine
from aragog.orchestrator import EngineView, Orchestrator
from aragog.scheduling.policies import Policy
from aragog.sim.stages import StageLengths

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SimulatedNode:
    """The engines of one node, as the scheduler sees them and as they run."""

    views: tuple[EngineView, ...]
    engines: tuple[SimulatedEngine, ...]


@dataclass(frozen=True)
class SimulationResult:
    """Per request: arrival, finish (NaN if never), configuration run, outcomes."""

    policy: str
    arrival_s: np.ndarray
    finish_s: np.ndarray
    config: np.ndarray
    correct: np.ndarray
    max_config_correct: np.ndarray
    stage_calls_by_model: dict[str, int]
    num_rounds: int
    wall_s: float

    @property
    def completed(self) -> np.ndarray:
        return ~np.isnan(self.finish_s)


def simulate(
    space: ConfigSpace,
    node: SimulatedNode,
    policy: Policy,
    profile: AccuracyProfile,
    arrival_s: np.ndarray,
    input_index: np.ndarray,
    lengths: StageLengths,
    beam_width: int,
    max_time_s: float = math.inf,
) -> SimulationResult:
    """Serve every request of a run under ``policy`` and record what happened.

    Args:
        arrival_s: arrival times, non-decreasing.
        input_index: the profile input each request carries (its accuracy labels).
        lengths: token lengths of every stage call.
        max_time_s: stop at this virtual time; requests not done then are counted as
            not completed.
    """
    started = time.perf_counter()
    orchestrator = Orchestrator({space.workflow.name: space}, node.views, beam_width)
    num_requests = len(arrival_s)
    num_agents = space.num_agents
    finish_s = np.full(num_requests, np.nan)
    config = np.full(num_requests, -1, dtype=np.int64)
    calls_by_model = {v.model: 0 for v in node.views}
    engines = node.engines
    heap: list[tuple[float, int, int]] = []  # (time, version, engine)
    versions = [0] * len(engines)
    next_arrival = 0

    def push(e: int) -> None:
        versions[e] += 1
        t = engines[e].next_event_s()
        if t is not None:
            heapq.heappush(heap, (t, versions[e], e))

    while True:
        # The next event time: the earlier of the next arrival and the next finish.
        while heap and heap[0][1] != versions[heap[0][2]]:
            heapq.heappop(heap)
        t_arrival = arrival_s[next_arrival] if next_arrival < num_requests else math.inf
        t_finish = heap[0][0] if heap else math.inf
        now = min(t_arrival, t_finish)
        if now == math.inf or now > max_time_s:
            break

        # Finish every stage call that ends by now (several engines may tie).
        while heap and heap[0][0] <= now:
            _, version, e = heapq.heappop(heap)
            if version != versions[e]:
                continue
            for call_id, finished_s in engines[e].advance(now):
                request, agent = divmod(call_id, num_agents)
                completion = orchestrator.finish_stage(request, agent)
                if completion is not None:
                    finish_s[request] = finished_s
                    config[request] = completion.config
            push(e)

        # Admit every arrival due by now, at the tail of the meta-queue.
        while next_arrival < num_requests and arrival_s[next_arrival] <= now:
            r = next_arrival
            viable = policy.viable_set(int(input_index[r]))
            orchestrator.add_request(r, space.workflow.name, viable)
            next_arrival += 1

        # One scheduling round; submit what it dispatches.
        touched = set()
        for d in orchestrator.schedule():
            req = d.request_id
            assert isinstance(req, int), "the simulator numbers its requests"
            engines[d.engine].submit(
                now,
                req * num_agents + d.agent,
                int(lengths.prompt_tokens[req, d.agent]),
                int(lengths.output_tokens[req, d.agent]),
            )
            calls_by_model[d.model] += 1
            touched.add(d.engine)
        for e in touched:
            push(e)

    # Outcomes of the configuration each completed request ran.
    done = config >= 0
    inputs = np.asarray(input_index)
    correct = np.zeros(num_requests, dtype=bool)
    correct[done] = profile.correct[inputs[done], config[done]]
    max_correct = profile.correct[inputs, space.most_expensive]
    wall_s = time.perf_counter() - started
    logger.info(
        "%s: %d of %d requests done, %d rounds, %.2f s",
        policy.name,
        int(done.sum()),
        num_requests,
        orchestrator.num_rounds,
        wall_s,
    )
    return SimulationResult(
        policy=policy.name,
        arrival_s=np.asarray(arrival_s, dtype=float),
        finish_s=finish_s,
        config=config,
        correct=correct,
        max_config_correct=max_correct,
        stage_calls_by_model=calls_by_model,
        num_rounds=orchestrator.num_rounds,
        wall_s=wall_s,
    )
