"""Request traces: when requests arrive and how long their prompts and outputs are.

A :class:`Trace` is the open-loop input of a simulation: one arrival time and one pair
of token counts per request, in arrival order, with time counted in seconds from the
first arrival. The simulator replays it; nothing in it depends on how fast the
requests are served.

Loaders read three public formats (see ``shared/data/README.md`` of the project):

- Azure LLM inference 2023, conversation and code (``load_azure``): CSV with
  ``TIMESTAMP`` (wall clock, 7 fractional digits), ``ContextTokens``,
  ``GeneratedTokens``.
- BurstGPT (``load_burstgpt``): CSV with ``Timestamp`` (s), ``Request tokens``,
  ``Response tokens`` (and ``Model``, ``Total tokens``, ``Log Type``, not read).
- Mooncake (``load_mooncake``): JSON lines with ``timestamp`` (ms), ``input_length``,
  ``output_length`` (and ``hash_ids``, not read).

Every loader sorts the requests by arrival (stably) and shifts time so that the first
arrival is at 0. A row that cannot be read stops the load with a :class:`TraceError`
whose one-line message names the file, the row (1-based, as an editor numbers lines)
and the field.

The transforms change the load a trace puts on a cluster while keeping what makes it
real: :func:`rescale_to_rate` speeds it up or slows it down keeping its burstiness,
:func:`take` cuts (or repeats) it to a length, :func:`poisson_arrivals` keeps its token
lengths but replaces its arrivals by a Poisson process, the usual synthetic baseline.

The shipped trace ``azure-conv`` is one hour (2023-11-16, 19,366 requests) of the
Azure LLM inference trace, file ``data/AzureLLMInferenceTrace_conv.csv`` of the
AzurePublicDataset repository, under CC-BY-4.0; cite Patel et al., "Splitwise:
Efficient generative LLM inference using phase splitting", ISCA 2024.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import operator
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import IO, Any

import numpy as np

from aragog.errors import TraceError

logger = logging.getLogger(__name__)

# Shipped trace name -> file under aragog/data/traces.
SHIPPED_TRACES = {"azure-conv": "azure_llm_2023_conv.csv"}

# The columns each loader reads: arrival time, prompt tokens, output tokens.
AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
BURSTGPT_COLUMNS = ("Timestamp", "Request tokens", "Response tokens")
MOONCAKE_FIELDS = ("timestamp", "input_length", "output_length")

# Header names that identify a CSV format, for load_trace's detection.
_AZURE_HEADER_NAMES = frozenset(AZURE_COLUMNS)
_BURSTGPT_HEADER_NAMES = frozenset(
    (*BURSTGPT_COLUMNS, "Model", "Total tokens", "Log Type")
)

SECONDS_PER_DAY = 86_400.0

# "2023-11-16 18:15:46.6805900": datetime.fromisoformat of Python 3.10 rejects the
# seventh fractional digit, and strptime is several times slower; a regex and a
# per-day cache parse the shipped hour in a few tens of milliseconds.
_AZURE_TIMESTAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2})[ T](\d{2}):(\d{2}):(\d{2}(?:\.\d*)?)"
)

# A parser of one time cell: (text, where, row, field) -> seconds.
_TimeParser = Callable[[str, str, int, str], float]


@dataclass(frozen=True, slots=True, eq=False)
class Trace:
    """Requests of one trace, in arrival order.

    The arrays are copied on construction and made read-only, so a trace can be shared
    between simulations without one changing another's input. Equality is identity
    (comparing arrays element-wise is rarely what a caller means).

    Attributes:
        name: where the trace came from, for logs and results (a shipped name or the
            file's stem); the transforms keep it.
        arrival_s: arrival time of each request in seconds, float64, non-decreasing,
            the first at exactly 0.0.
        context_tokens: prompt length of each request, int64, >= 0.
        generated_tokens: output length of each request, int64, >= 0. A request that
            failed in production may have 0 (BurstGPT logs them).

    Raises:
        TraceError: the arrays differ in length or are not 1-D, an arrival is not
            finite, the first arrival is not 0, arrivals decrease, or a count is
            negative or not a whole number.
    """

    name: str
    arrival_s: np.ndarray
    context_tokens: np.ndarray
    generated_tokens: np.ndarray

    def __post_init__(self) -> None:
        # Copy into the documented dtypes, checking counts on the way.
        arrival_s = np.array(self.arrival_s, dtype=np.float64)
        context_tokens = _as_counts(self.context_tokens, self.name, "context_tokens")
        generated_tokens = _as_counts(
            self.generated_tokens, self.name, "generated_tokens"
        )

        # Shapes, then the arrival invariants the simulator relies on.
        shapes = (arrival_s.shape, context_tokens.shape, generated_tokens.shape)
        if arrival_s.ndim != 1 or len(set(shapes)) != 1:
            raise TraceError(
                f"{self.name}: arrival_s, context_tokens, generated_tokens: expected "
                f"1-D arrays of one length, found shapes {shapes}"
            )
        if arrival_s.size:
            if not np.all(np.isfinite(arrival_s)):
                raise TraceError(f"{self.name}: arrival_s: found a non-finite time")
            if arrival_s[0] != 0.0:
                raise TraceError(
                    f"{self.name}: arrival_s: expected the first arrival at 0.0, "
                    f"found {arrival_s[0]}"
                )
            decreasing = np.flatnonzero(np.diff(arrival_s) < 0.0)
            if decreasing.size:
                i = int(decreasing[0])
                raise TraceError(
                    f"{self.name}: arrival_s: expected non-decreasing times, found "
                    f"{arrival_s[i + 1]} after {arrival_s[i]} at index {i + 1}"
                )

        for array in (arrival_s, context_tokens, generated_tokens):
            array.setflags(write=False)
        object.__setattr__(self, "arrival_s", arrival_s)
        object.__setattr__(self, "context_tokens", context_tokens)
        object.__setattr__(self, "generated_tokens", generated_tokens)

    def __repr__(self) -> str:
        return (
            f"Trace(name={self.name!r}, num_requests={self.num_requests}, "
            f"duration_s={self.duration_s:.3f})"
        )

    @property
    def num_requests(self) -> int:
        return int(self.arrival_s.size)

    @property
    def duration_s(self) -> float:
        """Time from the first arrival to the last; 0.0 for an empty trace."""
        return float(self.arrival_s[-1]) if self.arrival_s.size else 0.0

    @property
    def mean_rate_rps(self) -> float:
        """Requests per second: the inverse of the mean inter-arrival time.

        That is ``(num_requests - 1) / duration_s``, not ``num_requests /
        duration_s``: n requests span n - 1 gaps, and the rate of the process that
        made them is one over the mean gap. It is the rate :func:`rescale_to_rate`
        sets and :func:`take` keeps when it repeats a trace. 0.0 for fewer than two
        requests; infinite when they all arrive at once.
        """
        if self.num_requests < 2:
            return 0.0
        if self.duration_s == 0.0:
            return math.inf
        return (self.num_requests - 1) / self.duration_s

    def head(self, n: int) -> Trace:
        """The first ``n`` requests (all of them if the trace holds fewer).

        Raises:
            TraceError: ``n`` is negative.
        """
        n = operator.index(n)
        if n < 0:
            raise TraceError(f"{self.name}: head: n: expected >= 0, found {n}")
        return Trace(
            self.name,
            self.arrival_s[:n],
            self.context_tokens[:n],
            self.generated_tokens[:n],
        )


def load_azure(path: str | os.PathLike[str]) -> Trace:
    """Load an Azure LLM inference trace (2023, conversation or code) from a CSV file.

    Reads the columns ``TIMESTAMP`` (``YYYY-MM-DD HH:MM:SS.fffffff``, a wall clock
    without time zone), ``ContextTokens`` and ``GeneratedTokens``; other columns are
    ignored. The trace is named after the file's stem.

    Raises:
        TraceError: the file cannot be read, lacks a column, or a row holds a bad
            timestamp, a non-numeric or negative count; or it holds no request.
    """
    return _load_file(Path(path), _parse_azure)


def load_burstgpt(path: str | os.PathLike[str]) -> Trace:
    """Load a BurstGPT trace (``BurstGPT_*.csv``).

    Reads ``Timestamp`` (seconds), ``Request tokens`` and ``Response tokens``; the
    ``Model``, ``Total tokens`` and ``Log Type`` columns are not read, so the trace
    mixes every model and log type in the file. NOTE: BurstGPT logs failed requests
    too, with 0 response tokens. They are kept: they did arrive and did occupy a
    prefill, and dropping them would lower the real arrival rate. A caller that
    wants only successes can filter on ``generated_tokens > 0``. Rows out of
    timestamp order are sorted (stably).

    Raises:
        TraceError: as :func:`load_azure`.
    """
    return _load_file(Path(path), _parse_burstgpt)


def load_mooncake(path: str | os.PathLike[str]) -> Trace:
    """Load a Mooncake trace (``*.jsonl``): one JSON object per line.

    Reads ``timestamp`` (milliseconds, converted to seconds), ``input_length`` and
    ``output_length``; ``hash_ids`` (prefix-cache block ids) and other keys are not
    read. Blank lines are skipped.

    Raises:
        TraceError: the file cannot be read, a line is not a JSON object, lacks a
            field, or holds a non-numeric or negative value; or it holds no request.
    """
    return _load_file(Path(path), _parse_mooncake)


def load_trace(name_or_path: str | os.PathLike[str]) -> Trace:
    """Load a shipped trace by name, or a trace file in any supported format.

    Args:
        name_or_path: ``"azure-conv"`` (the hour of the Azure conversation trace that
            ships with aragog), or the path of a file. A ``.jsonl`` file is read as
            Mooncake; any other file by its first non-blank line: a JSON object means
            Mooncake, a CSV header with ``TIMESTAMP``/``ContextTokens``/
            ``GeneratedTokens`` means Azure, one with BurstGPT's columns BurstGPT.

    Raises:
        TraceError: no such shipped trace or file, an unknown format (naming the
            header row), or any error of the format's loader.
    """
    # A shipped name reads the packaged file, wherever the package is installed.
    if isinstance(name_or_path, str) and name_or_path in SHIPPED_TRACES:
        file_name = SHIPPED_TRACES[name_or_path]
        ref = resources.files("aragog.data") / "traces" / file_name
        text = ref.read_text(encoding="utf-8-sig")
        return _parse_azure(io.StringIO(text), file_name, name_or_path)

    # Otherwise a file, whose format its extension or first line tells.
    path = Path(name_or_path)
    if not path.is_file():
        raise TraceError(
            f"{path}: no such trace file, and not a shipped trace "
            f"(one of {', '.join(SHIPPED_TRACES)})"
        )
    return _load_file(path, _detect_format(path))


def rescale_to_rate(trace: Trace, rate_rps: float) -> Trace:
    """Stretch or compress time so that the trace's mean rate is ``rate_rps``.

    Every arrival time is multiplied by one factor, ``mean_rate_rps / rate_rps``, so
    the shape of the arrival process is kept: bursts stay bursts, and the coefficient
    of variation of inter-arrival times is unchanged. Token lengths are untouched.
    This is how a production trace is replayed at a load a simulated cluster can
    sustain; :func:`poisson_arrivals` would throw the burstiness away.

    Raises:
        TraceError: ``rate_rps`` is not positive and finite, or the trace has fewer
            than two requests or zero duration (it has no rate to scale).
    """
    _check_rate(trace, rate_rps)
    if trace.num_requests < 2 or trace.duration_s == 0.0:
        raise TraceError(
            f"{trace.name}: cannot rescale {trace.num_requests} request(s) over "
            f"{trace.duration_s} s: the trace has no rate to scale"
        )
    scale = trace.mean_rate_rps / rate_rps
    return Trace(
        trace.name,
        trace.arrival_s * scale,
        trace.context_tokens,
        trace.generated_tokens,
    )


def take(
    trace: Trace, num_requests: int | None = None, duration_s: float | None = None
) -> Trace:
    """The first requests of the trace, repeating it if it runs out.

    With ``num_requests``, the first that many requests; with ``duration_s``, those
    that arrive before ``duration_s`` (a request at exactly ``duration_s`` is left
    out); with both, whichever bound is reached first.

    When more is asked for than the trace holds, it wraps around: the trace is
    replayed again and again, each lap starting one mean inter-arrival time
    (``trace.duration_s / (trace.num_requests - 1)``) after the previous lap's last
    request, with the same inter-arrivals and token lengths. So long simulations at
    high rates still get requests, and the mean rate of the result stays the trace's
    mean rate (exactly so over whole laps). The repetition is visible to a cache or a
    predictor that remembers requests: the same lengths come back in the same order.

    Raises:
        TraceError: neither bound is given, a bound is negative (or not finite), or
            the trace must wrap but has fewer than two requests (no inter-arrival to
            repeat) or, for ``duration_s``, zero duration (it would never end).
    """
    # Check the bounds.
    if num_requests is None and duration_s is None:
        raise TraceError(f"{trace.name}: take: give num_requests, duration_s or both")
    counts = []
    if num_requests is not None:
        num_requests = operator.index(num_requests)
        if num_requests < 0:
            raise TraceError(
                f"{trace.name}: take: num_requests: expected >= 0, found {num_requests}"
            )
        counts.append(num_requests)
    if duration_s is not None:
        if not (math.isfinite(duration_s) and duration_s >= 0.0):
            raise TraceError(
                f"{trace.name}: take: duration_s: expected a finite time >= 0, "
                f"found {duration_s}"
            )
        counts.append(_num_arrivals_before(trace, duration_s))

    # Repeat the trace lap after lap until it holds that many requests.
    return _repeat(trace, min(counts))


def poisson_arrivals(trace: Trace, rate_rps: float, seed: int) -> Trace:
    """The trace's token lengths, with arrivals from a Poisson process of ``rate_rps``.

    Inter-arrival times are drawn independently from an exponential distribution of
    mean ``1 / rate_rps`` by a numpy Generator seeded with ``seed``, so the result is
    reproducible. The first request still arrives at 0. This is the memoryless
    baseline (coefficient of variation 1) to compare a bursty trace against.

    Raises:
        TraceError: ``rate_rps`` is not positive and finite.
    """
    _check_rate(trace, rate_rps)
    rng = np.random.default_rng(seed)
    gaps_s = rng.exponential(1.0 / rate_rps, size=max(trace.num_requests - 1, 0))
    arrival_s = np.concatenate(([0.0], np.cumsum(gaps_s)))[: trace.num_requests]
    return Trace(trace.name, arrival_s, trace.context_tokens, trace.generated_tokens)


def summarize(trace: Trace) -> dict[str, str | int | float]:
    """Headline numbers of a trace, for logs and the CLI.

    Keys: ``name``, ``num_requests``, ``duration_s``, ``mean_rate_rps`` (see
    :attr:`Trace.mean_rate_rps`), ``interarrival_cv`` (standard deviation over mean
    of the gaps between arrivals: 1 for Poisson, more for bursty traffic),
    ``mean_context_tokens``, ``p50_context_tokens``, ``mean_generated_tokens``,
    ``p50_generated_tokens``. Values are plain Python numbers. A statistic that is
    undefined (the CV of fewer than two requests or of simultaneous arrivals, the
    mean of an empty trace) is NaN.
    """
    return {
        "name": trace.name,
        "num_requests": trace.num_requests,
        "duration_s": trace.duration_s,
        "mean_rate_rps": trace.mean_rate_rps,
        "interarrival_cv": _interarrival_cv(trace.arrival_s),
        "mean_context_tokens": _mean(trace.context_tokens),
        "p50_context_tokens": _median(trace.context_tokens),
        "mean_generated_tokens": _mean(trace.generated_tokens),
        "p50_generated_tokens": _median(trace.generated_tokens),
    }


# --- Reading files ----------------------------------------------------------------


def _load_file(path: Path, parse: Callable[[IO[str], str, str], Trace]) -> Trace:
    where = str(path)
    try:
        # utf-8-sig: a spreadsheet's byte-order mark would otherwise hide the header.
        with open(path, encoding="utf-8-sig", newline="") as file:
            return parse(file, where, path.stem)
    except FileNotFoundError as err:
        raise TraceError(f"{where}: no such trace file") from err
    except UnicodeDecodeError as err:
        raise TraceError(
            f"{where}: not UTF-8 text ({err.reason} at byte {err.start})"
        ) from err
    except OSError as err:
        raise TraceError(f"{where}: cannot read the file: {err.strerror}") from err


def _detect_format(path: Path) -> Callable[[IO[str], str, str], Trace]:
    if path.suffix.lower() == ".jsonl":
        return _parse_mooncake

    # Find the first non-blank line: a JSON object, or a CSV header.
    where = str(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:
            first = next(((i, t) for i, t in enumerate(file, 1) if t.strip()), None)
    except UnicodeDecodeError as err:
        raise TraceError(
            f"{where}: not UTF-8 text ({err.reason} at byte {err.start})"
        ) from err
    except OSError as err:
        raise TraceError(f"{where}: cannot read the file: {err.strerror}") from err
    if first is None:
        raise TraceError(f"{where}: empty file, no header and no request")
    row, line = first
    if line.lstrip().startswith("{"):
        return _parse_mooncake

    # Which format's column names the header holds.
    names = [name.strip() for name in next(csv.reader([line]))]
    if _AZURE_HEADER_NAMES.intersection(names):
        return _parse_azure
    if _BURSTGPT_HEADER_NAMES.intersection(names):
        return _parse_burstgpt
    raise TraceError(
        f"{where}: row {row}: header: unknown trace format, expected the columns of "
        f"Azure ({', '.join(AZURE_COLUMNS)}) or BurstGPT "
        f"({', '.join(BURSTGPT_COLUMNS)}), or a Mooncake .jsonl; "
        f"found {', '.join(names)}"
    )


def _parse_azure(file: IO[str], where: str, name: str) -> Trace:
    return _parse_csv(file, where, name, AZURE_COLUMNS, _azure_time_parser())


def _parse_burstgpt(file: IO[str], where: str, name: str) -> Trace:
    return _parse_csv(file, where, name, BURSTGPT_COLUMNS, _parse_seconds)


def _parse_csv(
    file: IO[str],
    where: str,
    name: str,
    columns: tuple[str, str, str],
    parse_time: _TimeParser,
) -> Trace:
    # The header: the first non-blank row, holding every column read.
    reader = csv.reader(file)
    for header in reader:
        if header:
            break
    else:
        raise TraceError(f"{where}: empty file, no header and no request")
    index = {column.strip(): i for i, column in enumerate(header)}
    for column in columns:
        if column not in index:
            raise TraceError(
                f"{where}: row {reader.line_num}: {column}: missing column, the "
                f"header has {', '.join(c.strip() for c in header)}"
            )
    time_i, context_i, generated_i = (index[c] for c in columns)
    width = max(time_i, context_i, generated_i) + 1

    # One request per non-blank row. line_num is the editor's line of the row's end.
    arrivals_s: list[float] = []
    contexts: list[int] = []
    generateds: list[int] = []
    for cells in reader:
        if not cells:
            continue
        row = reader.line_num
        if len(cells) < width:
            missing = next(c for c in columns if index[c] >= len(cells))
            raise TraceError(
                f"{where}: row {row}: {missing}: missing, the row has only "
                f"{len(cells)} field(s)"
            )
        arrivals_s.append(parse_time(cells[time_i], where, row, columns[0]))
        contexts.append(_parse_count(cells[context_i], where, row, columns[1]))
        generateds.append(_parse_count(cells[generated_i], where, row, columns[2]))
    return _build(name, where, arrivals_s, contexts, generateds)


def _parse_mooncake(file: IO[str], where: str, name: str) -> Trace:
    time_field, context_field, generated_field = MOONCAKE_FIELDS
    arrivals_s: list[float] = []
    contexts: list[int] = []
    generateds: list[int] = []
    for row, line in enumerate(file, start=1):
        # One JSON object per non-blank line, holding the three fields read.
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise TraceError(
                f"{where}: row {row}: not valid JSON: {err.msg} (column {err.colno})"
            ) from err
        if not isinstance(record, dict):
            raise TraceError(
                f"{where}: row {row}: expected a JSON object, found "
                f"{type(record).__name__}"
            )
        for field in MOONCAKE_FIELDS:
            if field not in record:
                raise TraceError(f"{where}: row {row}: {field}: missing field")

        timestamp_ms = _json_number(record[time_field], where, row, time_field)
        arrivals_s.append(timestamp_ms / 1000.0)
        contexts.append(_json_count(record[context_field], where, row, context_field))
        generateds.append(
            _json_count(record[generated_field], where, row, generated_field)
        )
    return _build(name, where, arrivals_s, contexts, generateds)


def _build(
    name: str,
    where: str,
    arrivals_s: list[float],
    contexts: list[int],
    generateds: list[int],
) -> Trace:
    if not arrivals_s:
        raise TraceError(f"{where}: no request, the file holds only a header")
    arrival_s = np.array(arrivals_s, dtype=np.float64)
    context_tokens = np.array(contexts, dtype=np.int64)
    generated_tokens = np.array(generateds, dtype=np.int64)

    # Logs are written as requests finish, so a few rows may be out of order.
    num_out_of_order = int(np.count_nonzero(np.diff(arrival_s) < 0.0))
    if num_out_of_order:
        logger.info(
            "%s: %d row(s) out of timestamp order; sorting the trace by arrival",
            where,
            num_out_of_order,
        )
        order = np.argsort(arrival_s, kind="stable")
        arrival_s = arrival_s[order]
        context_tokens = context_tokens[order]
        generated_tokens = generated_tokens[order]

    trace = Trace(name, arrival_s - arrival_s[0], context_tokens, generated_tokens)
    logger.info(
        "loaded trace %s from %s: %d requests over %.1f s (%.3f req/s)",
        name,
        where,
        trace.num_requests,
        trace.duration_s,
        trace.mean_rate_rps,
    )
    return trace


def _azure_time_parser() -> _TimeParser:
    """A parser of Azure timestamps into seconds from midnight of the first row's day.

    Counting from the first day, not from year 1, keeps float64 at sub-microsecond
    resolution. Each distinct date is checked and converted once.
    """
    day_to_offset_s: dict[str, float] = {}
    first_ordinal: list[int] = []

    def parse(text: str, where: str, row: int, field: str) -> float:
        match = _AZURE_TIMESTAMP.fullmatch(text.strip())
        if match is None:
            raise TraceError(
                f"{where}: row {row}: {field}: expected YYYY-MM-DD HH:MM:SS.fffffff, "
                f"found {text!r}"
            )
        day, hours, minutes, seconds = match.groups()
        offset_s = day_to_offset_s.get(day)
        if offset_s is None:
            try:
                ordinal = date.fromisoformat(day).toordinal()
            except ValueError as err:
                raise TraceError(
                    f"{where}: row {row}: {field}: no such date {day!r}"
                ) from err
            if not first_ordinal:
                first_ordinal.append(ordinal)
            offset_s = (ordinal - first_ordinal[0]) * SECONDS_PER_DAY
            day_to_offset_s[day] = offset_s
        hour, minute, second = int(hours), int(minutes), float(seconds)
        if hour > 23 or minute > 59 or second >= 61.0:
            raise TraceError(
                f"{where}: row {row}: {field}: no such time of day {text.strip()!r}"
            )
        return offset_s + hour * 3600.0 + minute * 60.0 + second

    return parse


def _parse_seconds(text: str, where: str, row: int, field: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise TraceError(
            f"{where}: row {row}: {field}: expected a number of seconds, found {text!r}"
        )
    return value


def _parse_count(text: str, where: str, row: int, field: str) -> int:
    try:
        value = int(text)
    except ValueError:
        # Some exports write counts as floats ("12.0"); accept whole ones only.
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not number.is_integer():
            raise TraceError(
                f"{where}: row {row}: {field}: expected a whole number of tokens, "
                f"found {text!r}"
            ) from None
        value = int(number)
    if value < 0:
        raise TraceError(
            f"{where}: row {row}: {field}: expected a count >= 0, found {value}"
        )
    return value


def _json_number(value: Any, where: str, row: int, field: str) -> float:
    # bool is an int in Python, but `true` is not a timestamp.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TraceError(
            f"{where}: row {row}: {field}: expected a number, found {value!r}"
        )
    if not math.isfinite(value):
        raise TraceError(
            f"{where}: row {row}: {field}: expected a finite number, found {value!r}"
        )
    return float(value)


def _json_count(value: Any, where: str, row: int, field: str) -> int:
    if isinstance(value, bool) or not (
        isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    ):
        raise TraceError(
            f"{where}: row {row}: {field}: expected a whole number of tokens, "
            f"found {value!r}"
        )
    if value < 0:
        raise TraceError(
            f"{where}: row {row}: {field}: expected a count >= 0, found {value!r}"
        )
    return int(value)


# --- Checks and statistics ----------------------------------------------------------


def _as_counts(values: Iterable[Any], name: str, field: str) -> np.ndarray:
    array = np.asarray(values)
    if array.size == 0:
        return np.zeros(array.shape, dtype=np.int64)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array) & (array == np.round(array))):
            raise TraceError(f"{name}: {field}: expected whole numbers of tokens")
    elif array.dtype.kind not in "iu":
        raise TraceError(
            f"{name}: {field}: expected integer token counts, found dtype {array.dtype}"
        )
    counts = array.astype(np.int64)
    if counts.size and int(counts.min()) < 0:
        raise TraceError(
            f"{name}: {field}: expected counts >= 0, found {int(counts.min())}"
        )
    return counts


def _check_rate(trace: Trace, rate_rps: float) -> None:
    if not (math.isfinite(rate_rps) and rate_rps > 0.0):
        raise TraceError(
            f"{trace.name}: rate_rps: expected a positive finite rate, found {rate_rps}"
        )


def _lap_period_s(trace: Trace) -> float:
    # A lap is the trace plus one mean gap, so n requests per n mean gaps.
    n = trace.num_requests
    return trace.duration_s + trace.duration_s / (n - 1)


def _num_arrivals_before(trace: Trace, duration_s: float) -> int:
    """How many requests of the trace, repeated endlessly, arrive before a time."""
    n = trace.num_requests
    if n == 0 or duration_s <= trace.duration_s:
        return int(np.searchsorted(trace.arrival_s, duration_s, side="left"))
    if n < 2 or trace.duration_s == 0.0:
        raise TraceError(
            f"{trace.name}: take: duration_s: cannot repeat {n} request(s) over "
            f"{trace.duration_s} s to last {duration_s} s"
        )

    # Walk laps from one before the estimate (which floating point may overshoot)
    # until one is not entirely before duration_s. Arrival times are formed exactly
    # as in _repeat, so the count agrees with the arrivals it produces.
    period_s = _lap_period_s(trace)
    lap = max(int(duration_s // period_s) - 1, 0)
    while True:
        lap_arrival_s = lap * period_s + trace.arrival_s
        num_in_lap = int(np.searchsorted(lap_arrival_s, duration_s, side="left"))
        if num_in_lap < n:
            return lap * n + num_in_lap
        lap += 1


def _repeat(trace: Trace, num_requests: int) -> Trace:
    n = trace.num_requests
    if num_requests <= n:
        return trace.head(num_requests)
    if n < 2:
        raise TraceError(
            f"{trace.name}: take: num_requests: cannot repeat {n} request(s) to "
            f"{num_requests}, the trace has no inter-arrival time to repeat"
        )
    lap, position = np.divmod(np.arange(num_requests, dtype=np.int64), n)
    logger.debug(
        "trace %s: repeating %d requests %d times to %d",
        trace.name,
        n,
        int(lap[-1]) + 1,
        num_requests,
    )
    return Trace(
        trace.name,
        lap * _lap_period_s(trace) + trace.arrival_s[position],
        trace.context_tokens[position],
        trace.generated_tokens[position],
    )


def _interarrival_cv(arrival_s: np.ndarray) -> float:
    if arrival_s.size < 2:
        return math.nan
    gaps_s = np.diff(arrival_s)
    mean_gap_s = float(gaps_s.mean())
    if mean_gap_s == 0.0:
        return math.nan
    return float(gaps_s.std()) / mean_gap_s


def _mean(counts: np.ndarray) -> float:
    return float(counts.mean()) if counts.size else math.nan


def _median(counts: np.ndarray) -> float:
    return float(np.median(counts)) if counts.size else math.nan
