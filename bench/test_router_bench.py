"""Time per request of the learned router over the 243 configurations of voting.

Run: ``pytest bench/test_router_bench.py --benchmark-columns=min,median,mean,max``

Two groups, each pairing the lattice search with the reference that evaluates every
head in one batch and searches nothing:

- ``route-243-features``: a router trained on a generated voting profile (Qwen2.5,
  3^5 configurations) reading the generator's 8 features; target under 2 ms.
- ``route-243-embedding``: a fresh text embedded by all-MiniLM-L6-v2 on the CPU,
  then routed by 243 heads over its 384 values (random heads: only the time is
  measured here). Each call embeds a text never seen before, as a new request is.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_router_helpers import (  # noqa: E402
    generated,
    random_router,
    requires_embeddings,
    requires_sklearn,
    space_of,
)

from aragog.routing.learned import FeatureSpec, LearnedRouter  # noqa: E402
from aragog.routing.training import TrainSettings, train_router  # noqa: E402

VOTING_RADIX = (3, 3, 3, 3, 3)
TARGET_MS = 2.0


@pytest.fixture(scope="module")
def voting_router() -> tuple[LearnedRouter, np.ndarray]:
    profile = generated("voting", 1000, seed=41)
    features = profile.metadata["features"]
    router = train_router(
        profile,
        features,
        FeatureSpec("features", "", 0, features.shape[1]),
        space_of("voting").mean_costs(),
        TrainSettings(num_folds=2, seed=0),
    )
    return router, features[router.provenance.held_out]


def _cycling(rows: np.ndarray):
    """The next row on every call: timings average over many requests."""
    return itertools.cycle(list(rows))


def _dense(router: LearnedRouter, row: np.ndarray) -> np.ndarray:
    """Every head in one product, no lattice: the reference."""
    decisions = router.logits(row[None, :])[0] >= router.threshold_logit
    decisions[-1] = True
    return np.flatnonzero(decisions)


@requires_sklearn
@pytest.mark.benchmark(group="route-243-features")
def test_lattice_route_over_243_configurations(benchmark, voting_router):
    router, rows = voting_router
    first = router.route(rows[0])
    assert first.complete and first.viable[-1] == 242
    assert router.num_configs == 243
    requests = _cycling(rows)

    benchmark(lambda: router.route(next(requests)))

    assert benchmark.stats.stats.mean * 1e3 < TARGET_MS


@requires_sklearn
@pytest.mark.benchmark(group="route-243-features")
def test_dense_reference_over_243_configurations(benchmark, voting_router):
    router, rows = voting_router
    assert _dense(router, rows[0])[-1] == 242
    requests = _cycling(rows)

    benchmark(lambda: _dense(router, next(requests)))


@pytest.fixture(scope="module")
def embedding_router():
    from aragog.accuracy.mmlu import load_routellm_mmlu
    from aragog.routing.embeddings import TextEmbedder

    embedder = TextEmbedder()
    prompts = load_routellm_mmlu().metadata["prompt"][:200].tolist()
    # Fresh texts every call: a new request is never in the in-run cache.
    texts = (f"{prompts[i % 200]} (request {i})" for i in itertools.count())
    return embedder, random_router(VOTING_RADIX, dim=384, seed=42), texts


@requires_embeddings
@pytest.mark.benchmark(group="route-243-embedding")
def test_embed_then_lattice_route(benchmark, embedding_router):
    embedder, router, texts = embedding_router
    assert router.route(embedder.encode_one(next(texts))).viable[-1] == 242

    benchmark.pedantic(
        lambda: router.route(embedder.encode_one(next(texts))), rounds=30
    )


@requires_embeddings
@pytest.mark.benchmark(group="route-243-embedding")
def test_embed_then_dense_reference(benchmark, embedding_router):
    embedder, router, texts = embedding_router
    assert _dense(router, embedder.encode_one(next(texts)))[-1] == 242

    benchmark.pedantic(
        lambda: _dense(router, embedder.encode_one(next(texts))), rounds=30
    )
