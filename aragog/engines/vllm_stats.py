"""Load signals from vLLM's stat loggers, turned into :class:`EngineLoad`.

vLLM reports its scheduler's state (running and waiting requests, KV-cache use) to
*stat loggers* after every batch of engine outputs. vLLM calls the logger base class
and the stats it receives unstable interfaces, so this module is the only place in
aragog that touches them: when they change, this module changes and nothing else.

The recorder is written by vLLM's output handler, an asyncio task on the loop that
runs the engine, and read by the runtime on the same loop; each update replaces one
immutable :class:`EngineLoad`, so a reader never sees half an update.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aragog.engines.base import EngineLoad

logger = logging.getLogger(__name__)


class LoadRecorder:
    """The latest load one vLLM engine reported, and running totals of its work.

    Attributes:
        load: the latest :class:`EngineLoad` (all ``None`` until the first report).
        updated_s: ``time.monotonic()`` of the latest report; ``None`` before it.
        num_reports: how many scheduler reports arrived.
        num_generation_tokens: output tokens the engine produced since it started.
        num_prompt_tokens: prompt tokens the engine processed since it started.
    """

    __slots__ = (
        "load",
        "updated_s",
        "num_reports",
        "num_generation_tokens",
        "num_prompt_tokens",
    )

    def __init__(self) -> None:
        self.load = EngineLoad()
        self.updated_s: float | None = None
        self.num_reports = 0
        self.num_generation_tokens = 0
        self.num_prompt_tokens = 0

    def record_scheduler(
        self, num_running: int, num_waiting: int, kv_cache_usage: float
    ) -> None:
        """Replace the load with one scheduler report."""
        self.load = EngineLoad(num_running, num_waiting, kv_cache_usage)
        self.updated_s = time.monotonic()
        self.num_reports += 1

    def record_tokens(self, num_generation_tokens: int, num_prompt_tokens: int) -> None:
        """Add one batch of outputs' token counts to the totals."""
        self.num_generation_tokens += num_generation_tokens
        self.num_prompt_tokens += num_prompt_tokens


def stat_logger_factory(recorder: LoadRecorder) -> Callable[..., Any]:
    """A factory vLLM accepts in ``AsyncLLM.from_engine_args(stat_loggers=[...])``.

    vLLM calls it as ``factory(vllm_config, engine_index)`` and feeds the logger it
    returns; that logger writes into ``recorder``. Imports vLLM, so call it only where
    vLLM is installed.
    """
    base = _stat_logger_base()

    class _RecorderLogger(base):  # type: ignore[misc, valid-type]
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            self._engine_index = engine_index

        def record(
            self,
            scheduler_stats: Any,
            iteration_stats: Any,
            mm_cache_stats: Any = None,
            engine_idx: int = 0,
        ) -> None:
            _record(recorder, scheduler_stats, iteration_stats)

        def log_engine_initialized(self) -> None:
            logger.debug("vLLM engine %d reports its load", self._engine_index)

    return _RecorderLogger


def _record(recorder: LoadRecorder, scheduler_stats: Any, iteration_stats: Any) -> None:
    # Read fields by name with defaults: a field vLLM drops or renames leaves the
    # matching signal at its last value instead of failing every engine step.
    if scheduler_stats is not None:
        waiting = getattr(scheduler_stats, "num_waiting_reqs", 0)
        # Requests deferred by a transient constraint still wait for a slot.
        waiting += getattr(scheduler_stats, "num_skipped_waiting_reqs", 0)
        recorder.record_scheduler(
            int(getattr(scheduler_stats, "num_running_reqs", 0)),
            int(waiting),
            float(getattr(scheduler_stats, "kv_cache_usage", 0.0)),
        )
    if iteration_stats is not None:
        recorder.record_tokens(
            int(getattr(iteration_stats, "num_generation_tokens", 0)),
            int(getattr(iteration_stats, "num_prompt_tokens", 0)),
        )


def _stat_logger_base() -> type:
    from vllm.v1.metrics.loggers import StatLoggerBase

    return StatLoggerBase
