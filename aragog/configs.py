"""The configuration space of a workflow bound to a model family.

A configuration assigns one candidate model to every agent. It is an integer in a
mixed-radix space: digit ``i`` (agent ``i``, least significant first) is the index of
the model in agent ``i``'s candidate list, which is ordered cheapest first. So the
model of agent ``i`` in configuration ``c`` is ``(c // stride[i]) % radix[i]``, one
division and one modulo, the same in Python and in the compiled core.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from aragog.errors import WorkflowError
from aragog.models import ModelFamily
from aragog.workflow import Workflow

# Past this many configurations, dense per-configuration tables stop being cheap.
MAX_NUM_CONFIGS = 1 << 20


@dataclass(frozen=True)
class ConfigSpace:
    """Configurations of ``workflow`` (already bound to ``family``).

    Attributes:
        radix: number of candidate models of each agent.
        strides: place value of each agent's digit.
        agent_models: per agent, per digit, the index of the model in the family.
    """

    workflow: Workflow
    family: ModelFamily
    radix: tuple[int, ...]
    strides: tuple[int, ...]
    agent_models: tuple[tuple[int, ...], ...]

    @staticmethod
    def create(workflow: Workflow, family: ModelFamily) -> ConfigSpace:
        """Bind ``workflow`` to ``family`` (if not yet) and build its space."""
        bound = workflow.with_models(family.model_names)
        names = family.model_names
        agent_models = []
        for agent in bound.agents:
            # Candidates are kept cheapest first, whatever order the file listed.
            ids = sorted(names.index(m) for m in agent.models)
            agent_models.append(tuple(ids))
            if not ids:
                raise WorkflowError(f"{bound.name}: agent {agent.name!r} has no models")
        radix = tuple(len(m) for m in agent_models)
        strides = tuple(
            int(np.prod(radix[:i], dtype=np.int64)) for i in range(len(radix))
        )
        if int(np.prod(radix, dtype=np.int64)) > MAX_NUM_CONFIGS:
            raise WorkflowError(
                f"{bound.name}: {int(np.prod(radix))} configurations, more than the "
                f"{MAX_NUM_CONFIGS} aragog supports"
            )
        return ConfigSpace(bound, family, radix, strides, tuple(agent_models))

    @property
    def num_agents(self) -> int:
        return len(self.radix)

    @property
    def num_configs(self) -> int:
        return int(np.prod(self.radix, dtype=np.int64))

    @property
    def most_expensive(self) -> int:
        """The configuration with every agent on its largest candidate."""
        return self.num_configs - 1

    def encode(self, digits: list[int] | tuple[int, ...]) -> int:
        if len(digits) != self.num_agents:
            raise ValueError(f"expected {self.num_agents} digits, found {len(digits)}")
        return sum(int(d) * s for d, s in zip(digits, self.strides, strict=True))

    def decode(self, config: int) -> tuple[int, ...]:
        return tuple(
            (config // s) % r for s, r in zip(self.strides, self.radix, strict=True)
        )

    def model_names(self, config: int) -> tuple[str, ...]:
        """The model of each agent in ``config``, by name."""
        names = self.family.model_names
        return tuple(
            names[self.agent_models[i][d]] for i, d in enumerate(self.decode(config))
        )

    @cached_property
    def digits(self) -> np.ndarray:
        """``digits[c, i]``: agent ``i``'s digit in configuration ``c``."""
        ids = np.arange(self.num_configs, dtype=np.int64)
        table = [(ids // s) % r for s, r in zip(self.strides, self.radix, strict=True)]
        return np.stack(table, axis=1).astype(np.int32)

    @cached_property
    def model_ids(self) -> np.ndarray:
        """``model_ids[c, i]``: index in the family of agent ``i``'s model in ``c``."""
        out = np.empty_like(self.digits)
        for i, models in enumerate(self.agent_models):
            out[:, i] = np.asarray(models, dtype=np.int32)[self.digits[:, i]]
        return out

    def costs(self, prompt_tokens: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
        """FLOPs of every configuration for one request's per-agent token counts.

        Each agent costs ``2 * params * (prompt + output)`` FLOPs: the forward pass of
        its model over every token it reads or writes.
        """
        params = np.array([m.num_params for m in self.family.models])
        tokens = np.asarray(prompt_tokens, dtype=float) + np.asarray(
            output_tokens, float
        )
        return (2.0 * params[self.model_ids] * tokens[None, :]).sum(axis=1)

    def mean_costs(self) -> np.ndarray:
        """FLOPs of every configuration at the workflow's nominal token counts.

        The nominal prompt is the template plus 1,000 request tokens where the prompt
        carries the request, plus the nominal outputs of the upstream agents; a trace
        output counts 200 tokens (times its scale). Only the ranking matters here.
        """
        outputs = []
        for agent in self.workflow.agents:
            o = agent.output
            outputs.append(
                o.mean_tokens if o.source == "lognormal" else 200.0 * o.scale
            )
        prompts = []
        for i, agent in enumerate(self.workflow.agents):
            upstream = sum(outputs[u] for u in self.workflow.upstream_ids[i])
            request = 1000.0 if agent.include_request else 0.0
            prompts.append(agent.template_tokens + request + upstream)
        return self.costs(np.array(prompts), np.array(outputs))

    def dominates(self, upper: int, lower: int) -> bool:
        """True when every agent's model in ``upper`` is at least as large as in
        ``lower`` (candidates are ordered by size, so digits compare directly)."""
        up, low = self.decode(upper), self.decode(lower)
        return all(u >= v for u, v in zip(up, low, strict=True))
