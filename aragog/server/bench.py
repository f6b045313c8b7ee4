"""``aragog bench``: replay a trace against a running deployment, over HTTP.

The requests are exactly those ``aragog simulate`` serves for the same workflow,
trace, rate, length and seed: the same arrivals, the same accuracy-profile inputs and
the same per-stage output lengths (each run's ``max_tokens``; engines started with
``ignore_eos`` generate exactly that many). Each request's own text has about the
trace's context length in words. Arrivals are open loop: a request is sent at its
time whether or not earlier ones have finished.

The record is built by the simulator's own :func:`aragog.sim.experiment.summarize`,
so a simulated and a real run compare field by field: ``completed`` counts 200
answers, latency runs from sending to the answer, accuracy reads the oracle outcome
each answer reports, ``stage_calls_by_model`` and ``num_rounds`` are the server's
metric counts over the run, and ``sim_wall_s`` is the run's wall time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from aragog.errors import ConfigError
from aragog.runtime.prompts import compile_templates
from aragog.sim import traces
from aragog.sim.experiment import summarize
from aragog.sim.loop import SimulationResult
from aragog.sim.stages import StageLengths, stage_lengths
from aragog.workflow import Workflow, load_workflow

logger = logging.getLogger(__name__)

POLICY = "aragog"
# Plain words that common tokenizers keep as one token each (with the leading space).
_WORDS = (
    *("the", "model", "reads", "a", "short", "question", "and", "writes", "an"),
    *("answer", "with", "care", "while", "every", "agent", "checks", "its", "own"),
    *("output", "before", "the", "final", "result"),
)


@dataclass(frozen=True, slots=True)
class BenchSpec:
    """What to replay, and where. Fields mirror ``aragog simulate``'s options.

    Attributes:
        max_context_tokens: cap on each request's own text (None: the trace's), for
            engines with a short context; a capped run no longer matches a
            simulation's lengths.
        max_output_tokens: cap on each stage's output, likewise.
        timeout_s: how long one run may take before it counts as not completed.
    """

    url: str
    workflow: str = "self-refine"
    trace: str = "azure-conv"
    rate_rps: float = 2.0
    num_requests: int | None = None
    duration_s: float | None = None
    arrivals: str = "trace"
    seed: int = 0
    timeout_s: float = 600.0
    max_context_tokens: int | None = None
    max_output_tokens: int | None = None

    def validate(self) -> None:
        if not (math.isfinite(self.rate_rps) and self.rate_rps > 0):
            raise ConfigError(f"--rate: expected requests/s > 0, found {self.rate_rps}")
        if self.num_requests is not None and self.num_requests < 1:
            raise ConfigError(
                f"--requests: expected at least 1, found {self.num_requests}"
            )
        if self.duration_s is not None and self.duration_s <= 0:
            raise ConfigError(
                f"--duration: expected seconds > 0, found {self.duration_s}"
            )
        if self.arrivals not in ("trace", "poisson"):
            raise ConfigError(
                f"--arrivals: expected trace or poisson, found {self.arrivals}"
            )
        for name in ("max_context_tokens", "max_output_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                option = "--" + name.replace("_", "-")
                raise ConfigError(f"{option}: expected at least 1, found {value}")


@dataclass(frozen=True, slots=True)
class BenchRequests:
    """The requests of one run, as ``aragog simulate`` would serve them."""

    arrival_s: np.ndarray
    profile_input: np.ndarray
    lengths: StageLengths
    context_tokens: np.ndarray


def bench_requests(
    workflow: Workflow, spec: BenchSpec, num_profile_inputs: int
) -> BenchRequests:
    """Arrivals, profile inputs and stage lengths: those of
    :meth:`aragog.sim.experiment.Experiment.requests` for the same settings."""
    spec.validate()
    num = spec.num_requests
    if num is None:
        duration_s = spec.duration_s or 600.0
        num = max(1, int(round(duration_s * spec.rate_rps)))
    picked = traces.take(traces.load_trace(spec.trace), num_requests=num)
    if spec.arrivals == "poisson":
        picked = traces.poisson_arrivals(picked, spec.rate_rps, spec.seed)
    else:
        picked = traces.rescale_to_rate(picked, spec.rate_rps)

    # Inputs and lengths depend on the seed only, as in the simulator.
    rng = np.random.default_rng(spec.seed)
    inputs = rng.integers(0, num_profile_inputs, size=picked.num_requests)
    lengths = stage_lengths(
        workflow, picked.context_tokens, picked.generated_tokens, spec.seed + 1
    )
    return BenchRequests(picked.arrival_s, inputs, lengths, picked.context_tokens)


def request_text(num_tokens: int) -> str:
    """About ``num_tokens`` tokens of plain text (one word per token), never empty."""
    n = max(1, int(num_tokens))
    repeats = -(-n // len(_WORDS))
    return " ".join((_WORDS * repeats)[:n])


async def run_bench(spec: BenchSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """Replay the requests against ``spec.url``.

    Returns:
        (the document's header: workflow, family, trace, seed, beam_width, rate,
        url and error counts; the record of :func:`summarize`).

    Raises:
        ConfigError: the server is unreachable, does not serve the workflow, or its
            workflow has other agents than the local definition.
    """
    import httpx

    spec.validate()
    workflow = load_workflow(spec.workflow)
    base = spec.url.rstrip("/")
    timeout = httpx.Timeout(spec.timeout_s, connect=30.0)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits) as http:
        # What the server serves, checked against the local workflow.
        info = await _served(http, base, workflow)
        served = info["workflows"][workflow.name]
        num_inputs = int(served["router"]["num_profile_inputs"])
        requests = bench_requests(workflow, spec, num_inputs)
        bodies = _bodies(workflow, requests, spec)
        before = await _counters(http)

        # Open loop: each request at its time, all in flight together.
        logger.info(
            "bench: %d requests of %s at %.2f req/s against %s",
            len(bodies),
            workflow.name,
            spec.rate_rps,
            base,
        )
        began = time.monotonic()
        outcomes = await asyncio.gather(
            *(
                _one(http, workflow.name, body, began, float(t))
                for body, t in zip(bodies, requests.arrival_s, strict=True)
            )
        )
        wall_s = time.monotonic() - began
        after = await _counters(http)

    # The simulator's result type, so the simulator's summary makes the record.
    models = sorted({e["model"] for e in info["engines"]})
    result = _result(outcomes, models, before, after, wall_s)
    errors = Counter(o["error"] for o in outcomes if o["error"] is not None)
    header = {
        "workflow": workflow.name,
        "family": info["family"],
        "trace": traces.load_trace(spec.trace).name,
        "seed": spec.seed,
        "beam_width": info["beam_width"],
        "rate_rps": spec.rate_rps,
        "url": base,
        "errors": dict(sorted(errors.items())),
    }
    return header, summarize(result, spec.rate_rps)


async def _served(http: Any, base: str, workflow: Workflow) -> dict[str, Any]:
    import httpx

    try:
        response = await http.get("/v1/workflows")
    except httpx.HTTPError as exc:
        raise ConfigError(f"--url: cannot reach {base}: {exc}") from None
    if response.status_code != 200:
        raise ConfigError(f"--url: {base}/v1/workflows answered {response.status_code}")
    info = response.json()
    served = info["workflows"].get(workflow.name)
    if served is None:
        raise ConfigError(
            f"--workflow: {base} does not serve {workflow.name!r} (it serves "
            f"{', '.join(info['workflows'])})"
        )
    names = [a["name"] for a in served["agents"]]
    if names != list(workflow.agent_names):
        raise ConfigError(
            f"--workflow: {base}'s {workflow.name!r} has agents {names}, the local "
            f"definition has {list(workflow.agent_names)}"
        )
    if "router" not in served:
        raise ConfigError(f"--url: {base} is not ready (its engines are starting)")
    return info


def _bodies(
    workflow: Workflow, requests: BenchRequests, spec: BenchSpec
) -> list[dict[str, Any]]:
    # Fill every input field the templates read (or one "text" field) with the text.
    templates = compile_templates(workflow, workflow.name)
    fields = sorted({f for t in templates for f in t.input_fields}) or ["text"]
    context = requests.context_tokens
    if spec.max_context_tokens is not None:
        context = np.minimum(context, spec.max_context_tokens)
    outputs = requests.lengths.output_tokens
    if spec.max_output_tokens is not None:
        outputs = np.minimum(outputs, spec.max_output_tokens)
    bodies = []
    for r in range(len(requests.arrival_s)):
        text = request_text(int(context[r]))
        bodies.append(
            {
                "input": {f: text for f in fields},
                "profile_input": int(requests.profile_input[r]),
                "max_tokens": {
                    a.name: int(outputs[r, i]) for i, a in enumerate(workflow.agents)
                },
            }
        )
    return bodies


async def _one(
    http: Any, workflow: str, body: dict[str, Any], began: float, arrival_s: float
) -> dict[str, Any]:
    import httpx

    await asyncio.sleep(max(0.0, began + arrival_s - time.monotonic()))
    sent_s = time.monotonic() - began
    outcome: dict[str, Any] = {"sent_s": sent_s, "finish_s": math.nan, "error": None}
    try:
        response = await http.post(f"/v1/workflows/{workflow}/runs", json=body)
    except httpx.TimeoutException:
        outcome["error"] = "timeout"
        return outcome
    except httpx.HTTPError as exc:
        outcome["error"] = type(exc).__name__
        return outcome
    if response.status_code != 200:
        outcome["error"] = str(response.status_code)
        logger.debug("bench: %d %s", response.status_code, response.text[:200])
        return outcome
    routing = response.json()["routing"]
    outcome["finish_s"] = time.monotonic() - began
    outcome["config"] = routing["config"]
    outcome["correct"] = routing["profile_correct"]
    outcome["correct_max"] = routing["profile_correct_max_config"]
    return outcome


async def _counters(http: Any) -> dict[str, float]:
    """Stage calls by model and the number of rounds, read from ``/metrics``."""
    from prometheus_client.parser import text_string_to_metric_families

    response = await http.get("/metrics")
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "aragog_stage_calls_total":
                key = f"model:{sample.labels['model']}"
                counts[key] = counts.get(key, 0.0) + sample.value
            elif sample.name == "aragog_scheduling_round_seconds_count":
                counts["rounds"] = sample.value
    return counts


def _result(
    outcomes: list[dict[str, Any]],
    models: list[str],
    before: dict[str, float],
    after: dict[str, float],
    wall_s: float,
) -> SimulationResult:
    done = [o["error"] is None for o in outcomes]
    calls = {
        m: int(after.get(f"model:{m}", 0) - before.get(f"model:{m}", 0)) for m in models
    }
    return SimulationResult(
        policy=POLICY,
        arrival_s=np.array([o["sent_s"] for o in outcomes]),
        finish_s=np.array([o["finish_s"] for o in outcomes]),
        config=np.array([o.get("config", -1) for o in outcomes], dtype=np.int64),
        correct=np.array(
            [d and bool(o["correct"]) for d, o in zip(done, outcomes, strict=True)]
        ),
        max_config_correct=np.array(
            [d and bool(o["correct_max"]) for d, o in zip(done, outcomes, strict=True)]
        ),
        stage_calls_by_model=calls,
        num_rounds=int(after.get("rounds", 0) - before.get("rounds", 0)),
        wall_s=wall_s,
    )
