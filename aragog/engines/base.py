"""The Engine protocol: what the asyncio runtime needs from a serving engine.

One engine serves one model: an in-process vLLM engine on local GPUs (or the CPU), or
a remote OpenAI-compatible endpoint. The runtime calls :meth:`Engine.generate` once per
stage call and reads :meth:`Engine.load` for the live load signals the scheduler uses.
The simulator does not use this protocol: its engines live in virtual time
(:mod:`aragog.engines.simulated`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from aragog.errors import AragogError


class EngineError(AragogError):
    """An engine failed to start, rejected a stage call, or failed while serving it.

    The message is one line: which engine, where (model folder or URL), what went
    wrong. A cancelled stage call raises :class:`asyncio.CancelledError`, not this.
    """


@dataclass(frozen=True, slots=True)
class StageOutput:
    """What one stage call produced."""

    text: str
    num_prompt_tokens: int
    num_output_tokens: int


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """Load an engine reports about itself; ``None`` where it reports nothing."""

    num_running: int | None = None
    num_waiting: int | None = None
    kv_cache_usage: float | None = None


@runtime_checkable
class Engine(Protocol):
    """A serving engine for one model."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    async def start(self) -> None:
        """Bring the engine up; returns once it can serve."""
        ...

    async def generate(
        self, request_id: str, prompt: str, max_tokens: int, temperature: float
    ) -> StageOutput:
        """Run one stage call to completion.

        Cancelling the awaiting task must abort the call in the engine, so that a
        cancelled run frees its engine work.
        """
        ...

    def load(self) -> EngineLoad:
        """The latest load the engine reported (cheap; no I/O)."""
        ...

    async def shutdown(self) -> None:
        """Stop the engine and every process it started."""
        ...
