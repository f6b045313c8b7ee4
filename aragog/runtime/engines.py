"""Engines from a deployment: building each one and starting them all.

Engines start concurrently (each engine's blocking start runs in a worker thread),
except that an engine sharing a GPU with an engine listed before it waits for that
one to be up: vLLM sizes its KV cache from the memory it finds free, and two engines
measuring one GPU at once would each count the other's memory as theirs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

from aragog.engines.base import Engine
from aragog.runtime.deploy import EngineEntry

logger = logging.getLogger(__name__)


def build_engine(entry: EngineEntry) -> Engine:
    """The engine a deployment entry describes (vLLM is imported when it starts)."""
    if entry.vllm is not None:
        from aragog.engines.vllm_engine import VllmEngine, VllmEngineConfig

        v = entry.vllm
        extra = dict(v.engine_args)
        if v.kv_cache_gib is not None:
            extra["kv_cache_memory_bytes"] = int(v.kv_cache_gib * 2**30)
        return VllmEngine(
            VllmEngineConfig(
                name=entry.name,
                model=entry.model,
                model_path=v.model_path,
                tensor_parallel=v.tensor_parallel,
                gpu_ids=v.gpu_ids,
                load_format=v.load_format,
                dtype=v.dtype,
                max_model_len=v.max_model_len,
                max_num_seqs=v.max_num_seqs,
                enforce_eager=v.enforce_eager,
                gpu_memory_utilization=v.gpu_memory_utilization,
                ignore_eos=v.ignore_eos,
                seed=v.seed,
                extra_engine_args=extra,
            )
        )
    from aragog.engines.remote import RemoteEngine, RemoteEngineConfig

    assert entry.remote is not None
    r = entry.remote
    # The key is read from the environment now, when the engine is built, never
    # stored in the deployment file.
    api_key = os.environ.get(r.api_key_env) if r.api_key_env else None
    if r.api_key_env and api_key is None:
        logger.warning(
            "engine %s: %s is not set; calling %s without a key",
            entry.name,
            r.api_key_env,
            r.url,
        )
    return RemoteEngine(
        RemoteEngineConfig(
            name=entry.name,
            model=entry.model,
            url=r.url,
            served_model_name=r.served_model_name,
            api_key=api_key,
            connect_timeout_s=r.connect_timeout_s,
            read_timeout_s=r.timeout_s,
            max_retries=r.max_retries,
            metrics_interval_s=r.metrics_interval_s,
            extra_body=dict(r.extra_body),
        )
    )


async def start_engines(
    engines: Sequence[Engine], entries: Sequence[EngineEntry]
) -> list[BaseException | None]:
    """Start every engine; per engine, None or the exception its start raised.

    An engine waits for the earlier engines it shares a GPU with (and is not started
    when one of them failed).
    """
    tasks: list[asyncio.Task[None]] = []
    for i, (engine, entry) in enumerate(zip(engines, entries, strict=True)):
        before = [tasks[j] for j in range(i) if _share_gpu(entries[j], entry)]
        tasks.append(asyncio.create_task(_start_after(engine, before)))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return [r if isinstance(r, BaseException) else None for r in results]


async def _start_after(engine: Engine, before: list[asyncio.Task[None]]) -> None:
    if before:
        logger.info(
            "engine %s: waiting for %d engine(s) on its GPUs", engine.name, len(before)
        )
        await asyncio.gather(*before)
    await engine.start()


def _share_gpu(a: EngineEntry, b: EngineEntry) -> bool:
    if a.vllm is None or b.vllm is None:
        return False
    return bool(set(a.vllm.gpu_ids) & set(b.vllm.gpu_ids))
