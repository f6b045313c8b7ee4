"""Workflow validation, depths and loading."""

from __future__ import annotations

import pytest

from aragog.errors import WorkflowError
from aragog.workflow import SHIPPED_WORKFLOWS, load_workflow, workflow_from_dict


def _agent(name: str, upstream: list[str] | None = None, **extra) -> dict:
    return {
        "name": name,
        "upstream": upstream or [],
        "output": {"source": "trace"},
        **extra,
    }


@pytest.mark.parametrize(
    ("name", "num_agents", "depths"),
    [
        ("self-refine", 3, (2, 1, 0)),
        ("text-to-sql", 4, (3, 2, 1, 0)),
        ("voting", 5, (1, 1, 1, 1, 0)),
        ("task-decomposition", 5, (2, 1, 1, 1, 0)),
    ],
)
def test_shipped_workflows_have_the_papers_shapes(name, num_agents, depths):
    workflow = load_workflow(name)

    assert workflow.num_agents == num_agents
    assert workflow.depths == depths


def test_every_shipped_workflow_is_listed():
    assert set(SHIPPED_WORKFLOWS) == {
        "self-refine",
        "text-to-sql",
        "voting",
        "task-decomposition",
    }


def test_depth_is_the_longest_path_to_a_sink():
    raw = {
        "name": "diamond",
        "agents": [
            _agent("a"),
            _agent("b", ["a"]),
            _agent("c", ["b"]),
            _agent("d", ["a", "c"]),
        ],
    }

    workflow = workflow_from_dict(raw)

    assert workflow.depths == (3, 2, 1, 0)
    assert workflow.sources == (0,)
    assert workflow.downstream_ids == ((1, 3), (2,), (3,), ())


BAD_WORKFLOWS = [
    ({"name": "x", "agents": []}, "agents: a workflow needs at least one agent"),
    (
        {"name": "x", "agents": [_agent("a", ["ghost"])]},
        "agents[0].upstream: edge from unknown agent 'ghost'",
    ),
    (
        {"name": "x", "agents": [_agent("a", ["b"]), _agent("b", ["a"])]},
        "agents: cycle among a, b",
    ),
    (
        {"name": "x", "agents": [_agent("a"), _agent("a")]},
        "agents[1].name: duplicate name",
    ),
    (
        {"name": "x", "agents": [_agent("a", template_tokens="many")]},
        "agents[0].template_tokens: input should be a valid integer, found str 'many'",
    ),
    (
        {"name": "x", "agents": [_agent("a", models=[])]},
        "agents[0].models: a workflow agent needs at least one candidate model",
    ),
    ({"name": "x"}, "agents: field required"),
    ({"name": "x", "agents": [{"name": "a"}]}, "agents[0].output: field required"),
    (["a list"], "expected a mapping at the top, found a list"),
]


@pytest.mark.parametrize(("raw", "message"), BAD_WORKFLOWS)
def test_a_bad_workflow_gets_one_line_naming_file_field_and_problem(raw, message):
    with pytest.raises(WorkflowError) as info:
        workflow_from_dict(raw, "flow.yaml")

    text = str(info.value)
    assert text.startswith("flow.yaml: ")
    assert message in text
    assert "\n" not in text


def test_unknown_model_is_rejected_when_bound_to_a_family(tiny_family):
    workflow = workflow_from_dict(
        {"name": "x", "agents": [_agent("a", models=["gpt"])]}
    )

    with pytest.raises(WorkflowError, match=r"agents\[0\].models: unknown model 'gpt'"):
        workflow.with_models(tiny_family.model_names)


def test_agents_without_models_get_the_whole_family(tiny_family):
    workflow = workflow_from_dict({"name": "x", "agents": [_agent("a")]})

    bound = workflow.with_models(tiny_family.model_names)

    assert bound.agents[0].models == ("m0", "m1", "m2")


def test_loading_a_missing_file_names_it(tmp_path):
    with pytest.raises(WorkflowError, match="no such workflow file"):
        load_workflow(tmp_path / "nope.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['true']\nagents: []\n")

    with pytest.raises(WorkflowError, match="not valid YAML"):
        load_workflow(path)
