"""What ``router train`` and ``router eval`` read: a profile and its inputs.

``--profile`` names an accuracy profile:

- ``mmlu``: the RouteLLM MMLU files shipped with aragog (14,042 questions, two
  models); a folder of files in the same layout is read the same way;
- any other path: a profile ``.npz`` file (as ``AccuracyProfile.save`` writes).

``--inputs`` names one input per profile input, in the profile's order:

- ``features``: the profile's own ``features`` metadata (a generated profile's
  noisy view of each input's difficulty), used as is;
- ``prompts`` (or ``mmlu``): the profile's own ``prompt`` metadata, embedded;
- a ``.jsonl`` file: one JSON value per line, a string or an object with a
  ``text`` (or ``prompt``) field, embedded;
- any other file: plain UTF-8 text, one input per line, embedded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aragog.accuracy.mmlu import load_routellm_mmlu
from aragog.accuracy.profile import AccuracyProfile, load_profile
from aragog.errors import ConfigError, ProfileError

MMLU_PROFILE = "mmlu"
FEATURES_INPUTS = "features"
PROMPT_INPUTS = ("prompts", "mmlu")
_TEXT_FIELDS = ("text", "prompt")


@dataclass(frozen=True, slots=True)
class Inputs:
    """One input per profile input: either texts to embed or ready features.

    Attributes:
        where: what ``--inputs`` said (for messages).
        texts: the texts, or ``None`` for ready features.
        features: float32 ``[n, d]``, or ``None`` for texts.
    """

    where: str
    texts: tuple[str, ...] | None
    features: np.ndarray | None

    @property
    def num_inputs(self) -> int:
        if self.texts is not None:
            return len(self.texts)
        assert self.features is not None, "inputs hold neither texts nor features"
        return int(self.features.shape[0])


def read_profile(spec: str) -> AccuracyProfile:
    """The profile ``--profile`` names (see the module docstring).

    Raises:
        ProfileError: the file or folder is missing or malformed, or holds no input.
    """
    if spec == MMLU_PROFILE:
        return load_routellm_mmlu()
    if Path(spec).is_dir():
        return load_routellm_mmlu(spec)
    return load_profile(spec)


def read_inputs(spec: str, profile: AccuracyProfile) -> Inputs:
    """The inputs ``--inputs`` names, checked to be one per input of ``profile``.

    Raises:
        ProfileError: the profile lacks the metadata asked for, or the inputs are
            not as many as the profile's inputs.
        ConfigError: the file is missing or malformed (the line is named).
    """
    # The profile's own metadata, or a file.
    if spec == FEATURES_INPUTS:
        inputs = Inputs(spec, None, _metadata_features(profile))
    elif spec in PROMPT_INPUTS:
        inputs = Inputs(spec, _metadata_texts(profile), None)
    else:
        inputs = Inputs(spec, _file_texts(spec), None)

    # One per profile input, in order.
    if inputs.num_inputs != profile.num_inputs:
        raise ProfileError(
            f"--inputs {spec}: {inputs.num_inputs} inputs, the profile "
            f"{profile.workflow!r} has {profile.num_inputs}"
        )
    return inputs


def _metadata_features(profile: AccuracyProfile) -> np.ndarray:
    values = profile.metadata.get("features")
    if values is None or values.ndim != 2 or values.dtype.kind not in "iuf":
        raise ProfileError(
            f"--inputs features: profile {profile.workflow!r} has no numeric "
            "[inputs, dim] 'features' metadata (generated profiles have it)"
        )
    return np.asarray(values, dtype=np.float32)


def _metadata_texts(profile: AccuracyProfile) -> tuple[str, ...]:
    values = profile.metadata.get("prompt")
    if values is None or values.ndim != 1:
        raise ProfileError(
            f"--inputs prompts: profile {profile.workflow!r} has no 'prompt' "
            "metadata; give a .jsonl or text file of inputs"
        )
    return tuple(str(v) for v in values.tolist())


def _file_texts(spec: str) -> tuple[str, ...]:
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"--inputs {spec}: no such file (or say features, prompts or mmlu)"
        )
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"--inputs {spec}: not UTF-8 text") from None
    if path.suffix != ".jsonl":
        return tuple(lines)
    texts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        texts.append(_json_text(spec, number, line))
    return tuple(texts)


def _json_text(spec: str, number: int, line: str) -> str:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{spec}: line {number}: not JSON ({exc.msg})") from None
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for name in _TEXT_FIELDS:
            if isinstance(value.get(name), str):
                return str(value[name])
    raise ConfigError(
        f"{spec}: line {number}: expected a string or an object with a 'text' "
        f"field, found {type(value).__name__}"
    )
