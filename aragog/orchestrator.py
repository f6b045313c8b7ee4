"""The orchestrator: the meta-queue and its scheduling rounds, as a state machine.

It has no clock and does no I/O. A shell (the simulator today, the asyncio runtime
later) tells it that a request arrived, that a stage finished, or that an engine's load
changed, and asks it for dispatches; the orchestrator answers with the stage calls to
start now. So the decisions a simulation shows are made by the code that serves.

State per request: its workflow, its viable set (narrowed after every dispatch), and
each agent's status. A request keeps its place in the meta-queue while its stages run,
so a multi-stage request does not go to the tail after every stage.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from itertools import chain

import numpy as np

from aragog import _core
from aragog.configs import ConfigSpace
from aragog.errors import SchedulingError
from aragog.scheduling.round import RoundInput, RoundResult, run_round

logger = logging.getLogger(__name__)

# Items past this many (in meta-queue order) wait for a later round. A round can place
# at most as many stage calls as there are free slots, so a bound far above the total
# saturation batch of a node loses nothing while keeping rounds short under overload.
DEFAULT_MAX_NUM_ITEMS = 2048


class StageStatus(IntEnum):
    BLOCKED = 0  # waiting for an upstream agent
    READY = 1
    RUNNING = 2
    DONE = 3


@dataclass(frozen=True, slots=True)
class EngineView:
    """What the scheduler knows of one engine: its model and its load curve."""

    name: str
    model: str
    saturation_batch: int
    curve_load: np.ndarray
    curve_throughput: np.ndarray


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Start one stage call: agent ``agent`` of ``request_id`` on ``engine``."""

    request_id: Hashable
    agent: int
    engine: int
    model: str


@dataclass(frozen=True, slots=True)
class Completion:
    """A request whose every stage is done, with the configuration it ran."""

    request_id: Hashable
    config: int


class _Request:
    __slots__ = (
        "workflow",
        "space",
        "viable",
        "status",
        "num_blocking",
        "ready",
        "engine",
    )

    def __init__(self, workflow: int, space: ConfigSpace, viable: np.ndarray) -> None:
        wf = space.workflow
        self.workflow = workflow
        self.space = space
        self.viable = viable
        self.num_blocking = [len(up) for up in wf.upstream_ids]
        self.status = [
            StageStatus.READY if n == 0 else StageStatus.BLOCKED
            for n in self.num_blocking
        ]
        # Ready agents in agent order, kept so a round never scans every status.
        self.ready = [a for a, s in enumerate(self.status) if s == StageStatus.READY]
        self.engine = [-1] * wf.num_agents


class Orchestrator:
    """The meta-queue of requests and the scheduling rounds over it.

    Args:
        spaces: the configuration space of every workflow it serves, by name.
        engines: the engines, in the order their indices are reported back.
        beam_width: B of the beam search (1 is greedy).
        round_fn: the round implementation (the compiled core by default; tests may
            pass :func:`aragog.scheduling.reference.schedule_round`).
    """

    def __init__(
        self,
        spaces: Mapping[str, ConfigSpace],
        engines: Sequence[EngineView],
        beam_width: int = 4,
        round_fn: Callable[[RoundInput], RoundResult] = run_round,
        max_num_items: int = DEFAULT_MAX_NUM_ITEMS,
    ) -> None:
        if beam_width < 1:
            raise SchedulingError(f"beam_width must be at least 1, found {beam_width}")
        if not engines:
            raise SchedulingError("an orchestrator needs at least one engine")
        self._workflow_names = list(spaces)
        self._spaces = [spaces[n] for n in self._workflow_names]
        self._engines = list(engines)
        self._beam_width = beam_width
        self._round_fn = round_fn
        self._max_num_items = max_num_items
        self._queue: dict[Hashable, _Request] = {}
        self.occupancy = np.zeros(len(engines), dtype=np.int32)
        self.num_rounds = 0

        # Model indices are positions in one list of every model any engine serves.
        self._model_names = sorted({e.model for e in engines})
        self._build_static_tables()

    # --- what the shell tells the orchestrator -----------------------------------

    def add_request(
        self, request_id: Hashable, workflow: str, viable: np.ndarray
    ) -> None:
        """Put a request at the tail of the meta-queue with its viable set.

        Raises:
            SchedulingError: unknown workflow, a duplicate id, or an empty viable set.
        """
        if workflow not in self._workflow_names:
            raise SchedulingError(f"unknown workflow {workflow!r}")
        if request_id in self._queue:
            raise SchedulingError(f"request {request_id!r} is already queued")
        w = self._workflow_names.index(workflow)
        ids = np.unique(np.asarray(viable, dtype=np.int64))
        space = self._spaces[w]
        if len(ids) == 0 or ids[0] < 0 or ids[-1] >= space.num_configs:
            raise SchedulingError(
                f"request {request_id!r}: the viable set must be non-empty ids in "
                f"[0, {space.num_configs})"
            )
        self._queue[request_id] = _Request(w, space, ids)

    def finish_stage(self, request_id: Hashable, agent: int) -> Completion | None:
        """Record that a dispatched stage finished; release its downstream agents.

        Returns the completion when it was the request's last stage.
        """
        req = self._queue[request_id]
        if req.status[agent] != StageStatus.RUNNING:
            raise SchedulingError(
                f"request {request_id!r}: agent {agent} is not running"
            )
        self.occupancy[req.engine[agent]] -= 1
        req.status[agent] = StageStatus.DONE

        # Release downstream agents whose upstream is now complete.
        wf = req.space.workflow
        for d in wf.downstream_ids[agent]:
            req.num_blocking[d] -= 1
            if req.num_blocking[d] == 0:
                req.status[d] = StageStatus.READY
                bisect.insort(req.ready, d)
        if any(s != StageStatus.DONE for s in req.status):
            return None
        del self._queue[request_id]
        assert len(req.viable) == 1, "a finished request has one configuration left"
        return Completion(request_id, int(req.viable[0]))

    def cancel(self, request_id: Hashable) -> list[int]:
        """Drop a request; returns the engines of its running stages, now released."""
        req = self._queue.pop(request_id)
        engines = [
            req.engine[a] for a, s in enumerate(req.status) if s == StageStatus.RUNNING
        ]
        for e in engines:
            self.occupancy[e] -= 1
        return engines

    def set_engine_views(self, engines: Sequence[EngineView]) -> None:
        """Replace the engines' curves and saturation batches with fresh ones.

        Real engines' measured curves move; the engines themselves (their order and
        models) must stay the same.

        Raises:
            SchedulingError: a different number of engines, or a changed model.
        """
        if len(engines) != len(self._engines):
            raise SchedulingError(
                f"set_engine_views: expected {len(self._engines)} engines, "
                f"found {len(engines)}"
            )
        for old, new in zip(self._engines, engines, strict=True):
            if old.model != new.model:
                raise SchedulingError(
                    f"set_engine_views: engine {old.name!r} serves {old.model!r}, "
                    f"not {new.model!r}"
                )
        self._engines = list(engines)
        self._build_static_tables()

    def set_occupancy(self, engine: int, occupancy: int) -> None:
        """Override an engine's occupancy with a measured value (real engines)."""
        self.occupancy[engine] = occupancy

    # --- what the orchestrator answers -------------------------------------------

    @property
    def num_queued(self) -> int:
        return len(self._queue)

    def free_slots(self) -> np.ndarray:
        saturation = np.array([e.saturation_batch for e in self._engines], np.int32)
        return saturation - self.occupancy

    def schedule(self) -> list[Dispatch]:
        """Run one scheduling round if it can place anything; dispatch its answer."""
        # Gather the ready items in meta-queue order; nothing to do without any.
        free = self.free_slots()
        if not np.any(free > 0):
            return []
        picked = self._ready_requests()
        if not picked:
            return []

        # One round in the core, then narrow each assigned request's viable set.
        round_input = self._round_input(picked, free)
        result = self._round_fn(round_input)
        self.num_rounds += 1
        dispatches = []
        for i, engine in enumerate(result.item_engine.tolist()):
            if engine < 0:
                continue
            req_index = int(round_input.item_request[i])
            agent = int(round_input.item_agent[i])
            request_id, req = picked[req_index]
            dispatches.append(self._start(request_id, req, agent, engine))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "round %d: %d items, %d dispatched, U %.1f, F %.3f",
                self.num_rounds,
                len(round_input.item_request),
                len(dispatches),
                result.utilization_gain,
                result.flexibility,
            )
        return dispatches

    # --- helpers -----------------------------------------------------------------

    def _build_static_tables(self) -> None:
        agent_offsets = [0]
        candidate_offsets = [0]
        candidate_models: list[int] = []
        self._model_digit: list[list[dict[int, int]]] = []
        for space in self._spaces:
            agent_offsets.append(agent_offsets[-1] + space.num_agents)
            digits = []
            for family_ids in space.agent_models:
                # The digit order is the space's: cheapest first, in family order.
                names = [space.family.model_names[m] for m in family_ids]
                ids = [self._model_index(n) for n in names]
                candidate_models.extend(ids)
                candidate_offsets.append(len(candidate_models))
                digits.append({m: k for k, m in enumerate(ids)})
            self._model_digit.append(digits)
        self._agent_offsets = np.array(agent_offsets, np.int32)
        self._agent_depths = np.array(
            [d for space in self._spaces for d in space.workflow.depths], np.int32
        )
        self._candidate_offsets = np.array(candidate_offsets, np.int32)
        self._candidate_models = np.array(candidate_models, np.int32)
        self._engine_model = np.array(
            [self._model_names.index(e.model) for e in self._engines], np.int32
        )
        curve_offsets = np.cumsum([0] + [len(e.curve_load) for e in self._engines])
        self._curve_offsets = curve_offsets.astype(np.int32)
        self._curve_load = np.concatenate([e.curve_load for e in self._engines]).astype(
            np.float64
        )
        self._curve_throughput = np.concatenate(
            [e.curve_throughput for e in self._engines]
        ).astype(np.float64)

    def _model_index(self, name: str) -> int:
        # A candidate no engine serves gets an index past every engine's model: the
        # core then never finds an engine for it, which is what serving means.
        if name not in self._model_names:
            self._model_names.append(name)
        return self._model_names.index(name)

    def _ready_requests(self) -> list[tuple[Hashable, _Request]]:
        picked = []
        num_items = 0
        for request_id, req in self._queue.items():
            n = len(req.ready)
            if n == 0:
                continue
            if num_items + n > self._max_num_items:
                break
            picked.append((request_id, req))
            num_items += n
        return picked

    def _round_input(
        self, picked: list[tuple[Hashable, _Request]], free: np.ndarray
    ) -> RoundInput:
        # Per request: workflow and viable-set extent; per item: request and agent.
        requests = [req for _, req in picked]
        request_workflow = np.fromiter((q.workflow for q in requests), np.int32)
        viable_sizes = np.fromiter((len(q.viable) for q in requests), np.int64)
        viable_offsets = np.concatenate(([0], np.cumsum(viable_sizes)))
        num_ready = np.fromiter((len(q.ready) for q in requests), np.int64)
        item_request = np.repeat(np.arange(len(requests), dtype=np.int32), num_ready)
        item_agent = np.fromiter(
            chain.from_iterable(q.ready for q in requests), np.int32
        )
        global_agent = self._agent_offsets[request_workflow[item_request]] + item_agent
        return RoundInput(
            agent_offsets=self._agent_offsets,
            candidate_offsets=self._candidate_offsets,
            candidate_models=self._candidate_models,
            request_workflow=request_workflow,
            viable_offsets=viable_offsets,
            viable_configs=np.concatenate([req.viable for _, req in picked]),
            item_request=item_request,
            item_agent=item_agent,
            item_depth=self._agent_depths[global_agent],
            engine_model=self._engine_model,
            engine_free_slots=free.astype(np.int32),
            engine_load=self.occupancy.copy(),
            curve_offsets=self._curve_offsets,
            curve_load=self._curve_load,
            curve_throughput=self._curve_throughput,
            beam_width=self._beam_width,
        )

    def _start(
        self, request_id: Hashable, req: _Request, agent: int, engine: int
    ) -> Dispatch:
        model = int(self._engine_model[engine])
        digit = self._model_digit[req.workflow][agent][model]
        space = req.space
        req.viable = _core.narrow_viable_set(
            req.viable, space.strides[agent], space.radix[agent], digit
        )
        req.status[agent] = StageStatus.RUNNING
        req.ready.remove(agent)
        req.engine[agent] = engine
        self.occupancy[engine] += 1
        return Dispatch(request_id, agent, engine, self._model_names[model])
