"""Whole simulated runs: every request ends, on a configuration its policy allowed."""

from __future__ import annotations

import numpy as np
import pytest

from aragog.routing.oracle import OracleRouter
from aragog.sim.experiment import Experiment, ExperimentSpec, summarize


@pytest.fixture(scope="module")
def experiment() -> Experiment:
    return Experiment(ExperimentSpec(workflow="task-decomposition", num_requests=80))


@pytest.mark.parametrize("policy", ["aragog", "per-input", "per-workflow"])
def test_every_request_completes_on_a_configuration_its_policy_allowed(
    experiment, policy
):
    result = experiment.run(policy, rate_rps=2.0)

    assert result.completed.all()
    _, inputs, _ = experiment.requests(2.0)
    allowed = experiment.policies[policy]
    for r, config in enumerate(result.config):
        assert config in allowed.viable_set(int(inputs[r]))
    num_stage_calls = sum(result.stage_calls_by_model.values())
    assert num_stage_calls == 80 * experiment.space.num_agents


def test_aragog_with_the_oracle_is_as_accurate_as_the_most_expensive_configuration(
    experiment,
):
    result = experiment.run("aragog", rate_rps=2.0)

    oracle = OracleRouter(experiment.profile)
    _, inputs, _ = experiment.requests(2.0)
    for r, config in enumerate(result.config):
        assert config in oracle.viable_set(int(inputs[r]))
    assert np.array_equal(result.correct, result.max_config_correct)


def test_the_summary_reads_the_runs_own_latencies(experiment):
    result = experiment.run("per-workflow", rate_rps=0.5)

    record = summarize(result, 0.5)

    latency = result.finish_s - result.arrival_s
    assert record["completed"] == 80
    assert record["latency_s"]["p50"] == pytest.approx(np.median(latency))
    assert record["latency_s"]["p95"] == pytest.approx(np.percentile(latency, 95))
    assert record["accuracy"] == pytest.approx(result.correct.mean())


def test_the_same_seed_gives_the_same_run(experiment):
    first = experiment.run("aragog", rate_rps=4.0)
    again = experiment.run("aragog", rate_rps=4.0)

    assert np.array_equal(first.finish_s, again.finish_s)
    assert np.array_equal(first.config, again.config)


def test_a_higher_rate_only_compresses_the_same_requests(experiment):
    slow_arrivals, slow_inputs, slow_lengths = experiment.requests(1.0)
    fast_arrivals, fast_inputs, fast_lengths = experiment.requests(4.0)

    assert np.array_equal(slow_inputs, fast_inputs)
    assert np.array_equal(slow_lengths.output_tokens, fast_lengths.output_tokens)
    assert np.allclose(fast_arrivals * 4.0, slow_arrivals)
