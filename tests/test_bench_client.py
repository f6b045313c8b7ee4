"""`aragog bench` sends the simulator's requests: the two compare field by field."""

from __future__ import annotations

import numpy as np
import pytest

from aragog.errors import ConfigError
from aragog.server.bench import BenchSpec, bench_requests, request_text
from aragog.sim.experiment import Experiment, ExperimentSpec
from aragog.workflow import load_workflow


@pytest.mark.parametrize(
    ("workflow", "arrivals", "num_requests", "duration_s", "rate_rps", "seed"),
    [
        ("self-refine", "trace", 50, None, 3.0, 0),
        ("voting", "poisson", None, 20.0, 2.5, 7),
    ],
)
def test_bench_sends_the_requests_aragog_simulate_serves(
    workflow, arrivals, num_requests, duration_s, rate_rps, seed
):
    experiment = Experiment(
        ExperimentSpec(
            workflow=workflow,
            num_requests=num_requests,
            duration_s=duration_s,
            arrivals=arrivals,
            seed=seed,
            policies=("aragog",),
        )
    )
    spec = BenchSpec(
        url="http://127.0.0.1:1",
        workflow=workflow,
        rate_rps=rate_rps,
        num_requests=num_requests,
        duration_s=duration_s,
        arrivals=arrivals,
        seed=seed,
    )

    arrival_s, inputs, lengths = experiment.requests(rate_rps)
    sent = bench_requests(load_workflow(workflow), spec, experiment.profile.num_inputs)

    np.testing.assert_array_equal(sent.arrival_s, arrival_s)
    np.testing.assert_array_equal(sent.profile_input, inputs)
    np.testing.assert_array_equal(sent.lengths.output_tokens, lengths.output_tokens)
    np.testing.assert_array_equal(sent.lengths.prompt_tokens, lengths.prompt_tokens)


def test_request_text_has_one_word_per_token_asked_and_is_never_empty():
    assert len(request_text(37).split()) == 37
    assert len(request_text(0).split()) == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rate_rps", 0.0, "--rate"),
        ("num_requests", 0, "--requests"),
        ("duration_s", -1.0, "--duration"),
        ("arrivals", "bursty", "--arrivals"),
        ("max_output_tokens", 0, "--max-output-tokens"),
    ],
)
def test_a_bad_bench_option_is_named_in_the_error(field, value, message):
    spec = BenchSpec(url="http://127.0.0.1:1", **{field: value})

    with pytest.raises(ConfigError, match=message):
        spec.validate()
