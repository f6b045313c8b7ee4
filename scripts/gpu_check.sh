#!/usr/bin/env bash
# The GPU check (see scripts/gpu_check.py for what it does, step by step): vLLM
# engines with dummy weights and the real Qwen2.5 7B/14B/32B architectures, their
# throughput-versus-batch curves written as a throughput profile, and one minute of
# `aragog bench` against `aragog serve`'s app on those engines.
#
#   scripts/gpu_check.sh [OUT_DIR]        # default: gpu-check-out
#
# Needs: NVIDIA GPUs, and aragog installed with vLLM (pip install -e '.[vllm,serve]').
# On 8 GPUs it lays out the paper's node; on 1 GPU (an H200) all three models share
# it with tensor parallel 1. The whole check is bounded to GPU_CHECK_BUDGET_S seconds
# (450 by default, within 8 minutes with a margin): a run that overruns gets SIGINT,
# which stops the engines cleanly, then SIGKILL 30 s later.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-gpu-check-out}"
budget_s="${GPU_CHECK_BUDGET_S:-450}"
python="${PYTHON:-python}"
mkdir -p "$out"

command -v nvidia-smi >/dev/null || { echo "gpu_check: no nvidia-smi here" >&2; exit 2; }
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | tee "$out/gpus.txt"

# The Python side keeps its own budget a little under the hard limit.
set +e
timeout --signal=INT --kill-after=30 "$((budget_s + 20))" \
  "$python" scripts/gpu_check.py --out "$out" --budget-s "$budget_s" \
  2>&1 | tee "$out/gpu_check.log"
status="${PIPESTATUS[0]}"
set -e

echo "gpu_check: exit $status; files in $out:"
ls -l "$out"
exit "$status"
