#!/usr/bin/env bash
# Packs the GPU tests and benchmarks of BUILD_DIR (a CUDA build) into .device/lead.tgz with the
# libraries the GPU machine lacks (tools/device-bundle.sh of the workspace does the packing).
set -euo pipefail
cd "$(dirname "$0")/.."
B="${1:-build-lead}"
BUNDLER="${BUNDLER:-../shared/tools/device-bundle.sh}"
mkdir -p .device
# The model-level checks by default; PROGS overrides (the call's tree is limited to 64 MiB).
default_progs="core/core_test kernels/model_ops_test layers/linear_test tests/golden_test
  launcher/mambaserve launcher/mambaserve_client bench/bench_model"
read -r -a progs <<<"$(echo ${PROGS:-$default_progs})"
"$BUNDLER" .device/lead.tgz "${progs[@]/#/$B/}"
