"""Prompts of stage calls: each agent's template filled with a run's input and outputs.

A template is text with fields in braces:

- ``{input}``: the run's whole input; a single field is written as its value alone,
  several as ``name: value`` lines in the order the input gives them;
- ``{input.NAME}``: one field of the input (a run whose input lacks it is refused);
- ``{AGENT}``: the output of an upstream agent named ``AGENT``.

``{{`` and ``}}`` are literal braces. Braces around anything that does not look like
a field name (``{"a": 1}``) stay as they are, so JSON examples in a template need no
escaping; a field-like name that is neither of the above is refused when the
deployment loads, since it is almost always a typo. An agent with an empty template
gets the input (when it reads the request) and its upstream outputs, one after the
other, separated by blank lines: the shape the simulator's token counts assume.

Templates are checked and compiled once per workflow, so filling one is a join.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aragog.errors import WorkflowError
from aragog.runtime.errors import InvalidInput
from aragog.workflow import Workflow

# One token of a template: an escaped brace, or a braced span without inner braces.
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
# What a field name looks like; braces around anything else are literal text.
_FIELD_LIKE = re.compile(r"[A-Za-z_][\w.\-]*")
_INPUT_PREFIX = "input."


@dataclass(frozen=True, slots=True)
class _Field:
    """A field of a template: ``kind`` is "input", "input_field" or "upstream"."""

    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """One agent's compiled template.

    Attributes:
        agent: the agent's name.
        parts: literal strings and fields, in order.
        input_fields: the input fields the template reads with ``{input.NAME}``.
    """

    agent: str
    parts: tuple[str | _Field, ...]
    input_fields: tuple[str, ...]

    def render(
        self, input_text: str, input: Mapping[str, str], outputs: Mapping[str, str]
    ) -> str:
        """The prompt, given the input (rendered once per run) and agent outputs.

        ``outputs`` maps agent names to output texts; every upstream agent the
        template reads must be in it (the orchestrator releases an agent only after
        its upstream agents are done).
        """
        pieces = []
        for part in self.parts:
            if isinstance(part, str):
                pieces.append(part)
            elif part.kind == "input":
                pieces.append(input_text)
            elif part.kind == "input_field":
                pieces.append(input[part.name])
            else:
                pieces.append(outputs[part.name])
        return "".join(pieces)


def compile_templates(workflow: Workflow, where: str) -> tuple[PromptTemplate, ...]:
    """Check and compile every agent's template of ``workflow``, in agent order.

    Raises:
        WorkflowError: a template names a field that is neither the input, an input
            field, nor an upstream agent of that agent; the message names ``where``
            (the deployment file and workflow) and the agent.
    """
    templates = []
    for i, agent in enumerate(workflow.agents):
        upstream = [workflow.agents[u].name for u in workflow.upstream_ids[i]]
        if agent.template:
            parts = _parse(agent.template, upstream, f"{where}: agents[{i}].template")
        else:
            parts = _default_parts(agent.include_request, upstream)
        fields = tuple(
            p.name for p in parts if isinstance(p, _Field) and p.kind == "input_field"
        )
        templates.append(
            PromptTemplate(agent.name, parts, tuple(dict.fromkeys(fields)))
        )
    return tuple(templates)


def normalize_input(
    input: Any, templates: tuple[PromptTemplate, ...], workflow: str
) -> tuple[dict[str, str], str]:
    """Check a run's input against its workflow's templates and render it.

    Strings are kept, other JSON values are written as JSON.

    Returns:
        (fields as text, the text ``{input}`` stands for).

    Raises:
        InvalidInput: the input is not a mapping of names to values, or lacks a field
            a template reads; the message names the field and the agent.
    """
    if not isinstance(input, Mapping):
        raise InvalidInput(
            f"input: expected an object of named fields, found {type(input).__name__}"
        )
    fields = {}
    for name, value in input.items():
        if not isinstance(name, str):
            raise InvalidInput(f"input: field names must be strings, found {name!r}")
        fields[name] = value if isinstance(value, str) else json.dumps(value)
    for template in templates:
        for name in template.input_fields:
            if name not in fields:
                raise InvalidInput(
                    f"input.{name}: missing field (workflow {workflow!r}, agent "
                    f"{template.agent!r} reads it)"
                )
    if len(fields) == 1:
        text = next(iter(fields.values()))
    else:
        text = "\n".join(f"{name}: {value}" for name, value in fields.items())
    return fields, text


def _parse(text: str, upstream: list[str], where: str) -> tuple[str | _Field, ...]:
    parts: list[str | _Field] = []
    literal: list[str] = []
    position = 0
    for match in _TOKEN.finditer(text):
        literal.append(text[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        field = _field(match.group(1), upstream, where)
        if field is None:
            literal.append(token)
            continue
        parts.append("".join(literal))
        literal = []
        parts.append(field)
    literal.append(text[position:])
    parts.append("".join(literal))
    return tuple(p for p in parts if p != "")


def _field(name: str, upstream: list[str], where: str) -> _Field | None:
    if name == "input":
        return _Field("input", name)
    if name.startswith(_INPUT_PREFIX) and len(name) > len(_INPUT_PREFIX):
        return _Field("input_field", name[len(_INPUT_PREFIX) :])
    if name in upstream:
        return _Field("upstream", name)
    if _FIELD_LIKE.fullmatch(name):
        known = ", ".join(f"{{{u}}}" for u in upstream) or "none"
        raise WorkflowError(
            f"{where}: unknown field {{{name}}}: expected {{input}}, "
            f"{{input.NAME}} or an upstream agent (upstream: {known}); write {{{{ "
            "for a literal brace"
        )
    return None


def _default_parts(
    include_request: bool, upstream: list[str]
) -> tuple[str | _Field, ...]:
    fields = [_Field("input", "input")] if include_request else []
    fields.extend(_Field("upstream", u) for u in upstream)
    parts: list[str | _Field] = []
    for i, field in enumerate(fields):
        if i:
            parts.append("\n\n")
        parts.append(field)
    return tuple(parts)
