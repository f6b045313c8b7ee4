"""The parts of the GPU check that run without a GPU, and the curve file it writes.

The check itself (``scripts/gpu_check.sh``) needs NVIDIA GPUs; here: the model
folders it writes from the catalog, the deployments it lays out for 1, 2, 3 and 8
GPUs, and the curve fitting and profile writing of :mod:`aragog.runtime.curves`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from aragog.errors import ProfileError
from aragog.models import load_family
from aragog.runtime.curves import (
    CurvePoint,
    batch_ladder,
    curve_entry,
    fit_curve,
    write_profile,
)
from aragog.runtime.deploy import deployment_from_dict
from aragog.runtime.monitor import load_throughput_profile

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gpu_check"]


def _points(pairs: list[tuple[int, float]]) -> list[CurvePoint]:
    # A batch of b calls of 100 tokens each, taking the given seconds.
    return [CurvePoint(b, seconds, 100 * b) for b, seconds in pairs]


def test_the_batch_ladder_doubles_up_to_the_limit():
    assert batch_ladder(1) == [1]
    assert batch_ladder(8) == [1, 2, 4, 8]
    assert batch_ladder(48) == [1, 2, 4, 8, 16, 32, 48]
    with pytest.raises(ValueError):
        batch_ladder(0)


def test_a_fitted_curve_starts_at_zero_never_dips_and_finds_the_saturation_batch():
    points = _points([(1, 1.0), (2, 1.0), (4, 1.1), (8, 2.5), (16, 4.0), (32, 8.0)])

    curve = fit_curve(points)

    np.testing.assert_array_equal(curve.loads, [0, 1, 2, 4, 8, 16, 32])
    assert curve.tokens_per_s[0] == 0
    assert np.all(np.diff(curve.tokens_per_s) >= 0)
    # 8 calls measured slower than 4 (320 < 364 tokens/s): the dip is flattened.
    assert curve.tokens_per_s[4] == pytest.approx(400 / 1.1)
    # 400 tokens/s at 16 and 32: 16 is the first to reach 95% of the peak.
    assert curve.saturation_batch == 16


def test_a_curve_cannot_be_fitted_from_nothing():
    with pytest.raises(ValueError):
        fit_curve([])


def test_a_written_profile_loads_back_as_the_same_curve_for_its_engine(tmp_path):
    curve = fit_curve(_points([(1, 1.0), (2, 1.2), (4, 1.6), (8, 2.9)]))
    entry = curve_entry(
        "qwen2.5-7b",
        curve,
        engine="qwen2.5-7b#0",
        gpu="H200",
        tensor_parallel=1,
        prompt_tokens=512,
        output_tokens=128,
    )
    path = tmp_path / "curves.json"

    write_profile(path, [entry], hardware="1x H200")

    loaded = load_throughput_profile(path).curve_for("qwen2.5-7b#0", "qwen2.5-7b")
    np.testing.assert_allclose(loaded.loads, curve.loads)
    np.testing.assert_allclose(loaded.tokens_per_s, curve.tokens_per_s, atol=1e-3)
    assert loaded.saturation_batch == curve.saturation_batch
    assert json.loads(path.read_text())["hardware"] == "1x H200"


def test_a_profile_the_monitors_would_refuse_is_not_written(tmp_path):
    entry = {"model": "qwen2.5-7b", "loads": [2.0, 1.0], "tokens_per_s": [1.0, 2.0]}
    path = tmp_path / "bad.json"

    with pytest.raises(ProfileError):
        write_profile(path, [entry])

    assert not path.exists()


def test_the_model_configs_carry_the_catalogs_architecture_numbers(gpu_check):
    family = load_family("qwen2.5")

    for name in gpu_check.MODELS:
        model = family.model(name)
        config = gpu_check.qwen_config(model)

        assert config["architectures"] == ["Qwen2ForCausalLM"]
        assert config["hidden_size"] == model.hidden_size
        assert config["num_hidden_layers"] == model.num_layers
        assert config["num_attention_heads"] == model.num_attention_heads
        assert config["num_key_value_heads"] == model.num_kv_heads
        assert config["intermediate_size"] == model.intermediate_size
        assert config["vocab_size"] == model.vocab_size
        assert config["hidden_size"] == model.num_attention_heads * model.head_dim


def test_the_tokenizer_decodes_every_id_and_reads_one_token_per_word(
    gpu_check, tmp_path
):
    # transformers comes with vLLM: skipped without it on a laptop, never in CI.
    if importlib.util.find_spec("transformers") is None:
        if os.environ.get("CI"):
            pytest.fail("transformers is not installed; CI must run this test")
        pytest.skip("transformers is not installed (it comes with vllm)")
    from transformers import AutoTokenizer

    gpu_check.write_tokenizer(tmp_path, 152064)
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path))

    assert len(tokenizer) == 152064
    assert tokenizer.decode([5, 151645, 152063]) == "w5 <|im_end|> w152063"
    assert len(tokenizer("the model reads a question")["input_ids"]) == 5
    assert tokenizer.eos_token_id == 151645


@pytest.mark.parametrize("num_gpus", [1, 2, 3, 8])
def test_the_layout_for_each_gpu_count_is_a_valid_deployment(gpu_check, num_gpus):
    folders = {m: Path(f"/models/{m}") for m in gpu_check.MODELS}
    doc = gpu_check.deployment_document(folders, num_gpus, max_num_seqs=64)

    deployment = deployment_from_dict(doc, "gpu-check.yaml", Path("."), False)

    used = {g for e in deployment.engines for g in e.vllm.gpu_ids}
    assert used <= set(range(num_gpus))
    assert {e.model for e in deployment.engines} == set(gpu_check.MODELS)
    for gpu in used:
        shares = [
            e.vllm.gpu_memory_utilization
            for e in deployment.engines
            if gpu in e.vllm.gpu_ids
        ]
        assert len(shares) == 1 or math.fsum(shares) <= 1.0
    assert all(e.vllm.enforce_eager == (num_gpus < 3) for e in deployment.engines)


def test_on_eight_gpus_the_layout_is_the_papers_node(gpu_check):
    folders = {m: Path(f"/models/{m}") for m in gpu_check.MODELS}
    doc = gpu_check.deployment_document(folders, 8, max_num_seqs=256)

    deployment = deployment_from_dict(doc, "gpu-check.yaml", Path("."), False)

    layout = {
        e.name: (e.vllm.gpu_ids, e.vllm.tensor_parallel) for e in deployment.engines
    }
    assert layout == {
        "qwen2.5-32b#0": ((0, 1, 2, 3), 4),
        "qwen2.5-14b#0": ((4, 5), 2),
        "qwen2.5-7b#0": ((6,), 1),
        "qwen2.5-7b#1": ((7,), 1),
    }
