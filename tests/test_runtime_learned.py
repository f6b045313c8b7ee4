"""The runtime with a learned router, on instant test engines (no vLLM): runs wait
for their embedding off the event loop, and a failed embedding fails only its run.

The engines here answer at once with a fixed text; what is under test is routing.
The learned router has random heads over the real all-MiniLM-L6-v2 embeddings.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import numpy as np
import pytest
from test_router_helpers import random_router, requires_embeddings

from aragog.engines.base import EngineLoad, StageOutput
from aragog.routing.embeddings import TextEmbedder
from aragog.routing.learned import FeatureSpec
from aragog.routing.store import save_router
from aragog.runtime.deploy import load_deployment
from aragog.runtime.errors import RunFailed
from aragog.runtime.routing import LearnedRouting
from aragog.runtime.runtime import Runtime

pytestmark = requires_embeddings

MODELS = ("qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b")


class InstantEngine:
    """Answers every stage call at once with two tokens."""

    def __init__(self, name: str, model: str) -> None:
        self.name, self.model = name, model
        self.prompts: list[str] = []

    async def start(self) -> None:
        return None

    async def generate(
        self, request_id: str, prompt: str, max_tokens: int, temperature: float
    ) -> StageOutput:
        self.prompts.append(prompt)
        await asyncio.sleep(0)
        return StageOutput(
            " ok", num_prompt_tokens=len(prompt.split()), num_output_tokens=2
        )

    def load(self) -> EngineLoad:
        return EngineLoad()

    async def shutdown(self) -> None:
        return None


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("learned")
    engines = [{"model": m, "remote": {"url": "http://127.0.0.1:9/v1"}} for m in MODELS]
    doc = {"family": "qwen2.5", "workflows": ["self-refine"], "engines": engines}
    path = root / "deploy.yaml"
    path.write_text(json.dumps(doc))
    space = load_deployment(path).workflows["self-refine"].space
    router = replace(
        random_router(tuple(space.radix), 384, 5, workflow="self-refine"),
        family="qwen2.5",
        features=FeatureSpec("embedding", "all-MiniLM-L6-v2", 0, 384),
    )
    save_router(router, root / "router.npz")
    return path, root / "router.npz", router


def _runtime(deployment) -> Runtime:
    path, router_path, _ = deployment
    rt = Runtime.from_config(path, routers=[router_path])
    engines = [InstantEngine(e.name, e.model) for e in rt.deployment.engines]
    return Runtime(rt.deployment, engines=engines)


def test_learned_runs_get_the_routers_viable_set_for_their_text(deployment):
    _, _, router = deployment
    questions = [f"how many moons does planet {i} have?" for i in range(6)]

    async def main():
        async with _runtime(deployment) as rt:
            results = await asyncio.gather(
                *(rt.run("self-refine", {"question": q}) for q in questions)
            )
            return results, rt.overhead()

    results, stats = asyncio.run(main())

    vectors = TextEmbedder().encode(questions)
    for result, vector in zip(results, vectors, strict=True):
        expected = router.route(vector).viable
        assert result.router == "learned"
        assert result.num_viable == expected.size
        assert result.config in set(expected.tolist())
    assert stats.num_runs_embedded == stats.num_runs_routed == len(questions)


def test_a_failed_embedding_fails_its_run_and_the_runtime_serves_on(
    deployment, monkeypatch
):
    real_embed = LearnedRouting.embed

    def embed(self, text):
        if "poison" in text:
            raise RuntimeError("tokenizer exploded")
        return real_embed(self, text)

    monkeypatch.setattr(LearnedRouting, "embed", embed)

    async def main():
        async with _runtime(deployment) as rt:
            bad = rt.run("self-refine", {"question": "poison pill"})
            good = rt.run("self-refine", {"question": "what is two plus two?"})
            outcomes = await asyncio.gather(bad, good, return_exceptions=True)
            return outcomes, rt.num_queued

    (bad, good), num_queued = asyncio.run(main())

    assert isinstance(bad, RunFailed)
    assert str(bad) == (
        "the learned router could not embed the input: tokenizer exploded"
    )
    assert good.router == "learned" and good.output == " ok"
    assert num_queued == 0


def test_the_budget_is_what_is_left_of_the_expected_first_wait(deployment):
    path, router_path, _ = deployment
    rt = Runtime.from_config(path, routers=[router_path])
    floor_s = rt.deployment.router.min_budget_s

    # Nothing measured yet: the floor.
    assert rt.routing_budget_s(0.0) == floor_s == pytest.approx(1e-3)
    rt._first_wait_s = 0.5
    assert rt.routing_budget_s(0.1) == pytest.approx(0.4)
    assert rt.routing_budget_s(0.4999) == floor_s


def test_a_run_with_no_time_left_keeps_only_the_most_expensive_configuration(
    deployment,
):
    path, router_path, _ = deployment
    space = load_deployment(path).workflows["self-refine"].space

    async def main():
        rt = _runtime(deployment)
        rt.routing_budget_s = lambda waited_s: 0.0  # type: ignore[method-assign]
        async with rt:
            return await rt.run("self-refine", {"question": "anything at all"})

    result = asyncio.run(main())

    assert result.num_viable == 1
    assert result.config == space.most_expensive
    assert result.router_complete is False
    assert np.all(np.array(space.model_names(result.config)) == "qwen2.5-32b")
