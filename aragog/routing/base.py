"""The contract every router meets: an input in, its viable set out.

A router runs once per request, at arrival, and answers the request's *viable set*:
the ids (in the workflow's configuration space) of the configurations it believes
preserve the most expensive configuration's outcome on that input. The scheduler only
ever narrows that set, so a router that leaves a configuration out costs flexibility,
and one that lets a wrong configuration in costs accuracy.

Routers are kept behind a structural Protocol rather than a base class: the oracle, a
learned router and a test double share no code, only this one method.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Router(Protocol):
    """Anything that can name the viable configurations of an input."""

    def viable_set(self, input_index: int) -> np.ndarray:
        """int64 ids of the viable configurations of input ``input_index``, sorted
        ascending, never empty (the most expensive configuration is always in it)."""
        ...


@dataclass(frozen=True, slots=True)
class ViableSets:
    """The viable sets of many inputs in one flat layout (the layout a scheduling
    round reads): input ``i``'s set is ``configs[offsets[i]:offsets[i + 1]]``.

    Attributes:
        offsets: int64 ``[num_inputs + 1]``, starting at 0, non-decreasing.
        configs: int64 ``[offsets[-1]]``, strictly increasing within each input.
    """

    offsets: np.ndarray
    configs: np.ndarray

    @property
    def num_inputs(self) -> int:
        return int(self.offsets.size - 1)

    def sizes(self) -> np.ndarray:
        """int64 ``[num_inputs]``: the number of viable configurations per input."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return self.num_inputs

    def __iter__(self) -> Iterator[np.ndarray]:
        """Each input's viable set in input order (views, not copies)."""
        return (self.of(i) for i in range(self.num_inputs))

    def of(self, input_index: int) -> np.ndarray:
        """Input ``input_index``'s viable set (a view, not a copy)."""
        return self.configs[self.offsets[input_index] : self.offsets[input_index + 1]]
