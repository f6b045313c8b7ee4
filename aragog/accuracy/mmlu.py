"""The RouteLLM MMLU responses as a one-agent, two-model accuracy profile.

RouteLLM (Ong et al., 2024) published, for every MMLU question, whether Mixtral-8x7B
Instruct and GPT-4 (1106 preview) answered it correctly; aragog ships a copy under
``aragog/data/accuracy/routellm_mmlu/`` (see NOTICE). Read as a profile it is the only
real per-input accuracy table aragog has: one agent with two candidate models, so
configuration 0 is the cheap model (Mixtral) and configuration 1 the expensive one
(GPT-4). It anchors the synthetic generator (:mod:`aragog.accuracy.generator`), whose
constants are fitted to its joint distribution.

Each file holds one subject (``mmlu_<subject>.csv``) with a header ``prompt``, then one
``True``/``False`` column per model. Prompts span several lines and contain quotes, so
the files are read with the :mod:`csv` module, never split by lines.
"""

from __future__ import annotations

import csv
import io
import logging
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aragog.accuracy.profile import AccuracyProfile
from aragog.errors import ProfileError

if TYPE_CHECKING:
    # Only for annotations: the runtime home of Traversable moved in Python 3.11.
    from importlib.abc import Traversable

logger = logging.getLogger(__name__)

# Digit order of the single agent: cheapest first, as in every configuration space.
MMLU_MODELS = ("mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview")
MMLU_WORKFLOW = "mmlu"
MMLU_FAMILY = "routellm"

_FILE_PREFIX = "mmlu_"
_BOOLEANS = {"True": True, "False": False}


def load_routellm_mmlu(folder: str | Path | None = None) -> AccuracyProfile:
    """Load the RouteLLM MMLU responses as a profile with radix ``(2,)``.

    Args:
        folder: a folder of ``*.csv`` files in RouteLLM's layout; ``None`` reads the
            copy shipped with aragog. Files are read in name order, so input ids are
            stable across runs.

    Returns:
        A profile whose workflow is ``"mmlu"`` and family ``"routellm"``, with
        metadata ``subject`` (from each file's name, without the ``mmlu_`` prefix)
        and ``prompt`` (the question with its choices), both object arrays of str.

    Raises:
        ProfileError: the folder is missing or has no ``.csv`` file, or a file lacks
            a column, has a short row or a value other than True/False; one line
            naming the file and, where it applies, the line and the column.
    """
    # Find the files: the shipped copy, or the caller's folder.
    root: Traversable
    if folder is None:
        root = resources.files("aragog.data") / "accuracy" / "routellm_mmlu"
        where = "aragog/data/accuracy/routellm_mmlu"
    else:
        root, where = Path(folder), str(folder)
    if not root.is_dir():
        raise ProfileError(f"{where}: no such folder of RouteLLM MMLU files")
    files = sorted(
        (f for f in root.iterdir() if f.name.endswith(".csv")), key=lambda f: f.name
    )
    if not files:
        raise ProfileError(f"{where}: no .csv files in the folder")

    # Read every file; correctness columns follow MMLU_MODELS' order.
    correct: list[tuple[bool, bool]] = []
    subjects: list[str] = []
    prompts: list[str] = []
    for file in files:
        rows = _read_subject(file, f"{where}/{file.name}")
        subject = _subject_of(file.name)
        for prompt, cheap, expensive in rows:
            correct.append((cheap, expensive))
            subjects.append(subject)
            prompts.append(prompt)

    # Strings stay Python objects: a fixed-width array would pad every prompt to the
    # longest (almost 5,000 characters), about 270 MB for the whole set.
    profile = AccuracyProfile(
        workflow=MMLU_WORKFLOW,
        family=MMLU_FAMILY,
        radix=(len(MMLU_MODELS),),
        correct=np.array(correct, dtype=bool),
        metadata={
            "subject": _object_array(subjects),
            "prompt": _object_array(prompts),
        },
    )
    logger.info(
        "loaded RouteLLM MMLU: %d questions in %d subjects from %s",
        profile.num_inputs,
        len(files),
        where,
    )
    return profile


def _read_subject(file: Traversable, where: str) -> list[tuple[str, bool, bool]]:
    # Bytes wrapped by hand: Traversable.open does not promise a newline argument,
    # and csv needs newline="" to keep line breaks inside quoted prompts.
    with io.TextIOWrapper(file.open("rb"), encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise ProfileError(f"{where}: empty file, expected a header row")
            columns = [
                _column(where, header, name) for name in ("prompt",) + MMLU_MODELS
            ]
            rows = []
            for row in reader:
                if len(row) != len(header):
                    raise ProfileError(
                        f"{where}: line {reader.line_num}: {len(row)} fields, the "
                        f"header has {len(header)}"
                    )
                prompt = row[columns[0]]
                cheap = _boolean(where, reader.line_num, header, row, columns[1])
                expensive = _boolean(where, reader.line_num, header, row, columns[2])
                rows.append((prompt, cheap, expensive))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ProfileError(f"{where}: not a readable CSV file ({exc})") from None
    if not rows:
        raise ProfileError(f"{where}: no questions after the header")
    return rows


def _column(where: str, header: list[str], name: str) -> int:
    if name not in header:
        raise ProfileError(
            f"{where}: header: no column {name!r} (found {', '.join(header)})"
        )
    return header.index(name)


def _boolean(
    where: str, line: int, header: list[str], row: list[str], col: int
) -> bool:
    value = row[col].strip()
    if value not in _BOOLEANS:
        raise ProfileError(
            f"{where}: line {line}: column {header[col]!r}: expected True or False, "
            f"found {value[:40]!r}"
        )
    return _BOOLEANS[value]


def _subject_of(file_name: str) -> str:
    stem = file_name[: -len(".csv")]
    return stem[len(_FILE_PREFIX) :] if stem.startswith(_FILE_PREFIX) else stem


def _object_array(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
