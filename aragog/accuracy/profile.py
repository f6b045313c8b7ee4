"""Accuracy profiles: which configurations get each input right.

An accuracy profile is the ground truth every router is judged against, and the table
the oracle router reads its labels from. It holds, for every input and every
configuration of one workflow's space (ids as in :mod:`aragog.configs`), whether that
configuration's final answer is correct, plus per-input metadata (a subject, the
prompt, a latent difficulty, feature vectors for a learned router).

On disk a profile is one ``.npz`` file. The correctness table is stored as packed bits
along the configuration axis (eight configurations per byte), so a 243-configuration
profile of 10,000 inputs takes about 300 kB instead of 2.4 MB. String metadata
(prompts run to several thousand characters) is stored as UTF-8 bytes plus offsets,
because a fixed-width numpy string array would pad every prompt to the longest one and
an object array would need pickle, which loading refuses.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aragog.configs import ConfigSpace
from aragog.errors import ProfileError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1

# Array names inside the .npz file. Metadata arrays get a prefix so that a metadata
# field can never collide with a structural one.
_META_PREFIX = "meta."
_TEXT_PREFIX = "text."
_REQUIRED_KEYS = ("format_version", "workflow", "family", "radix", "correct_bits")


@dataclass(frozen=True, slots=True, eq=False)
class AccuracyProfile:
    """Per-input correctness of every configuration of one workflow's space.

    Attributes:
        workflow: name of the workflow the configurations belong to.
        family: name of the model family the workflow is bound to.
        radix: number of candidate models of each agent (the space's radix).
        correct: bool ``[num_inputs, num_configs]``; ``correct[i, c]`` is whether
            configuration ``c`` answers input ``i`` correctly. Stored read-only.
        metadata: per-input arrays whose first axis has ``num_inputs`` rows, such as
            ``subject``, ``prompt``, ``difficulty`` or ``features``.

    Raises:
        ProfileError: an empty table, a table whose width is not the product of
            ``radix``, or a metadata array with the wrong number of rows.
    """

    workflow: str
    family: str
    radix: tuple[int, ...]
    correct: np.ndarray
    metadata: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Own copies, read-only: a frozen profile must not change under its users.
        correct = np.array(self.correct, dtype=bool, copy=True)
        correct.setflags(write=False)
        metadata = {}
        for name, values in self.metadata.items():
            array = np.array(values, copy=True)
            array.setflags(write=False)
            metadata[str(name)] = array
        object.__setattr__(self, "radix", tuple(int(r) for r in self.radix))
        object.__setattr__(self, "correct", correct)
        object.__setattr__(self, "metadata", metadata)
        _validate(f"profile {self.workflow!r}", self.radix, correct.shape, metadata)

    @property
    def num_inputs(self) -> int:
        return int(self.correct.shape[0])

    @property
    def num_configs(self) -> int:
        return int(self.correct.shape[1])

    @property
    def most_expensive(self) -> int:
        """Id of the configuration with every agent on its largest candidate."""
        return self.num_configs - 1

    def accuracy(self, config: int) -> float:
        """Share of inputs that configuration ``config`` answers correctly.

        Raises:
            ProfileError: ``config`` is not an id of this profile's space.
        """
        if not 0 <= config < self.num_configs:
            raise ProfileError(
                f"profile {self.workflow!r}: configuration {config} out of range "
                f"[0, {self.num_configs})"
            )
        return float(self.correct[:, config].mean())

    def accuracy_per_config(self) -> np.ndarray:
        """float64 ``[num_configs]``: the accuracy of every configuration."""
        return self.correct.mean(axis=0, dtype=np.float64)

    def check_fits(self, space: ConfigSpace) -> None:
        """Check that this profile describes ``space``'s configurations.

        Raises:
            ProfileError: the workflow, the family or the radix differ; the message
                names the profile's value and the space's.
        """
        checks = (
            ("workflow", self.workflow, space.workflow.name),
            ("family", self.family, space.family.name),
            ("radix", self.radix, tuple(space.radix)),
        )
        for name, mine, theirs in checks:
            if mine != theirs:
                raise ProfileError(
                    f"profile {self.workflow!r}: {name} {mine!r} does not match the "
                    f"space's {name} {theirs!r}"
                )

    def subset(self, inputs: np.ndarray | list[int]) -> AccuracyProfile:
        """A profile of only the inputs at ``inputs`` (in that order), e.g. a split
        into the inputs a learned router trains on and those it is tested on."""
        index = np.asarray(inputs, dtype=np.int64)
        return AccuracyProfile(
            workflow=self.workflow,
            family=self.family,
            radix=self.radix,
            correct=self.correct[index],
            metadata={k: v[index] for k, v in self.metadata.items()},
        )

    def save(self, path: str | Path) -> None:
        """Write the profile to ``path`` as an uncompressed ``.npz`` file.

        Metadata arrays must hold numbers, booleans or strings; string arrays (numpy
        ``str`` or object arrays of ``str``) are stored as UTF-8 bytes and offsets.

        Raises:
            ProfileError: a metadata array holds something other than those.
        """
        arrays: dict[str, np.ndarray] = {
            "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
            "workflow": np.array(self.workflow),
            "family": np.array(self.family),
            "radix": np.array(self.radix, dtype=np.int64),
            "num_configs": np.array(self.num_configs, dtype=np.int64),
            "correct_bits": np.packbits(self.correct, axis=1),
        }
        for name, values in self.metadata.items():
            if values.dtype.kind in "US" or values.dtype == object:
                data, offsets = _encode_text(name, values)
                arrays[f"{_TEXT_PREFIX}{name}.data"] = data
                arrays[f"{_TEXT_PREFIX}{name}.offsets"] = offsets
            elif values.dtype.kind in "biuf":
                arrays[f"{_META_PREFIX}{name}"] = values
            else:
                raise ProfileError(
                    f"profile {self.workflow!r}: metadata {name!r}: cannot store "
                    f"dtype {values.dtype}"
                )
        with open(path, "wb") as out:
            # numpy's stub reads ** as possibly holding its allow_pickle flag.
            np.savez(out, **arrays)  # type: ignore[arg-type]
        logger.debug(
            "saved profile %s: %d inputs x %d configs to %s",
            self.workflow,
            self.num_inputs,
            self.num_configs,
            path,
        )

    @staticmethod
    def load(path: str | Path) -> AccuracyProfile:
        """Read a profile written by :meth:`save`, checking it on the way.

        Raises:
            ProfileError: the file is missing or not an ``.npz`` archive, lacks a
                field, has another format version, or its shapes disagree (radix
                product against the number of configurations, bit rows against
                metadata rows, set padding bits); one line naming the file.
        """
        where = str(path)
        arrays = _read_npz(where)

        # Structure: version, names, radix and the packed table's shape.
        for key in _REQUIRED_KEYS + ("num_configs",):
            if key not in arrays:
                raise ProfileError(f"{where}: missing field {key!r}")
        version = _scalar(where, arrays, "format_version")
        if version != FORMAT_VERSION:
            raise ProfileError(
                f"{where}: format_version: expected {FORMAT_VERSION}, found {version}"
            )
        radix_array = arrays["radix"]
        if radix_array.ndim != 1 or radix_array.dtype.kind not in "iu":
            raise ProfileError(f"{where}: radix: expected a 1-D integer array")
        radix = tuple(int(r) for r in radix_array)
        num_configs = _scalar(where, arrays, "num_configs")
        bits = arrays["correct_bits"]
        if bits.ndim != 2 or bits.dtype != np.uint8:
            raise ProfileError(
                f"{where}: correct_bits: expected a 2-D uint8 array, found "
                f"{bits.ndim}-D {bits.dtype}"
            )
        if num_configs <= 0 or bits.shape[1] != (num_configs + 7) // 8:
            raise ProfileError(
                f"{where}: correct_bits: {bits.shape[1]} bytes per input cannot hold "
                f"{num_configs} configurations"
            )

        # The table itself: unpack, then refuse set bits past the last configuration.
        correct = np.unpackbits(bits, axis=1, count=num_configs).astype(bool)
        if num_configs % 8 and np.any(bits[:, -1] & ((1 << (8 - num_configs % 8)) - 1)):
            raise ProfileError(
                f"{where}: correct_bits: padding bits past configuration "
                f"{num_configs - 1} are set (corrupted file)"
            )

        # Metadata, then the same checks the constructor makes.
        metadata = _read_metadata(where, arrays)
        _validate(where, radix, correct.shape, metadata)
        profile = AccuracyProfile(
            workflow=str(arrays["workflow"]),
            family=str(arrays["family"]),
            radix=radix,
            correct=correct,
            metadata=metadata,
        )
        logger.debug(
            "loaded profile %s: %d inputs x %d configs from %s",
            profile.workflow,
            profile.num_inputs,
            profile.num_configs,
            where,
        )
        return profile


def load_profile(path: str | Path) -> AccuracyProfile:
    """Read a profile file; the same as :meth:`AccuracyProfile.load`."""
    return AccuracyProfile.load(path)


def _validate(
    where: str,
    radix: tuple[int, ...],
    shape: tuple[int, ...],
    metadata: dict[str, np.ndarray],
) -> None:
    if len(shape) != 2:
        raise ProfileError(f"{where}: correct: expected 2 axes, found {len(shape)}")
    num_inputs, num_configs = shape
    if num_inputs == 0 or num_configs == 0:
        raise ProfileError(
            f"{where}: correct: empty table ({num_inputs} inputs x {num_configs} "
            "configurations)"
        )
    if not radix or any(r <= 0 for r in radix):
        raise ProfileError(f"{where}: radix: expected positive digits, found {radix}")
    product = int(np.prod(radix, dtype=np.int64))
    if product != num_configs:
        raise ProfileError(
            f"{where}: radix {radix} gives {product} configurations, the table has "
            f"{num_configs}"
        )
    for name, values in metadata.items():
        rows = values.shape[0] if values.ndim else 0
        if rows != num_inputs:
            raise ProfileError(
                f"{where}: metadata {name!r}: {rows} rows, expected one per input "
                f"({num_inputs})"
            )


def _read_npz(where: str) -> dict[str, np.ndarray]:
    # Read every array now, so a truncated member fails here with the file's name.
    # NOTE: the file is opened here, not by np.load, which leaks its own handle when
    # a file starts like a zip archive but is not one.
    try:
        with open(where, "rb") as handle:
            loaded = np.load(handle, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ProfileError(f"{where}: a single array, not an .npz profile")
            with loaded as archive:
                return {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise ProfileError(f"{where}: no such profile file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ProfileError(
            f"{where}: not a readable .npz profile ({reason or type(exc).__name__})"
        ) from exc


def _scalar(where: str, arrays: dict[str, np.ndarray], key: str) -> int:
    value = arrays[key]
    if value.ndim != 0 or value.dtype.kind not in "iu":
        raise ProfileError(f"{where}: {key}: expected an integer scalar")
    return int(value)


def _read_metadata(where: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    metadata = {}
    for key, values in arrays.items():
        if key.startswith(_META_PREFIX):
            metadata[key[len(_META_PREFIX) :]] = values
        elif key.startswith(_TEXT_PREFIX) and key.endswith(".data"):
            name = key[len(_TEXT_PREFIX) : -len(".data")]
            offsets_key = f"{_TEXT_PREFIX}{name}.offsets"
            if offsets_key not in arrays:
                raise ProfileError(f"{where}: metadata {name!r}: offsets missing")
            metadata[name] = _decode_text(where, name, values, arrays[offsets_key])
    return metadata


def _encode_text(name: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if values.ndim != 1:
        raise ProfileError(f"metadata {name!r}: string metadata must be 1-D")
    encoded = []
    for value in values.tolist():
        if not isinstance(value, str):
            raise ProfileError(
                f"metadata {name!r}: expected strings, found {type(value).__name__}"
            )
        encoded.append(value.encode("utf-8"))
    lengths = np.array([len(e) for e in encoded], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    return data, offsets


def _decode_text(
    where: str, name: str, data: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    valid = (
        data.ndim == 1
        and data.dtype == np.uint8
        and offsets.ndim == 1
        and offsets.size >= 1
        and offsets.dtype.kind in "iu"
        and offsets[0] == 0
        and offsets[-1] == data.size
        and bool(np.all(np.diff(offsets) >= 0))
    )
    if not valid:
        raise ProfileError(f"{where}: metadata {name!r}: malformed text offsets")
    raw = data.tobytes()
    out = np.empty(offsets.size - 1, dtype=object)
    try:
        for i in range(out.size):
            out[i] = raw[offsets[i] : offsets[i + 1]].decode("utf-8")
    except UnicodeDecodeError:
        raise ProfileError(f"{where}: metadata {name!r}: not valid UTF-8") from None
    return out
