"""Lattice pruning: settle a request's viable set with few classifier evaluations.

The model. Configurations are ordered by dominance: ``c`` dominates ``c'`` when every
agent's model in ``c`` is at least as large as in ``c'`` (digits compare directly,
because each agent's candidates are kept cheapest first). Accuracy is nearly monotone
in that order, so the router takes "accurate" as upward-closed and "inaccurate" as
downward-closed: one evaluation that finds ``c`` accurate settles every configuration
that dominates ``c``, and one that finds it inaccurate settles every configuration
that ``c`` dominates. The most expensive configuration is accurate by definition and
is settled before any evaluation.

The order. Each step evaluates the unsettled configuration that settles the most
configurations in expectation: ``p[c] * |up(c)| + (1 - p[c]) * |down(c)|``, counting
only unsettled configurations, where ``p[c]`` is a prior share of inputs on which
``c`` is accurate (its rate in the training labels). Both counts are kept up to date
incrementally: settling a set ``S`` lowers every count by its overlap with ``S``, so
the whole search costs ``O(C^2)`` arithmetic however many steps it takes, plus
``O(C)`` per step for the choice.

The search stops when (1) every configuration is settled, (2) the deadline passes or
(3) the evaluation cap is reached. Configurations still unsettled are not viable: a
router that runs out of time only loses flexibility, never accuracy.

When the classifiers contradict the order (``c`` accurate but a configuration above
it inaccurate), the first evaluation wins; the order of evaluation then decides, which
is the price of asking fewer questions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from aragog.errors import ConfigError


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What one lattice search settled for one request.

    Attributes:
        viable: int64 ids of the configurations settled accurate, ascending; always
            holds the most expensive configuration.
        num_evaluations: classifier evaluations the search made.
        num_settled: configurations settled, either way (the most expensive one
            included); equals the number of configurations when ``complete``.
        complete: whether every configuration was settled before a stop.
    """

    viable: np.ndarray
    num_evaluations: int
    num_settled: int
    complete: bool


class DominanceLattice:
    """The dominance order over a mixed-radix configuration space.

    Args:
        radix: number of candidate models of each agent (a :class:`ConfigSpace`'s
            ``radix``); configuration ids are as in :mod:`aragog.configs`.

    Raises:
        ConfigError: an empty radix or a digit below 1.
    """

    def __init__(self, radix: tuple[int, ...] | list[int]) -> None:
        radix = tuple(int(r) for r in radix)
        if not radix or any(r < 1 for r in radix):
            raise ConfigError(f"radix: expected positive digits, found {radix}")
        self._radix = radix
        strides = np.cumprod((1,) + radix[:-1], dtype=np.int64)
        ids = np.arange(int(np.prod(radix, dtype=np.int64)), dtype=np.int64)
        self._digits = np.stack(
            [(ids // s) % r for s, r in zip(strides, radix, strict=True)], axis=1
        )

    @property
    def radix(self) -> tuple[int, ...]:
        return self._radix

    @property
    def num_configs(self) -> int:
        return int(self._digits.shape[0])

    @property
    def most_expensive(self) -> int:
        return self.num_configs - 1

    @cached_property
    def up(self) -> np.ndarray:
        """bool ``[C, C]`` (read-only): ``up[c, s]`` is whether ``s`` dominates
        ``c`` (every digit of ``s`` at least ``c``'s; ``c`` dominates itself)."""
        table = np.all(self._digits[None, :, :] >= self._digits[:, None, :], axis=2)
        table.setflags(write=False)
        return table

    @cached_property
    def _up_float(self) -> np.ndarray:
        # float32 copies make the count updates BLAS matrix-vector products.
        return np.ascontiguousarray(self.up, dtype=np.float32)

    @cached_property
    def _down_float(self) -> np.ndarray:
        return np.ascontiguousarray(self.up.T, dtype=np.float32)

    @cached_property
    def _down(self) -> np.ndarray:
        # Row c is c's down-set, contiguous (a column of up would be strided).
        return np.ascontiguousarray(self.up.T)

    @cached_property
    def _both_float(self) -> np.ndarray:
        # Up and down counts in one vector, updated by one product per step.
        return np.concatenate([self._up_float, self._down_float])

    @cached_property
    def _start_counts(self) -> np.ndarray:
        # Both counts once the most expensive configuration is settled.
        both = self._both_float
        return both.sum(axis=1) - both[:, self.most_expensive]

    def upper_closure(self, mask: np.ndarray) -> np.ndarray:
        """bool ``[C]``: every configuration that dominates one in ``mask``."""
        mask = np.asarray(mask, dtype=bool)
        return np.any(self.up[mask], axis=0)

    def prune(
        self,
        is_accurate: Callable[[int], bool],
        prior: np.ndarray,
        *,
        deadline_s: float | None = None,
        max_num_evaluations: int | None = None,
    ) -> PruneResult:
        """Settle every configuration as accurate or not, asking ``is_accurate``
        about as few as the order allows.

        Args:
            is_accurate: the classifier decision for one configuration id.
            prior: float ``[C]``, the share of inputs on which each configuration is
                accurate; it orders the search and decides nothing.
            deadline_s: a :func:`time.perf_counter` instant; no evaluation starts
                after it. ``None`` runs to the end.
            max_num_evaluations: stop after this many evaluations; ``None`` has no
                cap.

        Raises:
            ConfigError: ``prior`` does not have one entry per configuration.
        """
        num_configs = self.num_configs
        prior = np.asarray(prior, dtype=np.float32)
        if prior.shape != (num_configs,):
            raise ConfigError(
                f"prior: expected one share per configuration ({num_configs}), found "
                f"shape {prior.shape}"
            )
        rest = 1.0 - prior
        both = self._both_float

        # The most expensive configuration is accurate without asking.
        top = self.most_expensive
        unsettled = np.ones(num_configs, dtype=bool)
        accurate = np.zeros(num_configs, dtype=bool)
        unsettled[top] = False
        accurate[top] = True
        counts = self._start_counts.copy()
        up_counts, down_counts = counts[:num_configs], counts[num_configs:]
        num_unsettled = num_configs - 1

        # Greedy: ask about the configuration expected to settle the most.
        num_evaluations = 0
        while num_unsettled:
            if (
                max_num_evaluations is not None
                and num_evaluations >= max_num_evaluations
            ):
                break
            if deadline_s is not None and time.perf_counter() >= deadline_s:
                break
            gain = np.where(unsettled, prior * up_counts + rest * down_counts, -1.0)
            config = int(np.argmax(gain))
            num_evaluations += 1

            # Settle its up-set or its down-set, then discount that from the counts.
            if is_accurate(config):
                settled = self.up[config] & unsettled
                accurate |= settled
            else:
                settled = self._down[config] & unsettled
            unsettled &= ~settled
            num_unsettled -= int(np.count_nonzero(settled))
            counts -= both @ settled.astype(np.float32)

        return PruneResult(
            viable=np.flatnonzero(accurate).astype(np.int64),
            num_evaluations=num_evaluations,
            num_settled=num_configs - num_unsettled,
            complete=num_unsettled == 0,
        )

    def prune_many(
        self,
        decisions: np.ndarray,
        prior: np.ndarray,
        *,
        max_num_evaluations: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The search of :meth:`prune` for many inputs at once, their classifier
        decisions known in advance; it settles exactly what :meth:`prune` would
        settle for each input, in lockstep, so that calibration and evaluation over
        thousands of inputs cost a few array passes per step, not a Python loop.

        Args:
            decisions: bool ``[n, C]``: what the classifier of configuration ``c``
                says about input ``i`` (read only where the search asks).
            prior: float ``[C]``, as for :meth:`prune`.
            max_num_evaluations: as for :meth:`prune`.

        Returns:
            bool ``[n, C]``, the configurations settled accurate (the most
            expensive one always), and int64 ``[n]``, the evaluations per input.

        Raises:
            ConfigError: ``decisions`` or ``prior`` do not have one column per
                configuration.
        """
        num_configs = self.num_configs
        decisions = np.asarray(decisions, dtype=bool)
        prior = np.asarray(prior, dtype=np.float32)
        if decisions.ndim != 2 or decisions.shape[1] != num_configs:
            raise ConfigError(
                f"decisions: expected [inputs, {num_configs}], found {decisions.shape}"
            )
        if prior.shape != (num_configs,):
            raise ConfigError(
                f"prior: expected one share per configuration ({num_configs}), found "
                f"shape {prior.shape}"
            )
        up, down = self._up_float, self._down_float
        num_inputs = decisions.shape[0]

        # The same start as prune: the most expensive configuration settled.
        top = self.most_expensive
        unsettled = np.ones((num_inputs, num_configs), dtype=bool)
        unsettled[:, top] = False
        accurate = np.zeros((num_inputs, num_configs), dtype=bool)
        accurate[:, top] = True
        up_counts = np.tile(up.sum(axis=1) - up[:, top], (num_inputs, 1))
        down_counts = np.tile(down.sum(axis=1) - down[:, top], (num_inputs, 1))
        evaluations = np.zeros(num_inputs, dtype=np.int64)

        # One step of every search still open, the same arithmetic as prune's.
        active = np.flatnonzero(unsettled.any(axis=1))
        while active.size:
            if max_num_evaluations is not None:
                active = active[evaluations[active] < max_num_evaluations]
                if not active.size:
                    break
            open_rows = unsettled[active]
            gain = prior * up_counts[active] + (1.0 - prior) * down_counts[active]
            gain[~open_rows] = -1.0
            configs = np.argmax(gain, axis=1)
            said = decisions[active, configs]
            evaluations[active] += 1

            settled = np.where(said[:, None], self.up[configs], self.up[:, configs].T)
            settled &= open_rows
            still_open = open_rows & ~settled
            unsettled[active] = still_open
            accurate[active] |= settled & said[:, None]

            # Counts matter only for searches that go on (most end at step one).
            going_on = still_open.any(axis=1)
            active = active[going_on]
            weights = settled[going_on].astype(np.float32)
            up_counts[active] -= weights @ up.T
            down_counts[active] -= weights @ down.T

        return accurate, evaluations
