"""The roofline latency model: published measurements, regimes, curves, capacity."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from aragog.engines import latency as lat
from aragog.engines.latency import LatencyModel, load_measurements
from aragog.errors import CatalogError
from aragog.models import load_family, load_gpus

H100 = load_gpus()["h100"]
MEASUREMENTS = load_measurements()
SHIPPED_ENGINES = [
    (family, spec.name)
    for family in ("qwen2.5", "llama3")
    for spec in load_family(family).models
]


def model(family: str, name: str, tensor_parallel: int | None = None):
    spec = load_family(family).model(name)
    if tensor_parallel is not None:
        spec = replace(spec, tensor_parallel=tensor_parallel)
    return spec


def measurement_id(m) -> str:
    return f"{m.model}-{m.gpu}-tp{m.tensor_parallel}-batch{m.batch_size}"


@pytest.mark.parametrize("measurement", MEASUREMENTS, ids=measurement_id)
def test_the_model_reproduces_each_published_measurement_within_25_percent(
    measurement,
):
    predicted = measurement.predict()

    error = (predicted - measurement.value) / measurement.value

    assert abs(error) <= 0.25, f"{measurement.source}: predicted {predicted:.1f}"


def test_the_measurement_table_spans_tensor_parallel_one_and_four():
    assert len(MEASUREMENTS) >= 4
    assert {m.tensor_parallel for m in MEASUREMENTS} >= {1, 4}


def test_batch_one_decode_of_a_7b_on_h100_is_memory_bound():
    # Qwen2.5 7B: 7.62e9 params in bf16 = 15.24 GB of weights; its KV cache holds
    # 2 (K, V) * 28 layers * 4 KV heads * 128 dims * 2 bytes = 57,344 bytes per token.
    latency = LatencyModel(model("qwen2.5", "qwen2.5-7b"), H100)
    weights_s = 15.24e9 / (3.35e12 * lat.HBM_EFFICIENCY)  # 6.066 ms
    kv_s = 1000 * 57_344 / (3.35e12 * lat.HBM_EFFICIENCY)  # 0.023 ms
    compute_s = 2 * 7.62e9 / (989e12 * lat.MFU)  # 0.031 ms, far below memory

    iteration_s = latency.iteration_s(1, 1000)

    assert compute_s < 0.01 * weights_s
    assert iteration_s == pytest.approx(
        weights_s + kv_s + lat.ITERATION_OVERHEAD_S, rel=1e-9
    )
    # Slower than the weights at peak bandwidth: the efficiency factor shows.
    assert iteration_s - lat.ITERATION_OVERHEAD_S > 15.24e9 / 3.35e12


def test_a_tensor_parallel_decode_step_pays_two_all_reduces_per_layer():
    # Llama 3.1 70B on 4 GPUs: 141.1 GB of weights, a quarter per GPU; KV per token
    # per GPU = 2 * 80 layers * 2 KV heads * 128 * 2 bytes; 160 all-reduces of one
    # 8192-wide bf16 vector, ring traffic 2 * 3/4 of it.
    latency = LatencyModel(model("llama3", "llama3-70b"), H100)
    memory_s = (141.1e9 / 4 + 500 * 81_920) / (3.35e12 * lat.HBM_EFFICIENCY)
    ring_s = 2 * 3 / 4 * 8192 * 2 / (900e9 * lat.INTERCONNECT_EFFICIENCY)
    all_reduce_s = 160 * (lat.ALL_REDUCE_LATENCY_S + ring_s)

    iteration_s = latency.iteration_s(1, 500)

    assert iteration_s == pytest.approx(
        memory_s + all_reduce_s + lat.ITERATION_OVERHEAD_S, rel=1e-9
    )


def test_a_long_prefill_is_compute_bound_with_causal_attention():
    # 8192 prompt tokens through Qwen2.5 7B: 2 FLOPs per parameter per token, plus
    # 2 * 28 layers * 28 heads * 128 dims * 8192^2 for the causal attention.
    latency = LatencyModel(model("qwen2.5", "qwen2.5-7b"), H100)
    flops = 2 * 7.62e9 * 8192 + 2 * 28 * 28 * 128 * 8192**2
    compute_s = flops / (989e12 * lat.MFU)  # 0.280 s

    iteration_s = latency.iteration_s(0, 0, 8192)

    assert iteration_s == pytest.approx(compute_s + lat.ITERATION_OVERHEAD_S, rel=1e-9)


def test_several_short_prompts_cost_less_attention_than_one_long_prompt():
    latency = LatencyModel(model("qwen2.5", "qwen2.5-7b"), H100)

    one_prompt_s = latency.iteration_s(0, 0, 8192)
    eight_prompts_s = latency.iteration_s(0, 0, 8192, 8 * 1024**2)

    assert eight_prompts_s < one_prompt_s


def test_an_iteration_without_tokens_is_rejected():
    latency = LatencyModel(model("qwen2.5", "qwen2.5-7b"), H100)

    with pytest.raises(ValueError, match="needs a decode or prefill token"):
        latency.iteration_s(0, 0)


def test_max_batch_is_what_the_kv_cache_holds_beyond_the_weights():
    # Per GPU: 0.9 * 80 GiB - 141.1e9 / 4 bytes = 42.03 GB free; a sequence of 8000
    # tokens needs 8000 * 81,920 bytes = 655 MB of it, so 64 sequences fit.
    latency = LatencyModel(model("llama3", "llama3-70b"), H100)

    assert latency.max_batch(8000) == 64
    assert latency.max_batch(100) == lat.MAX_NUM_SEQS


def test_a_model_whose_weights_do_not_fit_its_gpus_is_rejected():
    with pytest.raises(CatalogError, match="llama3-70b"):
        LatencyModel(model("llama3", "llama3-70b", tensor_parallel=1), H100)


@pytest.mark.parametrize(("family", "name"), SHIPPED_ENGINES)
def test_the_throughput_curve_rises_from_zero_with_shrinking_gains(family, name):
    spec = load_family(family).model(name)
    latency = LatencyModel(spec, load_family(family).gpu)
    max_batch = latency.max_batch(1500)

    loads, tokens_per_s = latency.throughput_curve(1500, 200)

    assert loads[0] == 0 and tokens_per_s[0] == 0
    assert loads[-1] == max_batch
    assert np.all(np.diff(loads) > 0)
    assert set(loads[1:-1]) <= {2.0**i for i in range(9)}
    assert np.all(np.diff(tokens_per_s) >= 0)
    slopes = np.diff(tokens_per_s) / np.diff(loads)
    assert np.all(np.diff(slopes) <= 1e-9 * slopes[0])


@pytest.mark.parametrize(("family", "name"), SHIPPED_ENGINES)
def test_the_saturation_batch_is_the_first_load_within_5_percent_of_the_peak(
    family, name
):
    spec = load_family(family).model(name)
    latency = LatencyModel(spec, load_family(family).gpu)
    max_batch = latency.max_batch(1500)
    peak = max(latency._steady_throughput(n, 1500, 200) for n in range(1, 257))

    saturation = latency.saturation_batch(1500, 200)

    assert 1 <= saturation <= max_batch
    assert latency._steady_throughput(saturation, 1500, 200) >= 0.95 * peak
    if saturation > 1:
        assert latency._steady_throughput(saturation - 1, 1500, 200) < 0.95 * peak


@pytest.mark.parametrize(
    ("family", "smaller", "bigger"),
    [("qwen2.5", "qwen2.5-7b", "qwen2.5-14b"), ("llama3", "llama3-3b", "llama3-8b")],
)
def test_a_bigger_model_has_lower_throughput_at_the_same_tensor_parallel(
    family, smaller, bigger
):
    small = LatencyModel(model(family, smaller, tensor_parallel=1), H100)
    big = LatencyModel(model(family, bigger, tensor_parallel=1), H100)

    small_loads, small_tokens_per_s = small.throughput_curve(1500, 200)
    big_loads, big_tokens_per_s = big.throughput_curve(1500, 200)

    common = np.intersect1d(small_loads[1:], big_loads[1:])
    assert len(common) >= 8
    assert np.all(
        np.interp(common, big_loads, big_tokens_per_s)
        < np.interp(common, small_loads, small_tokens_per_s)
    )
    assert big_tokens_per_s.max() < small_tokens_per_s.max()


def test_a_curve_needs_a_positive_output_length():
    latency = LatencyModel(model("qwen2.5", "qwen2.5-7b"), H100)

    with pytest.raises(ValueError, match="positive mean output"):
        latency.throughput_curve(1500, 0)
