"""Shared fixtures: small families and workflows built in code."""

from __future__ import annotations

import pytest

from aragog.models import family_from_dict


def tiny_family_dict(num_models: int = 3) -> dict:
    """A family of ``num_models`` models of growing size on one H100 node."""
    models = []
    for i in range(num_models):
        models.append(
            {
                "name": f"m{i}",
                "num_params_b": float(2**i),
                "num_layers": 8 * (i + 1),
                "hidden_size": 1024,
                "num_attention_heads": 8,
                "num_kv_heads": 2,
                "head_dim": 128,
                "intermediate_size": 4096,
                "vocab_size": 32000,
                "tensor_parallel": 1,
                "num_engines": 1,
            }
        )
    return {"name": "tiny", "gpu": "H100", "num_gpus": 8, "models": models}


@pytest.fixture
def tiny_family():
    return family_from_dict(tiny_family_dict(), "tiny.yaml")
