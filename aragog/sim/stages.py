"""Token lengths of every stage call, from the trace and the workflow.

A request's own text is its trace row's context; an agent whose output is drawn from
the trace generates the row's generated tokens (times its scale), other agents draw
from their log-normal. A prompt is the agent's template, the request text where the
agent reads it, and the outputs of its upstream agents. Lengths are drawn once per
request before any policy runs, so every policy serves exactly the same calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aragog.workflow import Workflow

# Engines cap a prompt at the model's context; long trace rows are cut to this.
MAX_PROMPT_TOKENS = 16384


@dataclass(frozen=True, slots=True)
class StageLengths:
    """``prompt_tokens[r, a]`` and ``output_tokens[r, a]`` for request r, agent a."""

    prompt_tokens: np.ndarray
    output_tokens: np.ndarray

    @property
    def mean_prompt_tokens(self) -> float:
        return float(self.prompt_tokens.mean())

    @property
    def mean_output_tokens(self) -> float:
        return float(self.output_tokens.mean())


def stage_lengths(
    workflow: Workflow,
    context_tokens: np.ndarray,
    generated_tokens: np.ndarray,
    seed: int,
) -> StageLengths:
    """Draw the token lengths of every (request, agent) of a run."""
    rng = np.random.default_rng(seed)
    num_requests = len(context_tokens)
    outputs = np.zeros((num_requests, workflow.num_agents), dtype=np.int64)
    for a, agent in enumerate(workflow.agents):
        spec = agent.output
        if spec.source == "trace":
            drawn = np.asarray(generated_tokens, dtype=float) * spec.scale
        else:
            # Log-normal with the given mean and coefficient of variation.
            sigma = np.sqrt(np.log1p(spec.cv**2))
            mu = np.log(spec.mean_tokens) - sigma**2 / 2
            drawn = rng.lognormal(mu, sigma, size=num_requests)
        outputs[:, a] = np.clip(np.rint(drawn), 1, spec.max_tokens)

    # Prompts in topological order are not needed: they read outputs, not prompts.
    prompts = np.zeros_like(outputs)
    for a, agent in enumerate(workflow.agents):
        total = np.full(num_requests, agent.template_tokens, dtype=np.int64)
        if agent.include_request:
            total += np.asarray(context_tokens, dtype=np.int64)
        for u in workflow.upstream_ids[a]:
            total += outputs[:, u]
        prompts[:, a] = np.clip(total, 1, MAX_PROMPT_TOKENS)
    return StageLengths(prompts, outputs)
