"""Experiments: one simulated run per (policy, rate), and their summaries.

An experiment fixes everything a comparison must hold equal: the workflow and family,
the accuracy profile, the trace's requests and their stage lengths, and which profile
input each request carries. Only the policy (and, in a sweep, the rate) varies.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from aragog.accuracy.generator import generate_profile
from aragog.accuracy.profile import AccuracyProfile, load_profile
from aragog.configs import ConfigSpace
from aragog.engines.latency import LatencyModel
from aragog.engines.measured import MeasuredLatency
from aragog.engines.simulated import SimulatedEngine
from aragog.errors import ConfigError, ProfileError
from aragog.models import ModelFamily, load_family
from aragog.orchestrator import EngineView
from aragog.runtime.monitor import ThroughputCurve
from aragog.scheduling.policies import make_policy
from aragog.sim import traces
from aragog.sim.loop import SimulatedNode, SimulationResult, simulate
from aragog.sim.stages import StageLengths, stage_lengths
from aragog.workflow import load_workflow

logger = logging.getLogger(__name__)

DEFAULT_NUM_PROFILE_INPUTS = 2000
# Throughput leaves out this share of completions at each end (see below).
STEADY_SHARE_MARGIN = 0.05


@dataclass(frozen=True)
class ExperimentSpec:
    """What to simulate. Every field has the default the CLI shows."""

    workflow: str = "self-refine"
    family: str = "qwen2.5"
    trace: str = "azure-conv"
    num_requests: int | None = None
    duration_s: float | None = None
    arrivals: str = "trace"
    seed: int = 0
    beam_width: int = 4
    profile: str | None = None
    router: str = "oracle"
    num_profile_inputs: int = DEFAULT_NUM_PROFILE_INPUTS
    throughput_profile: str | None = None
    policies: tuple[str, ...] = ("aragog", "per-input", "per-workflow")

    def validate(self) -> None:
        if self.num_requests is not None and self.num_requests < 1:
            raise ConfigError(
                f"--requests: expected at least 1, found {self.num_requests}"
            )
        if self.duration_s is not None and self.duration_s <= 0:
            raise ConfigError(
                f"--duration: expected seconds > 0, found {self.duration_s}"
            )
        if self.beam_width < 1:
            raise ConfigError(
                f"--beam-width: expected at least 1, found {self.beam_width}"
            )
        if self.arrivals not in ("trace", "poisson"):
            raise ConfigError(
                f"--arrivals: expected trace or poisson, found {self.arrivals}"
            )


class Experiment:
    """The shared inputs of an experiment, prepared once, and its runs."""

    def __init__(self, spec: ExperimentSpec) -> None:
        spec.validate()
        self.spec = spec
        self.family: ModelFamily = load_family(spec.family)
        self.space = ConfigSpace.create(load_workflow(spec.workflow), self.family)
        self.trace = traces.load_trace(spec.trace)
        self.profile = self._load_profile()
        self.measured = self._measured_curves()

    @cached_property
    def policies(self) -> dict:
        routed = route_profile(
            self.spec.router, self.space, self.profile, self.spec.seed
        )
        return {
            n: make_policy(n, self.space, self.profile, routed)
            for n in self.spec.policies
        }

    def requests(self, rate_rps: float) -> tuple[np.ndarray, np.ndarray, StageLengths]:
        """Arrivals, profile inputs and stage lengths of the run at ``rate_rps``.

        The same requests (token lengths and inputs) are used at every rate: a sweep
        changes only how densely they arrive.
        """
        if rate_rps <= 0 or not math.isfinite(rate_rps):
            raise ConfigError(f"--rate: expected requests/s > 0, found {rate_rps}")
        num = self.spec.num_requests
        if num is None:
            duration = self.spec.duration_s or 600.0
            num = max(1, int(round(duration * rate_rps)))
        picked = traces.take(self.trace, num_requests=num)
        if self.spec.arrivals == "poisson":
            picked = traces.poisson_arrivals(picked, rate_rps, self.spec.seed)
        else:
            picked = traces.rescale_to_rate(picked, rate_rps)

        # Inputs and lengths depend on the seed only, never on the rate or policy.
        rng = np.random.default_rng(self.spec.seed)
        inputs = rng.integers(0, self.profile.num_inputs, size=picked.num_requests)
        lengths = stage_lengths(
            self.space.workflow,
            picked.context_tokens,
            picked.generated_tokens,
            self.spec.seed + 1,
        )
        return picked.arrival_s, inputs, lengths

    def node(self, lengths: StageLengths) -> SimulatedNode:
        """Fresh simulated engines, with curves for this run's mean stage lengths."""
        # A decoding call holds its prompt plus, on average, half its output.
        context = lengths.mean_prompt_tokens + lengths.mean_output_tokens / 2
        output = lengths.mean_output_tokens
        views, engines = [], []
        for spec in self.family.engines():
            model = self.family.model(spec.model)
            curve = self.measured.get(spec.name)
            latency: LatencyModel | MeasuredLatency
            if curve is None:
                latency = LatencyModel(model, self.family.gpu)
            else:
                latency = MeasuredLatency(curve)
            loads, throughput = latency.throughput_curve(context, output)
            saturation = latency.saturation_batch(context, output)
            views.append(
                EngineView(spec.name, spec.model, saturation, loads, throughput)
            )
            engines.append(
                SimulatedEngine(spec.name, latency, latency.max_batch(context))
            )
        return SimulatedNode(tuple(views), tuple(engines))

    def run(self, policy: str, rate_rps: float) -> SimulationResult:
        """Simulate one policy at one rate."""
        arrival_s, inputs, lengths = self.requests(rate_rps)
        return simulate(
            self.space,
            self.node(lengths),
            self.policies[policy],
            self.profile,
            arrival_s,
            inputs,
            lengths,
            self.spec.beam_width,
        )

    def _measured_curves(self) -> dict[str, ThroughputCurve]:
        """The measured curve of each engine the throughput profile covers (by its
        name, else its model's); the others keep the latency model.

        Raises:
            ProfileError: the file cannot be read, or covers none of the engines.
        """
        from aragog.runtime.monitor import load_throughput_profile

        path = self.spec.throughput_profile
        if path is None:
            return {}
        profile = load_throughput_profile(path)
        curves = {}
        for engine in self.family.engines():
            curve = profile.curve_for(engine.name, engine.model)
            if curve is not None:
                curves[engine.name] = curve
        if not curves:
            raise ProfileError(
                f"--throughput-profile {path}: no curve for any engine of "
                f"{self.family.name} (models {', '.join(self.family.model_names)})"
            )
        missing = [e.name for e in self.family.engines() if e.name not in curves]
        logger.info(
            "measured curves for %d engines from %s; latency model for %d (%s)",
            len(curves),
            path,
            len(missing),
            ", ".join(missing) or "none",
        )
        return curves

    def capacity_rps(self) -> float:
        """An upper bound on the node's request rate: every engine at its peak
        output throughput, divided by the output tokens of one request."""
        _, _, lengths = self.requests(1.0)
        node = self.node(lengths)
        tokens_per_s = sum(float(v.curve_throughput.max()) for v in node.views)
        return tokens_per_s / float(lengths.output_tokens.sum(axis=1).mean())

    def _load_profile(self) -> AccuracyProfile:
        if self.spec.profile is not None:
            profile = load_profile(Path(self.spec.profile))
            profile.check_fits(self.space)
            return profile
        return generate_profile(
            self.space, self.spec.num_profile_inputs, self.spec.seed
        )


def route_profile(
    router: str, space: ConfigSpace, profile: AccuracyProfile, seed: int
) -> list[np.ndarray] | None:
    """Each profile input's viable set as ``router`` predicts it (None: the oracle).

    ``learned`` trains routers on the profile's generated features, each input routed
    by one that never saw it; a path loads a router file that reads features.
    """
    if router == "oracle":
        return None
    try:
        if router == "learned":
            from aragog.routing.training import learned_viable_sets

            logger.info("training a learned router on %d inputs", profile.num_inputs)
            return learned_viable_sets(profile, space, seed=seed)
        from aragog.routing.store import load_router

        learned = load_router(router)
        learned.check_fits(profile)
        features = profile.metadata.get("features")
        if features is None:
            raise ConfigError(f"--router {router}: the profile has no 'features'")
        bound = learned.bind(features)
        return [bound.viable_set(i) for i in range(profile.num_inputs)]
    except ImportError as exc:
        raise ConfigError(
            f"--router {router}: needs the router extra "
            f"(pip install 'aragog[router]'): {exc}"
        ) from None


def summarize(result: SimulationResult, rate_rps: float) -> dict:
    """The machine-readable record of one run (the JSON schema of the CLI)."""
    done = result.completed
    latency = result.finish_s[done] - result.arrival_s[done]
    stats = {"mean": math.nan, "p25": math.nan, "p50": math.nan, "p95": math.nan}
    if done.any():
        stats = {
            "mean": float(latency.mean()),
            "p25": float(np.percentile(latency, 25)),
            "p50": float(np.percentile(latency, 50)),
            "p95": float(np.percentile(latency, 95)),
        }
    return {
        "offered_rate_rps": rate_rps,
        "num_requests": int(len(done)),
        "completed": int(done.sum()),
        "throughput_rps": completed_throughput(result.finish_s),
        "latency_s": stats,
        "accuracy": float(result.correct[done].mean()) if done.any() else math.nan,
        "accuracy_max_config": (
            float(result.max_config_correct[done].mean()) if done.any() else math.nan
        ),
        "stage_calls_by_model": dict(result.stage_calls_by_model),
        "num_rounds": result.num_rounds,
        "sim_wall_s": result.wall_s,
    }


def completed_throughput(finish_s: np.ndarray) -> float:
    """Completions per second over the middle of the completion times.

    Counting the completions between the 5th and the 95th percentile of completion
    time, over that span, leaves out the run's fill and drain and the latency spread
    of the first and last requests: at light load it reads the arrival rate, under
    overload the rate at which the node works through its backlog.
    """
    done = np.sort(finish_s[~np.isnan(finish_s)])
    if len(done) < 2:
        return 0.0
    lo = int(np.floor(STEADY_SHARE_MARGIN * (len(done) - 1)))
    hi = int(np.ceil((1 - STEADY_SHARE_MARGIN) * (len(done) - 1)))
    span_s = float(done[hi] - done[lo])
    return (hi - lo) / span_s if span_s > 0 else math.inf
