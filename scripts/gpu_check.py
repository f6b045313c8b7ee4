"""The GPU check: real Qwen2.5 architectures on vLLM, their curves, and a benchmark.

Run by ``scripts/gpu_check.sh`` on a machine with NVIDIA GPUs and ``vllm``; nothing is
downloaded. Steps, each logged with its time:

1. Model folders for Qwen2.5 7B, 14B and 32B: a ``config.json`` written from aragog's
   catalog numbers (``aragog/data/families/qwen2.5.yaml``) and a word-level tokenizer
   covering the whole vocabulary (every token id decodes), no weights: vLLM loads
   them with ``load_format: dummy`` (random weights of the real shapes).
2. A deployment for the GPUs found (see :func:`layout`): the paper's node on 8 GPUs;
   one engine per model on 3 to 7 GPUs; on 2 GPUs the 32B alone and the other two
   sharing the second; on 1 GPU all three sharing it (tensor parallel 1, memory
   split 0.15 / 0.25 / 0.55), started one after another. With fewer than 3 GPUs the
   engines run eagerly (no graph capture or compilation) to fit the time budget,
   which understates small-batch throughput somewhat.
3. Each engine's throughput-versus-batch curve, one engine at a time: batches of 1,
   2, 4, ... up to the engine's batch limit, of calls with a 512-token prompt and 128
   output tokens (prefix caching off, so identical prompts cost a real prefill).
4. The curves as a throughput profile (``throughput-profile.json``), which
   ``throughput_profile:`` of a deployment file loads into the monitors and
   ``aragog simulate --throughput-profile`` into the simulated engines.
5. The HTTP server on the same engines with that profile, and ``aragog bench`` for a
   minute of self-refine on the shipped Azure trace, at half the capacity the curves
   suggest; ``aragog simulate`` with the same options on the measured curves, for
   reference (the simulated node is the family's, each engine at its model's curve).

Everything lands in the output folder: ``deploy.yaml``, ``throughput-profile.json``,
``bench.json``, ``simulate.json``, ``summary.json`` (and the log, from the shell
script). Stopping it (SIGINT, or the shell script's time limit) shuts the engines
down cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger("gpu_check")

FAMILY = "qwen2.5"
MODELS = ("qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b")
CURVE_PROMPT_TOKENS = 512
CURVE_OUTPUT_TOKENS = 128
MAX_MODEL_LEN = 20480
BENCH_WORKFLOW = "self-refine"
BENCH_DURATION_S = 60.0
# Qwen2.5's special tokens keep their real ids, so the configs' token ids are valid.
SPECIAL_TOKENS = {151643: "<|endoftext|>", 151644: "<|im_start|>", 151645: "<|im_end|>"}
# GPU memory share of each model's engine when engines share a GPU.
SHARED_MEMORY = {"qwen2.5-7b": 0.15, "qwen2.5-14b": 0.25, "qwen2.5-32b": 0.55}


# --- model folders -----------------------------------------------------------------


def qwen_config(model: Any) -> dict[str, Any]:
    """A Qwen2.5 ``config.json`` from a catalog :class:`aragog.models.ModelSpec`."""
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": model.hidden_size,
        "intermediate_size": model.intermediate_size,
        "num_hidden_layers": model.num_layers,
        "num_attention_heads": model.num_attention_heads,
        "num_key_value_heads": model.num_kv_heads,
        "head_dim": model.head_dim,
        "vocab_size": model.vocab_size,
        "max_position_embeddings": 32768,
        "max_window_layers": model.num_layers,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "sliding_window": 131072,
        "use_sliding_window": False,
        "tie_word_embeddings": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "use_cache": True,
        "dtype": "bfloat16",
        "torch_dtype": "bfloat16",
    }


def write_tokenizer(folder: Path, vocab_size: int) -> None:
    """A word-level tokenizer with one token per id: any generated id decodes.

    Words it does not know map to ``<unk>``, one token per word, which is all a
    model with random weights needs of a tokenizer.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0}
    for i in range(1, vocab_size):
        vocab[SPECIAL_TOKENS.get(i, f"w{i}")] = i
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=MAX_MODEL_LEN,
    )
    fast.save_pretrained(str(folder))


def write_model_folders(root: Path) -> dict[str, Path]:
    """One folder per Qwen2.5 model: config, generation config, tokenizer."""
    from aragog.models import load_family

    family = load_family(FAMILY)
    folders = {}
    for name in MODELS:
        model = family.model(name)
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(qwen_config(model), indent=2))
        (folder / "generation_config.json").write_text(
            json.dumps({"bos_token_id": 151643, "eos_token_id": 151645})
        )
        write_tokenizer(folder, model.vocab_size)
        folders[name] = folder
    return folders


# --- the deployment ----------------------------------------------------------------


def layout(num_gpus: int) -> list[tuple[str, str, list[int], float | None]]:
    """Engines for ``num_gpus`` GPUs: (name, model, GPU ids, memory share or None)."""
    if num_gpus >= 8:
        return [
            ("qwen2.5-32b#0", "qwen2.5-32b", [0, 1, 2, 3], None),
            ("qwen2.5-14b#0", "qwen2.5-14b", [4, 5], None),
            ("qwen2.5-7b#0", "qwen2.5-7b", [6], None),
            ("qwen2.5-7b#1", "qwen2.5-7b", [7], None),
        ]
    if num_gpus >= 3:
        return [
            ("qwen2.5-32b#0", "qwen2.5-32b", [0], None),
            ("qwen2.5-14b#0", "qwen2.5-14b", [1], None),
            ("qwen2.5-7b#0", "qwen2.5-7b", [2], None),
        ]
    if num_gpus == 2:
        return [
            ("qwen2.5-32b#0", "qwen2.5-32b", [0], None),
            ("qwen2.5-14b#0", "qwen2.5-14b", [1], 0.6),
            ("qwen2.5-7b#0", "qwen2.5-7b", [1], 0.3),
        ]
    # The largest first: it needs the most contiguous memory.
    return [
        (f"{m}#0", m, [0], SHARED_MEMORY[m])
        for m in ("qwen2.5-32b", "qwen2.5-14b", "qwen2.5-7b")
    ]


def deployment_document(
    folders: dict[str, Path], num_gpus: int, max_num_seqs: int
) -> dict[str, Any]:
    """The deployment file's content for this machine."""
    eager = num_gpus < 3
    engines = []
    for name, model, gpu_ids, share in layout(num_gpus):
        vllm: dict[str, Any] = {
            "model_path": str(folders[model]),
            "load_format": "dummy",
            "dtype": "bfloat16",
            "tensor_parallel": len(gpu_ids),
            "gpu_ids": gpu_ids,
            "max_model_len": MAX_MODEL_LEN,
            "max_num_seqs": max_num_seqs,
            "enforce_eager": eager,
            "ignore_eos": True,
            "engine_args": {"enable_prefix_caching": False},
        }
        if share is not None:
            vllm["gpu_memory_utilization"] = share
        engines.append({"name": name, "model": model, "vllm": vllm})
    return {
        "family": FAMILY,
        "workflows": [BENCH_WORKFLOW],
        "engines": engines,
        "allow_shared_gpus": num_gpus < 3,
        "router": {"default": "generated"},
        "scheduler": {
            "beam_width": 4,
            "max_num_queued_runs": 4096,
            "stage_timeout_s": 300,
        },
    }


def find_gpus() -> tuple[int, str]:
    """How many GPUs ``nvidia-smi`` lists, and the catalog name of the first."""
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = [line.strip() for line in out.splitlines() if line.strip()]
    if not names:
        raise SystemExit("gpu_check: nvidia-smi lists no GPU")
    catalog = "H200" if "H200" in names[0] else "H100" if "H100" in names[0] else None
    return len(names), catalog or names[0]


# --- the run -------------------------------------------------------------------------


class Clock:
    """Seconds since the check began, and what is left of its budget."""

    def __init__(self, budget_s: float) -> None:
        self.began_s = time.monotonic()
        self.budget_s = budget_s

    def elapsed_s(self) -> float:
        return time.monotonic() - self.began_s

    def left_s(self) -> float:
        return self.budget_s - self.elapsed_s()


async def check(out: Path, budget_s: float, max_num_seqs: int) -> dict[str, Any]:
    from aragog.runtime.curves import (
        batch_ladder,
        curve_entry,
        fit_curve,
        measure_curve,
        write_profile,
    )
    from aragog.runtime.deploy import load_deployment
    from aragog.runtime.engines import build_engine, start_engines
    from aragog.server.bench import request_text

    clock = Clock(budget_s)
    summary: dict[str, Any] = {}

    # 1-2. Model folders and the deployment for the GPUs found.
    num_gpus, gpu = find_gpus()
    folders = write_model_folders(out / "models")
    doc = deployment_document(folders, num_gpus, max_num_seqs)
    (out / "deploy.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    deployment = load_deployment(out / "deploy.yaml")
    summary["hardware"] = f"{num_gpus}x {gpu}"
    logger.info(
        "%.0f s: %d GPU(s) (%s), deployment written", clock.elapsed_s(), num_gpus, gpu
    )

    # Engines, started once for the whole check; stopped whatever happens.
    engines = [build_engine(e) for e in deployment.engines]
    try:
        results = await start_engines(engines, deployment.engines)
        failed = [f"{e.name}: {r}" for e, r in zip(engines, results, strict=True) if r]
        if failed:
            raise SystemExit("gpu_check: engines failed to start: " + "; ".join(failed))
        summary["start_s"] = clock.elapsed_s()
        logger.info("%.0f s: %d engines up", clock.elapsed_s(), len(engines))

        # 3-4. Curves, one engine at a time, then the profile file.
        entries = []
        prompt = request_text(CURVE_PROMPT_TOKENS)
        for engine, entry in zip(engines, deployment.engines, strict=True):
            assert entry.vllm is not None
            points = await measure_curve(
                engine,
                batch_ladder(entry.vllm.max_num_seqs or max_num_seqs),
                prompt,
                CURVE_OUTPUT_TOKENS,
                timeout_s=max(10.0, min(60.0, clock.left_s() - 150)),
            )
            curve = fit_curve(points)
            entries.append(
                curve_entry(
                    entry.model,
                    curve,
                    engine=entry.name,
                    gpu=gpu,
                    tensor_parallel=entry.vllm.tensor_parallel,
                    prompt_tokens=CURVE_PROMPT_TOKENS,
                    output_tokens=CURVE_OUTPUT_TOKENS,
                )
            )
        profile = out / "throughput-profile.json"
        write_profile(profile, entries, hardware=summary["hardware"])
        summary["curves"] = entries
        summary["curves_s"] = clock.elapsed_s()
        logger.info("%.0f s: curves written to %s", clock.elapsed_s(), profile)

        # 5. The server on the same engines, with the measured curves; the benchmark.
        deployment = dataclasses.replace(deployment, throughput_profile=str(profile))
        summary.update(await _serve_and_bench(deployment, engines, entries, out, clock))
    finally:
        await asyncio.gather(*(e.shutdown() for e in engines), return_exceptions=True)
    summary["total_s"] = clock.elapsed_s()
    return summary


async def _serve_and_bench(
    deployment: Any, engines: list[Any], entries: list[dict], out: Path, clock: Clock
) -> dict[str, Any]:
    import uvicorn

    from aragog.runtime.runtime import Runtime
    from aragog.server.app import create_app
    from aragog.server.bench import BenchSpec, bench_requests
    from aragog.server.metrics import ServerMetrics
    from aragog.workflow import load_workflow

    # The runtime adopts the running engines (starting them again is a no-op).
    metrics = ServerMetrics()
    runtime = Runtime(deployment, engines=engines, observer=metrics)
    metrics.watch(runtime)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(runtime, metrics),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
        )
    )
    serving = asyncio.create_task(server.serve())
    try:
        while runtime.state.value != "ready":
            if runtime.failure or serving.done():
                raise SystemExit(f"gpu_check: server failed: {runtime.failure}")
            await asyncio.sleep(0.2)

        # Half the capacity the curves suggest: peak output tokens/s over the mean
        # output tokens of one run.
        workflow = load_workflow(BENCH_WORKFLOW)
        sample = bench_requests(workflow, BenchSpec(url="", num_requests=500), 2000)
        per_run = float(sample.lengths.output_tokens.sum(axis=1).mean())
        peak = sum(max(e["tokens_per_s"]) for e in entries)
        rate = round(max(0.1, 0.5 * peak / per_run), 2)
        duration = min(BENCH_DURATION_S, max(10.0, clock.left_s() - 120))
        timeout = max(30.0, clock.left_s() - duration - 30)
        options = [
            "--workflow", BENCH_WORKFLOW, "--rate", str(rate),
            "--duration", str(duration), "--seed", "0",
        ]  # fmt: skip
        logger.info(
            "%.0f s: bench at %.2f req/s for %.0f s", clock.elapsed_s(), rate, duration
        )
        bench = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "aragog.cli", "bench", *options,
            "--url", f"http://127.0.0.1:{port}", "--timeout", str(timeout),
            "--json", str(out / "bench.json"),
        )  # fmt: skip
        await bench.wait()
        simulate = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "aragog.cli", "simulate", *options,
            "--policy", "aragog", "--json", str(out / "simulate.json"),
            "--throughput-profile", str(out / "throughput-profile.json"),
        )  # fmt: skip
        await simulate.wait()
    finally:
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
    record = {}
    if (out / "bench.json").is_file():
        record = json.loads((out / "bench.json").read_text())
    return {"bench_rate_rps": rate, "bench": record, "bench_s": clock.elapsed_s()}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-check-out"))
    parser.add_argument("--budget-s", type=float, default=450.0)
    parser.add_argument("--max-num-seqs", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    num_gpus, _ = find_gpus()
    max_num_seqs = args.max_num_seqs or (256 if num_gpus >= 3 else 64)
    summary = asyncio.run(check(args.out, args.budget_s, max_num_seqs))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    logger.info("done in %.0f s; results in %s", summary["total_s"], args.out)


if __name__ == "__main__":
    main()
