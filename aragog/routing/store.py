"""Router files: a trained learned router as one ``.npz`` archive.

Everything is a plain array (no pickle, which loading refuses): the space the router
belongs to (workflow, family, radix), what it reads (feature kind, embedding model
name and token limit, width), the heads' weights, the knob and its target, the
validation logits and truth the knob was calibrated on (so ``--target`` can move it
later), and the provenance (training profile digest, held-out inputs, seed).
Validation correctness is stored as packed bits, as profiles store theirs.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np

from aragog.errors import ConfigError
from aragog.routing.heads import Heads
from aragog.routing.learned import FeatureSpec, LearnedRouter, Provenance, Validation

logger = logging.getLogger(__name__)

ROUTER_FORMAT = "aragog-router"
FORMAT_VERSION = 1

_REQUIRED_KEYS = (
    "format",
    "format_version",
    "workflow",
    "family",
    "radix",
    "feature_kind",
    "feature_model",
    "feature_max_seq_length",
    "feature_dim",
    "out_weights",
    "out_bias",
    "threshold_logit",
    "target",
    "validation_logits",
    "validation_correct_bits",
    "validation_costs",
    "profile_digest",
    "held_out",
    "seed",
)


def save_router(router: LearnedRouter, path: str | Path) -> None:
    """Write ``router`` to ``path`` (an uncompressed ``.npz`` archive)."""
    val = router.validation
    arrays: dict[str, np.ndarray] = {
        "format": np.array(ROUTER_FORMAT),
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "workflow": np.array(router.workflow),
        "family": np.array(router.family),
        "radix": np.array(router.radix, dtype=np.int64),
        "feature_kind": np.array(router.features.kind),
        "feature_model": np.array(router.features.model),
        "feature_max_seq_length": np.array(router.features.max_seq_length, np.int64),
        "feature_dim": np.array(router.features.dim, dtype=np.int64),
        "out_weights": router.heads.out_weights,
        "out_bias": router.heads.out_bias,
        "threshold_logit": np.array(router.threshold_logit, dtype=np.float64),
        "target": np.array(router.target, dtype=np.float64),
        "validation_logits": val.logits.astype(np.float32),
        "validation_correct_bits": np.packbits(val.correct, axis=1),
        "validation_costs": val.costs.astype(np.float64),
        "profile_digest": np.array(router.provenance.profile_digest),
        "held_out": router.provenance.held_out.astype(np.int64),
        "seed": np.array(router.provenance.seed, dtype=np.int64),
    }
    if router.heads.hidden_weights is not None:
        assert router.heads.hidden_bias is not None, "hidden bias missing"
        arrays["hidden_weights"] = router.heads.hidden_weights
        arrays["hidden_bias"] = router.heads.hidden_bias
    with open(path, "wb") as out:
        # numpy's stub reads ** as possibly holding its allow_pickle flag.
        np.savez(out, **arrays)  # type: ignore[arg-type]
    logger.info(
        "saved router for %s (%d configurations, %s) to %s",
        router.workflow,
        router.num_configs,
        router.features.describe(),
        path,
    )


def load_router(path: str | Path) -> LearnedRouter:
    """Read a router written by :func:`save_router`.

    Raises:
        ConfigError: the file is missing, not an ``.npz`` archive, not a router
            file, of another format version, lacks a field or its shapes disagree;
            one line naming the file.
    """
    where = str(path)
    arrays = _read_npz(where)
    for key in _REQUIRED_KEYS:
        if key not in arrays:
            raise ConfigError(f"{where}: not an aragog router file (no field {key!r})")
    if str(arrays["format"]) != ROUTER_FORMAT:
        raise ConfigError(f"{where}: not an aragog router file")
    version = int(arrays["format_version"])
    if version != FORMAT_VERSION:
        raise ConfigError(
            f"{where}: format_version: expected {FORMAT_VERSION}, found {version}"
        )

    # Rebuild the parts; their constructors check the shapes against each other.
    radix = tuple(int(r) for r in arrays["radix"])
    num_configs = int(np.prod(radix, dtype=np.int64)) if radix else 0
    bits = arrays["validation_correct_bits"]
    if bits.ndim != 2 or bits.shape[1] != (num_configs + 7) // 8:
        raise ConfigError(
            f"{where}: validation_correct_bits: shape {bits.shape} does not hold "
            f"{num_configs} configurations"
        )
    try:
        hidden = arrays.get("hidden_weights"), arrays.get("hidden_bias")
        router = LearnedRouter(
            workflow=str(arrays["workflow"]),
            family=str(arrays["family"]),
            radix=radix,
            features=FeatureSpec(
                kind=str(arrays["feature_kind"]),
                model=str(arrays["feature_model"]),
                max_seq_length=int(arrays["feature_max_seq_length"]),
                dim=int(arrays["feature_dim"]),
            ),
            heads=Heads(
                hidden[0], hidden[1], arrays["out_weights"], arrays["out_bias"]
            ),
            threshold_logit=float(arrays["threshold_logit"]),
            target=float(arrays["target"]),
            validation=Validation(
                logits=arrays["validation_logits"],
                correct=np.unpackbits(bits, axis=1, count=num_configs).astype(bool),
                costs=arrays["validation_costs"],
            ),
            provenance=Provenance(
                profile_digest=str(arrays["profile_digest"]),
                held_out=arrays["held_out"].astype(np.int64),
                seed=int(arrays["seed"]),
            ),
        )
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except (ValueError, TypeError, IndexError) as exc:
        raise ConfigError(f"{where}: malformed router file ({exc})") from None
    logger.info(
        "loaded router for %s (%d configurations, %s) from %s",
        router.workflow,
        router.num_configs,
        router.features.describe(),
        where,
    )
    return router


def _read_npz(where: str) -> dict[str, np.ndarray]:
    try:
        with open(where, "rb") as handle:
            # An .npz archive is a zip file; anything else is refused before numpy
            # guesses at it (it would call a text file "pickled data").
            if handle.read(4) != b"PK\x03\x04":
                raise ConfigError(f"{where}: not a router file (not an .npz archive)")
            handle.seek(0)
            loaded = np.load(handle, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ConfigError(f"{where}: a single array, not a router file")
            with loaded as archive:
                return {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such router file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(
            f"{where}: not a readable router file ({reason or type(exc).__name__})"
        ) from exc
