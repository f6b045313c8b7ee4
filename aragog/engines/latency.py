"""A roofline latency model of one serving engine: a model on tensor-parallel GPUs.

The model: one engine iteration (a continuous-batching step) reads every weight once
and the KV cache of every decoding sequence, and does two FLOPs per parameter per
token plus attention over the context. Its time is the larger of the memory time and
the compute time, plus the tensor-parallel all-reduces (which do not overlap the
matrix work in vLLM or SGLang), plus a fixed host-side cost per step. Hardware peaks
come from the catalog (:mod:`aragog.models`); what is achievable of each peak is a
named constant below, each with its reason. The shipped table of published
measurements (``aragog/data/measurements.yaml``) is what the model is checked against.

From one iteration the module derives what the scheduler reads: how many sequences
fit in the KV cache, the throughput-versus-load curve and the saturation batch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from importlib import resources
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aragog.errors import CatalogError
from aragog.models import GpuSpec, ModelSpec, load_family, load_gpus

logger = logging.getLogger(__name__)

# --- Efficiency constants ----------------------------------------------------------
# Each is a fraction of a datasheet peak that serving kernels reach in practice. They
# are round numbers chosen from how the hardware behaves, not fitted to the table of
# measurements; the test reports how far the model lands from each measurement.

HBM_EFFICIENCY = 0.75
"""Share of peak HBM bandwidth that a whole decode step sustains. Long streaming
reads get close to peak, but a step is also many small kernels (norms, rotary,
attention over short contexts, sampling) with launch gaps between them."""

MFU = 0.5
"""Share of dense bf16 peak FLOPs that serving GEMMs reach. Their shapes (a few
hundred to a few thousand token rows, weights split by tensor parallelism) are far
from the large square GEMMs that approach peak, and a step also runs attention,
norms and activations at lower utilization; half of peak is a middle estimate."""

INTERCONNECT_EFFICIENCY = 0.5
"""Share of the catalog's NVLink figure that an all-reduce uses. The catalog quotes
bandwidth summed over both directions, while a ring step sends one way per link."""

ALL_REDUCE_LATENCY_S = 10e-6
"""Fixed cost of one all-reduce of a small message inside an NVLink node: a kernel
launch plus a cross-GPU synchronization. Custom one-shot all-reduce kernels (vLLM,
SGLang, TensorRT-LLM) sit at several microseconds, NCCL's ring at tens."""

ITERATION_OVERHEAD_S = 1.5e-3
"""Host-side cost of one engine step that the GPU waits for: scheduling the batch,
preparing inputs, sampling and returning tokens. Engines that overlap it with the
GPU (multi-step or asynchronous scheduling) hide part of it; this is the rest."""

GPU_MEMORY_UTILIZATION = 0.9
"""Share of HBM an engine claims for weights and KV cache (vLLM's default
``gpu_memory_utilization``; SGLang's ``mem_fraction_static`` is similar)."""

MAX_NUM_SEQS = 256
"""Most sequences an engine batches at once (vLLM's default ``max_num_seqs``)."""

SATURATION_FRACTION = 0.95
"""The saturation batch is the smallest load whose throughput reaches this share of
the engine's maximum: past it, one more running call adds under 5% of throughput
(and far less per call), while every running call's iterations get slower."""

BF16_BYTES = 2


class LatencyModel:
    """Iteration time and throughput of one engine serving ``model`` on ``gpu``.

    The engine spans ``model.tensor_parallel`` GPUs. Every per-model constant is
    computed once here, so :meth:`iteration_s` is a handful of float operations: the
    simulator calls it at every change of a batch.

    Raises:
        CatalogError: the model's weights do not fit on its GPUs.
    """

    __slots__ = (
        "model",
        "gpu",
        "_tp",
        "_weight_bytes_per_gpu",
        "_kv_bytes_per_token_per_gpu",
        "_memory_bytes_per_s",
        "_linear_flops_per_token",
        "_decode_attention_flops_per_token",
        "_prefill_attention_flops_per_token_sq",
        "_compute_flops_per_s",
        "_num_all_reduces",
        "_all_reduce_s_per_token",
    )

    def __init__(self, model: ModelSpec, gpu: GpuSpec) -> None:
        self.model = model
        self.gpu = gpu
        tp = model.tensor_parallel
        self._tp = tp

        # Memory: weights are split evenly; KV heads are split too, but a GPU holds at
        # least one head when there are more GPUs than KV heads.
        self._weight_bytes_per_gpu = model.weight_bytes / tp
        kv_heads_per_gpu = math.ceil(model.num_kv_heads / tp)
        self._kv_bytes_per_token_per_gpu = (
            2 * model.num_layers * kv_heads_per_gpu * model.head_dim * BF16_BYTES
        )
        self._memory_bytes_per_s = gpu.hbm_bandwidth_bytes_per_s * HBM_EFFICIENCY
        if self._weight_bytes_per_gpu > gpu.hbm_bytes * GPU_MEMORY_UTILIZATION:
            raise CatalogError(
                f"model {model.name!r}: {self._weight_bytes_per_gpu / 1e9:.1f} GB of "
                f"weights per GPU at tensor parallel {tp}, but a {gpu.name} offers "
                f"{gpu.hbm_bytes * GPU_MEMORY_UTILIZATION / 1e9:.1f} GB"
            )

        # Compute, per GPU: matrix FLOPs per token, and attention FLOPs per token of
        # context (decode: QK and AV over the context, 2 FLOPs per multiply-add each;
        # prefill: the causal triangle, per squared prompt token).
        attention_width = model.num_layers * model.num_attention_heads * model.head_dim
        self._linear_flops_per_token = model.flops_per_token / tp
        self._decode_attention_flops_per_token = 4 * attention_width / tp
        self._prefill_attention_flops_per_token_sq = 2 * attention_width / tp
        self._compute_flops_per_s = gpu.bf16_flops_per_s * MFU

        # Interconnect: two all-reduces per layer (after attention and after the MLP)
        # of one hidden vector per token, with a ring's 2 (TP-1)/TP traffic factor.
        self._num_all_reduces = 2 * model.num_layers if tp > 1 else 0
        ring_bytes_per_token = 2 * (tp - 1) / tp * model.hidden_size * BF16_BYTES
        self._all_reduce_s_per_token = ring_bytes_per_token / (
            gpu.interconnect_bytes_per_s * INTERCONNECT_EFFICIENCY
        )

    def iteration_s(
        self,
        num_decode: int,
        decode_context_tokens: float,
        prefill_tokens: float = 0,
        prefill_tokens_sq: float | None = None,
    ) -> float:
        """Seconds of one engine iteration.

        Args:
            num_decode: sequences that each produce one token by decoding.
            decode_context_tokens: KV-cache tokens those sequences attend to, summed
                over them (each sequence's prompt plus what it generated so far).
            prefill_tokens: prompt tokens of newly admitted calls processed in the
                same iteration (fractional when amortised over many iterations).
            prefill_tokens_sq: the sum over those prompts of their squared lengths,
                for prefill attention; None when the prefill tokens are one prompt.

        Raises:
            ValueError: a negative argument, or an iteration with no token at all.
        """
        if num_decode < 0 or decode_context_tokens < 0 or prefill_tokens < 0:
            raise ValueError(
                f"iteration_s: expected non-negative counts, got num_decode="
                f"{num_decode}, decode_context_tokens={decode_context_tokens}, "
                f"prefill_tokens={prefill_tokens}"
            )
        if num_decode == 0 and prefill_tokens == 0:
            raise ValueError(
                "iteration_s: an iteration needs a decode or prefill token"
            )
        if prefill_tokens_sq is None:
            prefill_tokens_sq = prefill_tokens * prefill_tokens
        num_tokens = num_decode + prefill_tokens

        # Memory: weights once, the decoders' KV cache read, new prompts' KV written.
        kv_tokens = decode_context_tokens + prefill_tokens
        memory_s = (
            self._weight_bytes_per_gpu + kv_tokens * self._kv_bytes_per_token_per_gpu
        ) / self._memory_bytes_per_s

        # Compute: matrix FLOPs for every token, attention over contexts and prompts.
        flops = (
            num_tokens * self._linear_flops_per_token
            + decode_context_tokens * self._decode_attention_flops_per_token
            + prefill_tokens_sq * self._prefill_attention_flops_per_token_sq
        )
        compute_s = flops / self._compute_flops_per_s

        # Tensor-parallel all-reduces, then the host-side step cost.
        all_reduce_s = self._num_all_reduces * (
            ALL_REDUCE_LATENCY_S + num_tokens * self._all_reduce_s_per_token
        )
        return max(memory_s, compute_s) + all_reduce_s + ITERATION_OVERHEAD_S

    def batch_latency_s(
        self, batch_size: int, prompt_tokens: int, output_tokens: int
    ) -> float:
        """Seconds until ``batch_size`` calls submitted together have all finished.

        The calls share one prefill iteration (which also yields each call's first
        token), then ``output_tokens - 1`` decode iterations whose context grows by
        one token per call each time: what an offline latency benchmark measures.

        Raises:
            ValueError: a batch size or output length below 1, or a negative prompt.
        """
        if batch_size < 1 or output_tokens < 1 or prompt_tokens < 0:
            raise ValueError(
                f"batch_latency_s: expected batch_size >= 1, output_tokens >= 1 and "
                f"prompt_tokens >= 0, got {batch_size}, {output_tokens}, "
                f"{prompt_tokens}"
            )
        total_s = self.iteration_s(
            0, 0.0, batch_size * prompt_tokens, batch_size * prompt_tokens**2
        )
        for generated in range(1, output_tokens):
            total_s += self.iteration_s(
                batch_size, batch_size * (prompt_tokens + generated)
            )
        return total_s

    def max_batch(self, mean_context_tokens: float) -> int:
        """How many sequences of ``mean_context_tokens`` fit in the KV cache.

        The KV cache is what the engine's share of HBM holds beyond the weights,
        capped at :data:`MAX_NUM_SEQS`; at least 1, since an engine always runs one.

        Raises:
            ValueError: a context that is not positive.
        """
        if not mean_context_tokens > 0:
            raise ValueError(
                f"max_batch: expected a positive mean context, "
                f"got {mean_context_tokens}"
            )
        kv_bytes_per_gpu = (
            self.gpu.hbm_bytes * GPU_MEMORY_UTILIZATION - self._weight_bytes_per_gpu
        )
        per_sequence = self._kv_bytes_per_token_per_gpu * mean_context_tokens
        return max(1, min(MAX_NUM_SEQS, int(kv_bytes_per_gpu // per_sequence)))

    def throughput_curve(
        self, mean_context_tokens: float, mean_output_tokens: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Output tokens per second against load, as piecewise-linear points.

        Load is the number of running stage calls; the points are at 0 (0 tokens/s),
        1, 2, 4, 8, ... and :meth:`max_batch`. At load ``n`` every iteration decodes
        ``n`` tokens and, amortised, prefills the prompts of the ``n / output`` calls
        that replace the finished ones (see :meth:`_steady_throughput`).

        Args:
            mean_context_tokens: a decoding call's mean KV context, its prompt plus
                half its output; the prompt is taken as this minus half the output.
            mean_output_tokens: a call's mean number of generated tokens.

        Returns:
            (loads, tokens_per_s): float64 arrays, loads strictly increasing from 0.

        Raises:
            ValueError: a context or output length that is not positive.
        """
        max_batch = self.max_batch(mean_context_tokens)
        loads = [0]
        while loads[-1] * 2 <= max_batch and loads[-1] < max_batch:
            loads.append(max(1, loads[-1] * 2))
        if loads[-1] != max_batch:
            loads.append(max_batch)
        tokens_per_s = [
            self._steady_throughput(n, mean_context_tokens, mean_output_tokens)
            for n in loads
        ]
        return np.asarray(loads, dtype=np.float64), np.asarray(tokens_per_s)

    def saturation_batch(
        self, mean_context_tokens: float, mean_output_tokens: float
    ) -> int:
        """The load beyond which the engine's throughput stops growing.

        The smallest load, from 1 to :meth:`max_batch`, whose throughput reaches
        :data:`SATURATION_FRACTION` of the maximum over those loads.

        Raises:
            ValueError: a context or output length that is not positive.
        """
        max_batch = self.max_batch(mean_context_tokens)
        tokens_per_s = np.array(
            [
                self._steady_throughput(n, mean_context_tokens, mean_output_tokens)
                for n in range(1, max_batch + 1)
            ]
        )
        reaching = tokens_per_s >= SATURATION_FRACTION * tokens_per_s.max()
        return int(np.argmax(reaching)) + 1

    def _steady_throughput(
        self, load: int, mean_context_tokens: float, mean_output_tokens: float
    ) -> float:
        # A call is prefilled once per `mean_output_tokens` generated tokens, so at
        # load n an iteration carries n / output prompts' worth of prefill. Spreading
        # prefill over iterations is what chunked prefill does; without it the same
        # work comes as occasional longer iterations, with about the same total.
        if not mean_output_tokens > 0:
            raise ValueError(
                f"throughput: expected a positive mean output, got {mean_output_tokens}"
            )
        if load == 0:
            return 0.0
        prompt_tokens = max(0.0, mean_context_tokens - mean_output_tokens / 2)
        prompts_per_iteration = load / mean_output_tokens
        iteration_s = self.iteration_s(
            load,
            load * mean_context_tokens,
            prompts_per_iteration * prompt_tokens,
            prompts_per_iteration * prompt_tokens**2,
        )
        return load / iteration_s


# --- Published measurements ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Measurement:
    """One published serving measurement the latency model is checked against.

    Attributes:
        source: who published it, what, with which engine and GPU.
        url: where it can be read.
        engine: the serving engine that was measured.
        gpu: a GPU of the catalog (``gpus.yaml``).
        family, model: a model of a shipped family, whose architecture numbers
            stand for the measured checkpoint.
        tensor_parallel: GPUs the measured engine spanned.
        batch_size, prompt_tokens, output_tokens: the workload.
        metric: what was measured; ``batch_latency_ms`` is the end-to-end latency of
            ``batch_size`` calls submitted together (an offline latency benchmark).
        value: the measured figure, in the metric's unit.
    """

    source: str
    url: str
    engine: str
    gpu: str
    family: str
    model: str
    tensor_parallel: int
    batch_size: int
    prompt_tokens: int
    output_tokens: int
    metric: str
    value: float

    def predict(self) -> float:
        """The latency model's figure for this measurement, in the metric's unit."""
        family = load_family(self.family)
        model = replace(family.model(self.model), tensor_parallel=self.tensor_parallel)
        latency = LatencyModel(model, load_gpus()[self.gpu.lower()])
        # NOTE: one metric so far; a new metric in the table needs its prediction here.
        assert self.metric == "batch_latency_ms", f"unknown metric {self.metric!r}"
        return 1e3 * latency.batch_latency_s(
            self.batch_size, self.prompt_tokens, self.output_tokens
        )


class _MeasurementEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    source: str = Field(min_length=1)
    url: str = Field(min_length=1)
    engine: str = Field(min_length=1)
    gpu: str
    family: str
    model: str
    tensor_parallel: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    prompt_tokens: int = Field(ge=0)
    output_tokens: int = Field(gt=0)
    metric: Literal["batch_latency_ms"]
    value: float = Field(gt=0)


def load_measurements() -> tuple[Measurement, ...]:
    """The shipped table of published measurements (``measurements.yaml``).

    Raises:
        CatalogError: a malformed entry, or one naming an unknown GPU.
    """
    ref = resources.files("aragog.data") / "measurements.yaml"
    raw = yaml.safe_load(ref.read_text(encoding="utf-8"))
    gpus = load_gpus()
    measurements = []
    for i, entry in enumerate(raw.get("measurements", [])):
        try:
            m = _MeasurementEntry.model_validate(entry)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise CatalogError(
                f"measurements.yaml: measurements[{i}].{loc}: {err['msg'].lower()}"
            ) from None
        if m.gpu.lower() not in gpus:
            raise CatalogError(
                f"measurements.yaml: measurements[{i}].gpu: unknown GPU {m.gpu!r}"
            )
        measurements.append(Measurement(**m.model_dump()))
    return tuple(measurements)
