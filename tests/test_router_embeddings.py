"""Text embeddings: the shipped model, offline, batched, cached in a run and on disk."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from test_router_helpers import requires_embeddings

from aragog.errors import ConfigError
from aragog.routing.embeddings import DEFAULT_MODEL_NAME, TextEmbedder, embed_texts

pytestmark = requires_embeddings

TEXTS = (
    "What is the capital of France?",
    "Which city is the capital of France?",
    "Compute the derivative of x squared.",
)


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    return TextEmbedder()


def test_texts_become_unit_vectors_of_the_models_width(embedder):
    table = embedder.encode(TEXTS)

    assert embedder.name == DEFAULT_MODEL_NAME
    assert table.shape == (3, 384)
    assert table.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(table, axis=1), 1.0, atol=1e-5)


def test_paraphrases_lie_closer_than_unrelated_questions(embedder):
    table = embedder.encode(TEXTS)

    paraphrase = float(table[0] @ table[1])
    unrelated = float(table[0] @ table[2])

    assert paraphrase > 0.8
    assert unrelated < 0.3


def test_a_text_seen_in_the_run_is_not_encoded_again(embedder, monkeypatch):
    first = embedder.encode(TEXTS)
    calls = []
    monkeypatch.setattr(embedder, "_encode_batch", lambda texts: calls.append(texts))

    again = embedder.encode(list(reversed(TEXTS)))

    assert calls == []
    np.testing.assert_array_equal(again, first[::-1])


def test_one_request_gets_the_same_vector_as_in_a_batch(embedder):
    batch = embedder.encode(["a fresh sentence for the batch path", TEXTS[2]])

    alone = TextEmbedder().encode_one(TEXTS[2])

    np.testing.assert_allclose(alone, batch[1], atol=1e-5)


def test_a_table_cached_on_disk_is_read_back_without_the_model(embedder, tmp_path):
    table = embed_texts(embedder, TEXTS, tmp_path)
    fresh = TextEmbedder()

    again = embed_texts(fresh, TEXTS, tmp_path)

    assert len(list(tmp_path.glob("*.npy"))) == 1
    assert fresh._model is None
    np.testing.assert_array_equal(again, table)


def test_a_folder_without_a_model_is_refused_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"not a sentence-transformers folder"):
        TextEmbedder(tmp_path)


def test_importing_the_router_modules_loads_no_torch_transformers_or_sklearn():
    code = (
        "import sys, aragog.routing.learned, aragog.routing.cli, "
        "aragog.routing.embeddings; "
        "heavy = ('torch', 'sentence_transformers', 'sklearn'); "
        "print([m for m in heavy if m in sys.modules])"
    )

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert out.stdout.strip() == "[]"
