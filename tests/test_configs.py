"""The mixed-radix configuration space, costs and dominance."""

from __future__ import annotations

import numpy as np
import pytest

from aragog.configs import ConfigSpace
from aragog.errors import WorkflowError
from aragog.models import load_family
from aragog.workflow import load_workflow, workflow_from_dict


def _space(agents: list[dict], family) -> ConfigSpace:
    return ConfigSpace.create(
        workflow_from_dict({"name": "w", "agents": agents}), family
    )


def _agent(name, models=None, upstream=None):
    out = {"name": name, "upstream": upstream or [], "output": {"source": "trace"}}
    if models is not None:
        out["models"] = models
    return out


def test_agent_zero_is_the_least_significant_digit(tiny_family):
    space = _space([_agent("a"), _agent("b", ["m0", "m2"])], tiny_family)

    assert space.radix == (3, 2)
    assert space.strides == (1, 3)
    assert space.num_configs == 6
    assert space.encode([2, 1]) == 5
    assert space.decode(4) == (1, 1)
    assert space.model_names(4) == ("m1", "m2")


def test_candidates_are_sorted_cheapest_first_whatever_the_file_says(tiny_family):
    space = _space([_agent("a", ["m2", "m0"])], tiny_family)

    assert space.agent_models == ((0, 2),)
    assert space.model_names(space.most_expensive) == ("m2",)


def test_digit_and_model_tables_agree_with_decode(tiny_family):
    space = _space([_agent("a"), _agent("b", ["m1", "m2"]), _agent("c")], tiny_family)

    for config in range(space.num_configs):
        assert tuple(space.digits[config]) == space.decode(config)
        names = tuple(tiny_family.model_names[m] for m in space.model_ids[config])
        assert names == space.model_names(config)


def test_cost_is_two_flops_per_parameter_per_token(tiny_family):
    space = _space([_agent("a"), _agent("b")], tiny_family)
    prompt = np.array([100.0, 300.0])
    output = np.array([50.0, 10.0])

    costs = space.costs(prompt, output)

    # m0 has 1e9 parameters, m2 has 4e9; config 2 + 0*3 = (m2, m0).
    assert costs[space.encode([2, 0])] == pytest.approx(2 * 4e9 * 150 + 2 * 1e9 * 310)
    assert np.argmin(costs) == 0
    assert np.argmax(costs) == space.most_expensive


def test_dominance_compares_every_agent(tiny_family):
    space = _space([_agent("a"), _agent("b")], tiny_family)

    assert space.dominates(space.encode([2, 1]), space.encode([1, 1]))
    assert not space.dominates(space.encode([2, 0]), space.encode([1, 1]))
    assert space.dominates(space.most_expensive, 0)


@pytest.mark.parametrize(
    ("workflow", "num_configs"),
    [
        ("self-refine", 27),
        ("text-to-sql", 81),
        ("voting", 243),
        ("task-decomposition", 243),
    ],
)
def test_shipped_workflows_on_qwen_have_three_to_the_agents_configurations(
    workflow, num_configs
):
    space = ConfigSpace.create(load_workflow(workflow), load_family("qwen2.5"))

    assert space.num_configs == num_configs
    assert space.mean_costs().argmax() == space.most_expensive


def test_unknown_model_in_a_workflow_is_an_error(tiny_family):
    with pytest.raises(WorkflowError, match="unknown model 'big'"):
        _space([_agent("a", ["big"])], tiny_family)
