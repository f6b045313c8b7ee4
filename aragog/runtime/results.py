"""What a run returns: its final output, and per stage where and how long it ran."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class StageResult:
    """One stage call of a run.

    Attributes:
        agent: the agent's name.
        model: the model the scheduler picked for it.
        engine: the engine that ran it.
        queue_wait_s: from the moment the stage was ready (the run arrived, or its
            last upstream stage finished) to its dispatch to the engine.
        run_s: from dispatch to the engine's answer (the engine's own queueing
            included).
        num_prompt_tokens: prompt tokens the engine read.
        num_output_tokens: tokens the engine generated.
    """

    agent: str
    model: str
    engine: str
    queue_wait_s: float
    run_s: float
    num_prompt_tokens: int
    num_output_tokens: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "model": self.model,
            "engine": self.engine,
            "queue_wait_s": self.queue_wait_s,
            "run_s": self.run_s,
            "num_prompt_tokens": self.num_prompt_tokens,
            "num_output_tokens": self.num_output_tokens,
        }


@dataclass(frozen=True, slots=True)
class RunResult:
    """A finished run of a workflow.

    Attributes:
        run_id: the runtime's id of the run.
        workflow: the workflow's name.
        output: the final output: the text of the workflow's last sink agent.
        outputs: every agent's output text, by agent name.
        stages: one entry per agent, in the workflow's agent order.
        config: the configuration the run ended with (one model per agent).
        profile_input: the accuracy-profile row that labels the run's outcome (with
            the oracle, the row that gave its viable set).
        num_viable: the size of the viable set the run arrived with.
        profile_correct: whether the profile labels ``config`` right on that row.
        profile_correct_max_config: whether it labels the most expensive
            configuration right (the reference an accuracy-preserving router keeps).
        latency_s: from admission to the last stage's answer.
        router: what gave the viable set: ``oracle`` or ``learned``.
        router_complete: whether the router settled every configuration (a learned
            router's time budget may stop it early; the oracle always does).
    """

    run_id: str
    workflow: str
    output: str
    outputs: Mapping[str, str]
    stages: tuple[StageResult, ...]
    config: int
    profile_input: int
    num_viable: int
    profile_correct: bool
    profile_correct_max_config: bool
    latency_s: float
    router: str = "oracle"
    router_complete: bool = True

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the HTTP server's response body)."""
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "output": self.output,
            "outputs": dict(self.outputs),
            "stages": [s.to_dict() for s in self.stages],
            "latency_s": self.latency_s,
            "routing": {
                "router": self.router,
                "complete": self.router_complete,
                "config": self.config,
                "profile_input": self.profile_input,
                "num_viable": self.num_viable,
                "profile_correct": self.profile_correct,
                "profile_correct_max_config": self.profile_correct_max_config,
            },
        }
