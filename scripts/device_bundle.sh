#!/usr/bin/env bash
# Packs the GPU tests and benchmarks of BUILD_DIR (a CUDA build) into .device/lead.tgz with the
# libraries the GPU machine lacks (tools/device-bundle.sh of the workspace does the packing).
set -euo pipefail
cd "$(dirname "$0")/.."
B="${1:-build-lead}"
BUNDLER="${BUNDLER:-../shared/tools/device-bundle.sh}"
mkdir -p .device
progs=(core/core_test kernels/model_ops_test layers/linear_test kernels/conv_norm_update_gpu_test
       kernels/ssd_gpu_test kernels/mamba1_gpu_test state_manager/state_manager_gpu_test
       tests/golden_test tests/tp_model_test tests/serving_e2e_test launcher/mambaserve
       launcher/mambaserve_client launcher/mambaserve_generate bench/bench_ssd_prefill
       bench/bench_mamba1 bench/bench_mamba2_decode bench/bench_model bench/bench_copy_specs
       bench/bench_allreduce parallel/parallel_mpi_test)
"$BUNDLER" .device/lead.tgz "${progs[@]/#/$B/}"
