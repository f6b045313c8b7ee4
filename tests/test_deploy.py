"""Deployment files: what loads, and one clear line for each problem."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from aragog.runtime.deploy import deployment_from_dict, load_deployment
from aragog.runtime.errors import DeploymentError

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def _model_folder(root: Path, name: str) -> str:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    return str(folder)


def _document(root: Path) -> dict:
    """A valid deployment: the shipped Qwen family, two 7B engines and a 14B."""
    return {
        "family": "qwen2.5",
        "workflows": ["self-refine", "voting"],
        "engines": [
            {
                "model": "qwen2.5-7b",
                "vllm": {"model_path": _model_folder(root, "7b"), "gpu_ids": [0]},
            },
            {
                "model": "qwen2.5-7b",
                "vllm": {"model_path": _model_folder(root, "7b"), "gpu_ids": [1]},
            },
            {
                "model": "qwen2.5-14b",
                "remote": {
                    "url": "http://127.0.0.1:9000/v1",
                    "served_model_name": "Qwen/Qwen2.5-14B-Instruct",
                },
            },
        ],
    }


def _load(doc: dict, root: Path):
    return deployment_from_dict(doc, "deploy.yaml", root)


def test_a_valid_file_names_engines_after_their_models_and_takes_tp_from_the_catalog(
    tmp_path,
):
    doc = _document(tmp_path)
    doc["engines"].append(
        {
            "model": "qwen2.5-32b",
            "vllm": {
                "model_path": _model_folder(tmp_path, "32b"),
                "gpu_ids": [2, 3, 4, 5],
            },
        }
    )

    deployment = _load(doc, tmp_path)

    names = [e.name for e in deployment.engines]
    assert names == ["qwen2.5-7b#0", "qwen2.5-7b#1", "qwen2.5-14b#0", "qwen2.5-32b#0"]
    assert deployment.engines[3].vllm.tensor_parallel == 4
    assert deployment.engines[2].remote.url == "http://127.0.0.1:9000/v1"
    assert set(deployment.workflows) == {"self-refine", "voting"}
    assert deployment.served_models == {"qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b"}
    assert deployment.beam_width == 4


def test_relative_paths_are_read_from_the_deployment_files_folder(tmp_path):
    _model_folder(tmp_path, "models/tiny")
    (tmp_path / "wf.yaml").write_text((DATA / "tiny-chain.yaml").read_text())
    doc = {
        "family": yaml.safe_load((REPO / "examples/deploy-cpu-tiny.yaml").read_text())[
            "family"
        ],
        "workflows": ["wf.yaml"],
        "engines": [
            {"model": "tiny-2l", "vllm": {"model_path": "models/tiny"}},
        ],
    }
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(doc))

    deployment = load_deployment(path)

    assert deployment.engines[0].vllm.model_path == str(tmp_path / "models/tiny")
    assert list(deployment.workflows) == ["tiny-chain"]


@pytest.mark.parametrize("example", ["deploy-cpu-tiny.yaml", "deploy-8xh100-qwen.yaml"])
def test_the_shipped_example_files_are_valid(example):
    deployment = load_deployment(REPO / "examples" / example, check_paths=False)

    assert deployment.engines
    assert deployment.workflows


def test_the_8xh100_example_lays_out_the_papers_node():
    deployment = load_deployment(
        REPO / "examples/deploy-8xh100-qwen.yaml", check_paths=False
    )

    layout = {e.name: e.vllm.gpu_ids for e in deployment.engines}
    assert layout == {
        "qwen2.5-32b#0": (0, 1, 2, 3),
        "qwen2.5-14b#0": (4, 5),
        "qwen2.5-7b#0": (6,),
        "qwen2.5-7b#1": (7,),
    }


def _set(doc: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    node = doc
    for part in path:
        node = node[int(part)] if part.isdigit() else node[part]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


BAD_CASES = [
    (
        "workflows.1",
        "no-such-workflow",
        "deploy.yaml: workflows[1]: no-such-workflow: no such workflow file",
    ),
    (
        "engines.0.model",
        "qwen2.5-9b",
        "deploy.yaml: engines[0].model: unknown model 'qwen2.5-9b'",
    ),
    (
        "engines.1.vllm.gpu_ids",
        [0],
        "deploy.yaml: engines[1].vllm.gpu_ids: GPU 0 is also given to engines[0]",
    ),
    (
        "engines.0.vllm.model_path",
        "/nonexistent/model",
        "deploy.yaml: engines[0].vllm.model_path: no such model folder",
    ),
    (
        "engines.0.vllm.max_num_seqs",
        "eight",
        "deploy.yaml: engines[0].vllm.max_num_seqs: input should be a valid integer",
    ),
    (
        "engines.0.vllm.gpu_ids",
        [0, 1],
        "deploy.yaml: engines[0].vllm.gpu_ids: 2 GPU(s) for tensor_parallel 1",
    ),
    ("engines.0.vllm.colour", "red", "deploy.yaml: engines[0].vllm.colour: unknown"),
    (
        "engines.2.remote.url",
        "ftp://host",
        "deploy.yaml: engines[2].remote.url: string should match pattern",
    ),
    ("family", "gpt-9", "deploy.yaml: family: gpt-9: no such family file"),
    (
        "router",
        {"profiles": {"text-to-sql": "p.npz"}},
        "deploy.yaml: router.profiles.text-to-sql: not a served workflow",
    ),
    (
        "router",
        {"default": "cheapest"},
        "deploy.yaml: router.default: input should be 'generated', 'all' or 'largest'",
    ),
    (
        "scheduler",
        {"beam_width": 0},
        "deploy.yaml: scheduler.beam_width: input should be greater than or equal to 1",
    ),
    ("engines", [], "deploy.yaml: engines: list should have at least 1 item"),
]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    BAD_CASES,
    ids=[c[0] + "=" + str(c[1]) for c in BAD_CASES],
)
def test_a_bad_field_is_reported_in_one_line_naming_file_and_field(
    tmp_path, field, value, message
):
    doc = _document(tmp_path)
    _set(doc, field, value)

    with pytest.raises(DeploymentError) as raised:
        _load(doc, tmp_path)

    text = str(raised.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_an_engine_needs_exactly_one_of_vllm_or_remote(tmp_path):
    doc = _document(tmp_path)
    doc["engines"][2]["vllm"] = {"model_path": _model_folder(tmp_path, "14b")}

    with pytest.raises(DeploymentError, match=r"engines\[2\]: expected exactly one"):
        _load(doc, tmp_path)


def test_engines_may_share_a_gpu_only_on_purpose_and_within_its_memory(tmp_path):
    doc = _document(tmp_path)
    doc["engines"][1]["vllm"]["gpu_ids"] = [0]
    doc["allow_shared_gpus"] = True
    for engine in doc["engines"][:2]:
        engine["vllm"]["gpu_memory_utilization"] = 0.6

    with pytest.raises(DeploymentError, match="GPU 0 ask for 1.20 of its memory"):
        _load(doc, tmp_path)

    for engine in doc["engines"][:2]:
        engine["vllm"]["gpu_memory_utilization"] = 0.45
    assert len(_load(doc, tmp_path).engines) == 3


def test_two_engines_with_one_name_are_refused(tmp_path):
    doc = _document(tmp_path)
    doc["engines"][0]["name"] = "small"
    doc["engines"][1]["name"] = "small"

    with pytest.raises(DeploymentError, match=r"engines\[1\].name: 'small' is also"):
        _load(doc, tmp_path)


def test_a_workflow_whose_agent_has_no_served_model_is_refused(tmp_path):
    doc = _document(tmp_path)
    workflow = yaml.safe_load((DATA / "tiny-chain.yaml").read_text())
    workflow["agents"][1]["models"] = ["qwen2.5-32b"]
    (tmp_path / "wf.yaml").write_text(yaml.safe_dump(workflow))
    doc["workflows"] = [str(tmp_path / "wf.yaml")]

    with pytest.raises(DeploymentError) as raised:
        _load(doc, tmp_path)

    assert "agents[1] (refine): no engine serves any of its models" in str(raised.value)


def test_a_template_field_that_is_neither_input_nor_upstream_is_refused(tmp_path):
    doc = _document(tmp_path)
    workflow = yaml.safe_load((DATA / "tiny-chain.yaml").read_text())
    workflow["agents"][0]["template"] = "Answer {question} please"
    (tmp_path / "wf.yaml").write_text(yaml.safe_dump(workflow))
    doc["workflows"] = [str(tmp_path / "wf.yaml")]

    with pytest.raises(DeploymentError) as raised:
        _load(doc, tmp_path)

    assert "agents[0].template: unknown field {question}" in str(raised.value)


def test_a_workflow_listed_twice_is_refused(tmp_path):
    doc = _document(tmp_path)
    doc["workflows"] = ["voting", "voting"]

    with pytest.raises(DeploymentError, match="'voting' is listed twice"):
        _load(doc, tmp_path)


def test_a_missing_profile_file_is_refused_before_anything_starts(tmp_path):
    doc = _document(tmp_path)
    doc["router"] = {"profiles": {"voting": "missing.npz"}}

    with pytest.raises(DeploymentError, match="router.profiles.voting: no such file"):
        _load(doc, tmp_path)


def test_files_that_are_missing_or_not_yaml_or_not_a_mapping_are_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("engines: [unclosed\n")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")

    with pytest.raises(DeploymentError, match="no such deployment file"):
        load_deployment(tmp_path / "none.yaml")
    with pytest.raises(DeploymentError, match="bad.yaml: not valid YAML"):
        load_deployment(bad)
    with pytest.raises(DeploymentError, match="expected a mapping at the top"):
        load_deployment(listing)


def test_loading_does_not_change_the_document(tmp_path):
    doc = _document(tmp_path)
    before = copy.deepcopy(doc)

    _load(doc, tmp_path)

    assert doc == before


# --- learned routers ----------------------------------------------------------------


def _router_file(root: Path, workflow: str, kind: str = "embedding") -> str:
    """A router file with random heads for a shipped workflow on Qwen2.5."""
    from dataclasses import replace

    from test_router_helpers import random_router, space_of

    from aragog.routing.learned import FeatureSpec
    from aragog.routing.store import save_router

    space = space_of(workflow)
    model = "all-MiniLM-L6-v2" if kind == "embedding" else ""
    router = replace(
        random_router(tuple(space.radix), 8, 0, workflow=workflow),
        family="qwen2.5",
        features=FeatureSpec(kind, model, 0, 8),
    )
    path = root / f"{workflow}-{kind}.npz"
    save_router(router, path)
    return str(path)


def test_a_learned_router_is_bound_to_the_workflow_it_names(tmp_path):
    doc = _document(tmp_path)
    doc["router"] = {"learned": {"voting": _router_file(tmp_path, "voting")}}

    deployment = _load(doc, tmp_path)

    assert deployment.workflows["voting"].learned_router_path.endswith(
        "voting-embedding.npz"
    )
    assert deployment.workflows["self-refine"].learned_router_path is None


@pytest.mark.parametrize(
    ("learned", "message"),
    [
        (
            {"text-to-sql": "r.npz"},
            "router.learned.text-to-sql: not a served workflow (served: self-refine, "
            "voting)",
        ),
        ({"voting": "missing.npz"}, "router.learned.voting: no such file"),
        (
            {"self-refine": "VOTING"},
            "router.learned.self-refine: {path} was trained for workflow 'voting', "
            "the served workflow has 'self-refine'",
        ),
        (
            {"voting": "FEATURES"},
            "router.learned.voting: {path} reads generated features (8 wide); a "
            "runtime routes from the run's text, so it needs a router trained on "
            "text embeddings",
        ),
    ],
)
def test_a_learned_router_that_cannot_route_the_workflow_is_refused(
    tmp_path, learned, message
):
    paths = {
        "VOTING": _router_file(tmp_path, "voting"),
        "FEATURES": _router_file(tmp_path, "voting", kind="features"),
    }
    doc = _document(tmp_path)
    doc["router"] = {"learned": {k: paths.get(v, v) for k, v in learned.items()}}
    path = next(iter(doc["router"]["learned"].values()))

    with pytest.raises(DeploymentError) as caught:
        _load(doc, tmp_path)

    assert str(caught.value).startswith("deploy.yaml: ")
    assert message.format(path=path) in str(caught.value)


def test_serve_router_files_route_the_workflows_they_were_trained_for(tmp_path):
    from aragog.runtime.deploy import with_learned_routers

    deployment = _load(_document(tmp_path), tmp_path)
    voting = _router_file(tmp_path, "voting")

    routed = with_learned_routers(deployment, [voting])

    assert routed.workflows["voting"].learned_router_path == voting
    assert routed.workflows["self-refine"].learned_router_path is None
    assert deployment.workflows["voting"].learned_router_path is None


def test_a_serve_router_file_for_a_workflow_not_served_is_refused(tmp_path):
    from aragog.runtime.deploy import with_learned_routers

    deployment = _load(_document(tmp_path), tmp_path)
    sql = _router_file(tmp_path, "text-to-sql")

    with pytest.raises(DeploymentError) as caught:
        with_learned_routers(deployment, [sql])

    assert str(caught.value) == (
        f"--router {sql}: trained for workflow 'text-to-sql', which deploy.yaml does "
        "not serve (served: self-refine, voting)"
    )
