#!/usr/bin/env bash
# Builds bench_mamba_ssm_scan: our harness around mamba_ssm's selective-scan forward kernel, whose
# source is fetched (never committed). Usage:
#   bench/mamba_ssm_scan/build.sh [FETCHED_SELECTIVE_SCAN_DIR]
# The kernel folder is, in order: the argument, $MAMBA_SELECTIVE_SCAN_DIR, or
# <repo>/.fetched/mamba/csrc/selective_scan. Output: <repo>/build-dev/bench/bench_mamba_ssm_scan
# (override with $OUT). $NVCC picks the compiler (default: nvcc on PATH, else
# /usr/local/cuda/bin/nvcc); PTXAS_VERBOSE=1 adds --ptxas-options=-v as mamba's setup.py does.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SRC_DIR="${1:-${MAMBA_SELECTIVE_SCAN_DIR:-$ROOT/.fetched/mamba/csrc/selective_scan}}"
OUT="${OUT:-$ROOT/build-dev/bench/bench_mamba_ssm_scan}"

if [[ ! -f "$SRC_DIR/selective_scan_fwd_kernel.cuh" || ! -f "$SRC_DIR/selective_scan.h" ]]; then
  cat >&2 <<MSG
error: mamba_ssm's selective-scan sources not found in: $SRC_DIR
Fetch state-spaces/mamba and extract only csrc/selective_scan/, e.g.
  git --git-dir=<mirror of state-spaces/mamba> archive HEAD csrc/selective_scan \\
    | tar -x -C "$ROOT/.fetched/mamba"
or pass the folder as the first argument / \$MAMBA_SELECTIVE_SCAN_DIR.
MSG
  exit 1
fi

NVCC="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
mkdir -p "$(dirname "$OUT")"

# Device flags as mamba's setup.py passes them for the selective_scan_cuda extension (sm_90 only;
# "--threads 4" dropped: one arch). The -U flags undo the -D__CUDA_NO_*__ that PyTorch's
# cpp_extension adds; here they are no-ops, kept to mirror the original build.
FLAGS=(
  -O3 -std=c++17
  -gencode arch=compute_90,code=sm_90
  -U__CUDA_NO_HALF_OPERATORS__ -U__CUDA_NO_HALF_CONVERSIONS__
  -U__CUDA_NO_BFLOAT16_OPERATORS__ -U__CUDA_NO_BFLOAT16_CONVERSIONS__
  -U__CUDA_NO_BFLOAT162_OPERATORS__ -U__CUDA_NO_BFLOAT162_CONVERSIONS__
  --expt-relaxed-constexpr --expt-extended-lambda
  --use_fast_math
  -lineinfo
  -cudart static
)
if [[ "${PTXAS_VERBOSE:-0}" == 1 ]]; then FLAGS+=(--ptxas-options=-v); fi

set -x
"$NVCC" "${FLAGS[@]}" -I"$ROOT" -I"$HERE/shim" -I"$SRC_DIR" \
  "$HERE/bench_mamba_ssm_scan.cu" -o "$OUT"
