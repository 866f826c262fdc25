#!/usr/bin/env bash
# Every GPU check and benchmark in one run on the GPU machine (see README "Running on GPUs").
# Expects the bundle made by scripts/device_bundle.sh at .device/lead.tgz; writes logs to $OUT.
#   scripts/device_check.sh [tests|bench|all]
set -uo pipefail
WHAT="${1:-all}"
OUT="${OUT:-/tmp/out}"
mkdir -p /tmp/run "$OUT" && tar xzf .device/lead.tgz -C /tmp/run && . /tmp/run/env.sh
# Tests find their data and the server binary at the paths they were built with.
mkdir -p /work && { [ -e /work/main ] || ln -s "$PWD" /work/main; }
mkdir -p /work/main/build-lead/launcher
ln -sf /tmp/run/bin/mambaserve /work/main/build-lead/launcher/mambaserve
command -v mpiexec >/dev/null && { [ -x /usr/bin/mpiexec ] || ln -s "$(command -v mpiexec)" /usr/bin/mpiexec; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
run() {  # name, command...
  local name="$1"; shift
  echo "=== $name" | tee -a "$OUT/summary.txt"
  ( "$@" ) >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -4 "$OUT/$name.log" | tee -a "$OUT/summary.txt"
  echo "rc=$rc" | tee -a "$OUT/summary.txt"
}
if [[ "$WHAT" == tests || "$WHAT" == all ]]; then
  for t in core_test model_ops_test linear_test conv_norm_update_gpu_test ssd_gpu_test \
           mamba1_gpu_test state_manager_gpu_test; do
    command -v "$t" >/dev/null && run "$t" timeout 300 "$t" --gtest_brief=1
  done
  run golden_gpu timeout 300 mpiexec -np 1 --allow-run-as-root golden_test --gtest_brief=1
  command -v tp_model_test >/dev/null &&
    run tp_model_gpu timeout 300 mpiexec -np 1 --allow-run-as-root tp_model_test --gtest_brief=1
  run serve_gpu timeout 120 bash -c '
    mpiexec -np 1 --allow-run-as-root mambaserve --model testdata/golden/m2_g1 \
      --listen unix:/tmp/ms_gpu.sock --dtype bfloat16 & pid=$!
    for i in $(seq 100); do mambaserve_client --address unix:/tmp/ms_gpu.sock health 2>/dev/null | grep -q "serving: true" && break; sleep 0.2; done
    mambaserve_client --address unix:/tmp/ms_gpu.sock info
    mambaserve_client --address unix:/tmp/ms_gpu.sock generate --ids 1,17,42,99,256,7 --max_new_tokens 16
    mambaserve_client --address unix:/tmp/ms_gpu.sock load --streams 16 --seconds 5 --prompt_len 256 --shared_prefix 0 --max_new_tokens 64
    kill -USR1 $pid; wait $pid'
fi
if [[ "$WHAT" == bench || "$WHAT" == all ]]; then
  command -v bench_ssd_prefill >/dev/null && run bench_ssd_prefill timeout 300 bench_ssd_prefill
  command -v bench_mamba1 >/dev/null && run bench_mamba1 timeout 300 bench_mamba1
  command -v bench_mamba2_decode >/dev/null && run bench_mamba2_decode timeout 300 bench_mamba2_decode
  run bench_model timeout 400 bench_model --layers 64
  if [[ -d .fetched/mamba_ssm_triton ]]; then
    run anchor timeout 300 python3 bench/mamba_ssm_anchor.py --root .fetched/mamba_ssm_triton
  fi
fi
