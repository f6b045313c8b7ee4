"""Workflows: DAGs of agents, their validation, depths and YAML loading.

A workflow is fixed ahead of time: each agent is one LLM call whose prompt holds a
template, optionally the request's own text, and the outputs of its upstream agents.
Agents are numbered in the order they are declared; that order is also the digit order
of the configuration space (see :mod:`aragog.configs`), so it must never be re-sorted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aragog.errors import WorkflowError

logger = logging.getLogger(__name__)

SHIPPED_WORKFLOWS = ("self-refine", "text-to-sql", "voting", "task-decomposition")


@dataclass(frozen=True, slots=True)
class OutputLength:
    """How many tokens an agent generates.

    ``source="trace"`` takes the request's generated-token count from the trace (times
    ``scale``); ``source="lognormal"`` draws from a log-normal with the given mean and
    coefficient of variation, so stage lengths vary the way real outputs do.
    """

    source: Literal["trace", "lognormal"]
    mean_tokens: float = 0.0
    cv: float = 0.0
    scale: float = 1.0
    max_tokens: int = 4096


@dataclass(frozen=True, slots=True)
class Agent:
    """One stage of a workflow: a prompted LLM call.

    Attributes:
        name: unique within the workflow.
        upstream: names of the agents whose outputs this agent reads.
        models: candidate model names, cheapest first; empty means "every model of the
            family the workflow is bound to" (see :meth:`Workflow.with_models`).
        template_tokens: size of the prompt template, in tokens.
        include_request: whether the prompt carries the request's own text.
        output: the output-length model.
        template: the prompt template (``{input}`` and ``{<agent name>}`` fields).
        temperature: sampling temperature used by real engines.
    """

    name: str
    upstream: tuple[str, ...]
    models: tuple[str, ...]
    template_tokens: int
    include_request: bool
    output: OutputLength
    template: str = ""
    temperature: float = 0.0


@dataclass(frozen=True, slots=True)
class Workflow:
    """A validated DAG of agents.

    Build one with :func:`load_workflow` or :meth:`Workflow.create`; both validate.
    ``depths[i]`` is the longest path (in edges) from agent ``i`` to a sink, the
    priority the scheduler gives to deeper stages of one request.
    """

    name: str
    agents: tuple[Agent, ...]
    depths: tuple[int, ...]
    upstream_ids: tuple[tuple[int, ...], ...]
    downstream_ids: tuple[tuple[int, ...], ...]
    description: str = ""

    @staticmethod
    def create(
        name: str, agents: list[Agent], description: str = "", where: str = ""
    ) -> Workflow:
        """Validate ``agents`` as a DAG and build the workflow.

        Raises:
            WorkflowError: no agents, a duplicate name, an edge to an unknown agent, a
                cycle, or duplicate candidate models; the message names ``where``.
        """
        return _build(name, agents, description, where or name)

    @property
    def num_agents(self) -> int:
        return len(self.agents)

    @property
    def agent_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.agents)

    @property
    def sources(self) -> tuple[int, ...]:
        """Agents with no upstream: the stages ready when a request arrives."""
        return tuple(i for i, up in enumerate(self.upstream_ids) if not up)

    def agent_index(self, name: str) -> int:
        for i, agent in enumerate(self.agents):
            if agent.name == name:
                return i
        raise WorkflowError(f"workflow {self.name!r}: no agent named {name!r}")

    def with_models(
        self, model_names: list[str] | tuple[str, ...], where: str = ""
    ) -> Workflow:
        """Bind the workflow to a model family.

        Agents without a candidate list get every model of the family (in the family's
        order, cheapest first); agents with one are checked against the family.

        Raises:
            WorkflowError: an agent names a model the family does not have.
        """
        known = tuple(model_names)
        agents = []
        for i, agent in enumerate(self.agents):
            for model in agent.models:
                if model not in known:
                    raise WorkflowError(
                        f"{where or self.name}: agents[{i}].models: unknown model "
                        f"{model!r} (the family has {', '.join(known)})"
                    )
            agents.append(agent if agent.models else replace(agent, models=known))
        return replace(self, agents=tuple(agents))


# --- YAML schema -----------------------------------------------------------------


class _OutputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    source: Literal["trace", "lognormal"]
    mean_tokens: float = Field(default=0.0, ge=0)
    cv: float = Field(default=0.0, ge=0)
    scale: float = Field(default=1.0, gt=0)
    max_tokens: int = Field(default=4096, gt=0)


class _AgentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1)
    upstream: list[str] = Field(default_factory=list)
    models: list[str] | None = None
    template_tokens: int = Field(default=0, ge=0)
    include_request: bool = True
    output: _OutputSpec
    template: str = ""
    temperature: float = Field(default=0.0, ge=0)


class _WorkflowSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1)
    description: str = ""
    agents: list[_AgentSpec]


def load_workflow(name_or_path: str | Path) -> Workflow:
    """Load a shipped workflow by name, or any workflow YAML file by path.

    Raises:
        WorkflowError: the file is missing, is not YAML, or fails validation; the
            message is one line naming the file, the field and the problem.
    """
    text, where = _read_workflow_text(str(name_or_path))
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WorkflowError(f"{where}: not valid YAML ({_first_line(exc)})") from exc
    return workflow_from_dict(raw, where)


def workflow_from_dict(raw: Any, where: str = "<dict>") -> Workflow:
    """Validate a parsed YAML document (or an equivalent dict) as a workflow."""
    if not isinstance(raw, dict):
        raise WorkflowError(
            f"{where}: expected a mapping at the top, found {_kind(raw)}"
        )
    try:
        spec = _WorkflowSpec.model_validate(raw)
    except ValidationError as exc:
        raise WorkflowError(f"{where}: {_describe_validation_error(exc)}") from None
    for i, a in enumerate(spec.agents):
        if a.models is not None and not a.models:
            raise WorkflowError(
                f"{where}: agents[{i}].models: a workflow agent needs at least one "
                "candidate model (leave the field out to use the whole family)"
            )
    agents = [
        Agent(
            name=a.name,
            upstream=tuple(a.upstream),
            models=tuple(a.models or ()),
            template_tokens=a.template_tokens,
            include_request=a.include_request,
            output=OutputLength(**a.output.model_dump()),
            template=a.template,
            temperature=a.temperature,
        )
        for a in spec.agents
    ]
    return _build(spec.name, agents, spec.description, where)


def _read_workflow_text(name_or_path: str) -> tuple[str, str]:
    if name_or_path in SHIPPED_WORKFLOWS:
        ref = resources.files("aragog.data") / "workflows" / f"{name_or_path}.yaml"
        return ref.read_text(encoding="utf-8"), f"{name_or_path}.yaml"
    path = Path(name_or_path)
    if not path.is_file():
        raise WorkflowError(
            f"{name_or_path}: no such workflow file, and not a shipped workflow "
            f"(one of {', '.join(SHIPPED_WORKFLOWS)})"
        )
    return path.read_text(encoding="utf-8"), str(path)


def _build(name: str, agents: list[Agent], description: str, where: str) -> Workflow:
    # Shape checks: at least one agent, unique names, known edges, distinct models.
    if not agents:
        raise WorkflowError(f"{where}: agents: a workflow needs at least one agent")
    index = {}
    for i, agent in enumerate(agents):
        if agent.name in index:
            raise WorkflowError(
                f"{where}: agents[{i}].name: duplicate name {agent.name!r}"
            )
        index[agent.name] = i
    for i, agent in enumerate(agents):
        for up in agent.upstream:
            if up not in index:
                raise WorkflowError(
                    f"{where}: agents[{i}].upstream: edge from unknown agent {up!r}"
                )
        if len(set(agent.upstream)) != len(agent.upstream):
            raise WorkflowError(
                f"{where}: agents[{i}].upstream: an agent is listed twice"
            )
        if len(set(agent.models)) != len(agent.models):
            raise WorkflowError(f"{where}: agents[{i}].models: a model is listed twice")
        if agent.output.source == "lognormal" and agent.output.mean_tokens <= 0:
            raise WorkflowError(
                f"{where}: agents[{i}].output.mean_tokens: a lognormal output needs a "
                f"positive mean, found {agent.output.mean_tokens}"
            )

    # Edges in both directions, then a topological order that also finds cycles.
    upstream_ids = tuple(tuple(index[u] for u in a.upstream) for a in agents)
    downstream: list[list[int]] = [[] for _ in agents]
    for i, ups in enumerate(upstream_ids):
        for u in ups:
            downstream[u].append(i)
    order = _topological_order(upstream_ids, downstream)
    if order is None:
        cycle = [agents[i].name for i in _nodes_on_cycles(upstream_ids, downstream)]
        raise WorkflowError(f"{where}: agents: cycle among {', '.join(cycle)}")

    # Depth = longest path to a sink, computed sinks first.
    depths = [0] * len(agents)
    for i in reversed(order):
        depths[i] = max((depths[d] + 1 for d in downstream[i]), default=0)
    logger.debug("workflow %s: %d agents, depths %s", name, len(agents), depths)
    return Workflow(
        name=name,
        agents=tuple(agents),
        depths=tuple(depths),
        upstream_ids=upstream_ids,
        downstream_ids=tuple(tuple(d) for d in downstream),
        description=description,
    )


def _topological_order(
    upstream_ids: tuple[tuple[int, ...], ...], downstream: list[list[int]]
) -> list[int] | None:
    remaining = [len(u) for u in upstream_ids]
    ready = [i for i, n in enumerate(remaining) if n == 0]
    order = []
    while ready:
        node = ready.pop()
        order.append(node)
        for d in downstream[node]:
            remaining[d] -= 1
            if remaining[d] == 0:
                ready.append(d)
    return order if len(order) == len(upstream_ids) else None


def _nodes_on_cycles(
    upstream_ids: tuple[tuple[int, ...], ...], downstream: list[list[int]]
) -> list[int]:
    # Peel sources and sinks until only nodes on (or between) cycles remain.
    alive = set(range(len(upstream_ids)))
    changed = True
    while changed:
        changed = False
        for i in list(alive):
            ins = [u for u in upstream_ids[i] if u in alive]
            outs = [d for d in downstream[i] if d in alive]
            if not ins or not outs:
                alive.discard(i)
                changed = True
    return sorted(alive)


def _describe_validation_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ""
    for part in err["loc"]:
        loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else part)
    found = err.get("input")
    found_text = "" if err["type"] == "missing" else f", found {_kind(found)}"
    return f"{loc or '<top>'}: {err['msg'].lower()}{found_text}"


def _kind(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f"a {type(value).__name__}"
    return f"{type(value).__name__} {value!r}"[:80]


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
