"""Model and GPU catalogs: architectures, serving resources, and the engines of a node.

A *model family* is the set of models a workflow can choose from, each with its real
architecture numbers (which the latency model reads) and how it is served on one node:
tensor-parallel degree and how many engines (replicas) serve it. Models are kept in
ascending size: the cheapest first and the most expensive last, which is the order of
configuration digits and of the dominance order (see :mod:`aragog.configs`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aragog.errors import CatalogError

logger = logging.getLogger(__name__)

SHIPPED_FAMILIES = ("qwen2.5", "llama3")
BYTES_PER_PARAM_BF16 = 2


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """One accelerator's published peak figures."""

    name: str
    hbm_bytes: float
    hbm_bandwidth_bytes_per_s: float
    bf16_flops_per_s: float
    interconnect_bytes_per_s: float


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A decoder-only transformer and how one node serves it."""

    name: str
    num_params: float
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tensor_parallel: int
    num_engines: int

    @property
    def weight_bytes(self) -> float:
        return self.num_params * BYTES_PER_PARAM_BF16

    @property
    def kv_bytes_per_token(self) -> float:
        """Key and value vectors of every layer for one token, in bf16."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * 2

    @property
    def flops_per_token(self) -> float:
        """Forward-pass FLOPs per token, ignoring attention over the context."""
        return 2 * self.num_params


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """One serving engine on the node: a model replica on its own GPUs."""

    name: str
    model: str
    gpu_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModelFamily:
    """Models a workflow may choose among, on one node of identical GPUs."""

    name: str
    gpu: GpuSpec
    num_gpus: int
    models: tuple[ModelSpec, ...]

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    def model(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        raise CatalogError(f"family {self.name!r}: no model named {name!r}")

    def engines(self) -> tuple[EngineSpec, ...]:
        """Lay the family's engines out on the node's GPUs, largest models first."""
        engines = []
        next_gpu = 0
        for spec in sorted(self.models, key=lambda m: -m.num_params):
            for replica in range(spec.num_engines):
                gpus = tuple(range(next_gpu, next_gpu + spec.tensor_parallel))
                next_gpu += spec.tensor_parallel
                engines.append(EngineSpec(f"{spec.name}#{replica}", spec.name, gpus))
        return tuple(
            sorted(engines, key=lambda e: (self.model_names.index(e.model), e.name))
        )


# --- YAML schema -----------------------------------------------------------------


class _GpuEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    hbm_gib: float = Field(gt=0)
    hbm_bandwidth_tb_per_s: float = Field(gt=0)
    bf16_dense_tflops: float = Field(gt=0)
    interconnect_gb_per_s: float = Field(gt=0)


class _ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1)
    num_params_b: float = Field(gt=0)
    num_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    tensor_parallel: int = Field(gt=0)
    num_engines: int = Field(default=1, gt=0)


class _FamilyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1)
    gpu: str
    num_gpus: int = Field(gt=0)
    models: list[_ModelEntry] = Field(min_length=1)


def load_gpus() -> dict[str, GpuSpec]:
    """The shipped GPU catalog, by lower-case name."""
    text = (resources.files("aragog.data") / "gpus.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    gpus = {}
    for i, entry in enumerate(raw.get("gpus", [])):
        try:
            g = _GpuEntry.model_validate(entry)
        except ValidationError as exc:
            raise CatalogError(
                f"gpus.yaml: gpus[{i}]: {exc.errors()[0]['msg']}"
            ) from None
        gpus[g.name.lower()] = GpuSpec(
            name=g.name,
            hbm_bytes=g.hbm_gib * 2**30,
            hbm_bandwidth_bytes_per_s=g.hbm_bandwidth_tb_per_s * 1e12,
            bf16_flops_per_s=g.bf16_dense_tflops * 1e12,
            interconnect_bytes_per_s=g.interconnect_gb_per_s * 1e9,
        )
    return gpus


def load_family(name_or_path: str | Path) -> ModelFamily:
    """Load a shipped model family by name, or a family YAML file by path.

    Raises:
        CatalogError: missing file, bad YAML, a wrong field, an unknown GPU, or engines
            that need more GPUs than the node has; one line naming file and field.
    """
    text, where = _read_family_text(str(name_or_path))
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(
            f"{where}: not valid YAML ({str(exc).splitlines()[0]})"
        ) from exc
    return family_from_dict(raw, where)


def family_from_dict(raw: Any, where: str = "<dict>") -> ModelFamily:
    """Validate a parsed family document and build the family."""
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: expected a mapping at the top")
    try:
        spec = _FamilyEntry.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise CatalogError(f"{where}: {loc}: {err['msg'].lower()}") from None

    # Resolve the GPU and check that the engines fit on the node.
    gpus = load_gpus()
    if spec.gpu.lower() not in gpus:
        raise CatalogError(
            f"{where}: gpu: unknown GPU {spec.gpu!r} (known: {', '.join(sorted(gpus))})"
        )
    names = [m.name for m in spec.models]
    if len(set(names)) != len(names):
        raise CatalogError(f"{where}: models: duplicate model name")
    needed = sum(m.tensor_parallel * m.num_engines for m in spec.models)
    if needed > spec.num_gpus:
        raise CatalogError(
            f"{where}: models: engines need {needed} GPUs, the node has {spec.num_gpus}"
        )

    # Build the models, cheapest first.
    models = sorted(
        (
            ModelSpec(
                name=m.name,
                num_params=m.num_params_b * 1e9,
                num_layers=m.num_layers,
                hidden_size=m.hidden_size,
                num_attention_heads=m.num_attention_heads,
                num_kv_heads=m.num_kv_heads,
                head_dim=m.head_dim,
                intermediate_size=m.intermediate_size,
                vocab_size=m.vocab_size,
                tensor_parallel=m.tensor_parallel,
                num_engines=m.num_engines,
            )
            for m in spec.models
        ),
        key=lambda m: m.num_params,
    )
    family = ModelFamily(
        spec.name, gpus[spec.gpu.lower()], spec.num_gpus, tuple(models)
    )
    logger.debug("family %s: %d models on %d GPUs", family.name, len(models), needed)
    return family


def _read_family_text(name_or_path: str) -> tuple[str, str]:
    if name_or_path in SHIPPED_FAMILIES:
        ref = resources.files("aragog.data") / "families" / f"{name_or_path}.yaml"
        return ref.read_text(encoding="utf-8"), f"{name_or_path}.yaml"
    path = Path(name_or_path)
    if not path.is_file():
        raise CatalogError(
            f"{name_or_path}: no such family file, and not a shipped family "
            f"(one of {', '.join(SHIPPED_FAMILIES)})"
        )
    return path.read_text(encoding="utf-8"), str(path)
