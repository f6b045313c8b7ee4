"""Prompt templates: fields filled from the run's input and upstream outputs."""

from __future__ import annotations

import pytest

from aragog.errors import WorkflowError
from aragog.runtime.errors import InvalidInput
from aragog.runtime.prompts import compile_templates, normalize_input
from aragog.workflow import load_workflow, workflow_from_dict


def _workflow(*templates: str, include_request: bool = True):
    agents = [
        {
            "name": f"a{i}",
            "upstream": [f"a{i - 1}"] if i else [],
            "output": {"source": "lognormal", "mean_tokens": 5},
            "template": template,
            "include_request": include_request,
        }
        for i, template in enumerate(templates)
    ]
    return workflow_from_dict({"name": "wf", "agents": agents}, "wf.yaml")


def _render(workflow, input, outputs, agent=-1):
    templates = compile_templates(workflow, "deploy.yaml")
    fields, text = normalize_input(input, templates, workflow.name)
    return templates[agent].render(text, fields, outputs)


def test_input_and_upstream_fields_are_filled_in():
    wf = _workflow("Q: {input}", "Q: {input}\nDraft: {a0}\nFix it.")

    prompt = _render(wf, {"question": "why?"}, {"a0": "because"})

    assert prompt == "Q: why?\nDraft: because\nFix it."


def test_an_input_of_several_fields_is_written_as_name_value_lines():
    wf = _workflow("{input}")

    prompt = _render(wf, {"question": "why?", "context": "sky", "n": 3}, {})

    assert prompt == "question: why?\ncontext: sky\nn: 3"


def test_one_input_field_can_be_named_and_must_then_be_given():
    wf = _workflow("Context: {input.context}. Q: {input.question}")

    assert _render(wf, {"question": "q", "context": "c"}, {}) == "Context: c. Q: q"
    with pytest.raises(InvalidInput, match=r"input.context: missing field"):
        _render(wf, {"question": "q"}, {})


def test_escaped_braces_and_json_stay_literal():
    wf = _workflow('Answer as {"answer": ...} or {{input}}: {input}')

    prompt = _render(wf, {"q": "x"}, {})

    assert prompt == 'Answer as {"answer": ...} or {input}: x'


def test_an_empty_template_gives_the_input_then_the_upstream_outputs():
    wf = _workflow("", "")

    assert _render(wf, {"q": "x"}, {"a0": "y"}) == "x\n\ny"
    assert (
        _render(_workflow("", "", include_request=False), {"q": "x"}, {"a0": "y"})
        == "y"
    )


@pytest.mark.parametrize("field", ["{question}", "{a1}", "{a0_typo}"])
def test_a_field_that_is_neither_input_nor_upstream_is_refused_at_load(field):
    wf = _workflow("x", f"use {field}")

    with pytest.raises(WorkflowError, match=r"agents\[1\].template: unknown field"):
        compile_templates(wf, "deploy.yaml")


def test_every_shipped_workflows_templates_compile():
    for name in ("self-refine", "text-to-sql", "voting", "task-decomposition"):
        workflow = load_workflow(name)

        templates = compile_templates(workflow, name)

        assert len(templates) == workflow.num_agents


def test_an_input_that_is_not_a_mapping_is_refused():
    templates = compile_templates(_workflow("{input}"), "deploy.yaml")

    with pytest.raises(InvalidInput, match="expected an object"):
        normalize_input(["a", "b"], templates, "wf")
