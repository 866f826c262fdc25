#!/usr/bin/env bash
# Every GPU check and benchmark in one run on the GPU machine (see README "Running on GPUs").
# Expects the bundle made by scripts/device_bundle.sh at .device/lead.tgz; writes logs to $OUT.
#   scripts/device_check.sh [tests|serve|multi|bench|all]...
#     tests: every GPU test on one GPU (TESTS="a b" picks some); serve: a GPU serving smoke test;
#     multi: NCCL tests, serving and benchmarks on 2 GPUs (np 2); bench: the single-GPU
#     benchmarks; all: tests, serve and bench.
set -uo pipefail
OUT="${OUT:-/tmp/out}"
mkdir -p /tmp/run "$OUT" && tar xzf .device/lead.tgz -C /tmp/run && . /tmp/run/env.sh
# Tests find their data and the server binary at the paths they were built with.
mkdir -p /work && { [ -e /work/main ] || ln -s "$PWD" /work/main; }
for b in build-lead build-dev; do
  mkdir -p "/work/main/$b/launcher" && ln -sf /tmp/run/bin/mambaserve "/work/main/$b/launcher/mambaserve"
done
command -v mpiexec >/dev/null && { [ -x /usr/bin/mpiexec ] || ln -s "$(command -v mpiexec)" /usr/bin/mpiexec; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
# Logs go to /tmp/logs and, after every step, into $OUT/logs.tgz (few files come back).
LOGS=/tmp/logs
mkdir -p "$LOGS"
run() {  # name, command...
  local name="$1"; shift
  echo "=== $name" | tee -a "$OUT/summary.txt"
  local t0=$SECONDS
  ( "$@" ) >>"$LOGS/$name.log" 2>&1
  local rc=$?
  tail -4 "$LOGS/$name.log" | tee -a "$OUT/summary.txt"
  echo "rc=$rc ($((SECONDS - t0)) s)" | tee -a "$OUT/summary.txt"
  tar czf "$OUT/logs.tgz" -C "$LOGS" .
}
have() { command -v "$1" >/dev/null; }
mpi() { local n="$1"; shift; timeout 400 mpiexec -np "$n" --allow-run-as-root --bind-to none "$@"; }
serve_smoke() {  # ranks
  local n="$1" sock="/tmp/ms_gpu_$1.sock"
  mpiexec -np "$n" --allow-run-as-root --bind-to none mambaserve --model testdata/golden/m2_g1 \
    --listen "unix:$sock" --dtype bfloat16 & local pid=$!
  for i in $(seq 150); do
    mambaserve_client --address "unix:$sock" health 2>/dev/null | grep -q "serving: true" && break
    sleep 0.2
  done
  mambaserve_client --address "unix:$sock" info
  mambaserve_client --address "unix:$sock" generate --ids 1,17,42,99,256,7 --max_new_tokens 16
  mambaserve_client --address "unix:$sock" load --streams 16 --seconds 5 --prompt_len 256 \
    --shared_prefix 0 --max_new_tokens 64
  mambaserve_client --address "unix:$sock" stats
  # Drain: SIGUSR1 straight to the ranks (rank 0 drains, workers ignore it).
  pkill -USR1 -x mambaserve; wait $pid; echo "server exit status $?"
}
for WHAT in "${@:-all}"; do
  if [[ "$WHAT" == tests || "$WHAT" == all ]]; then
    # MPI tests (they need mpiexec) run under mpi 1; the others directly.
    mpi_tests="golden_test tp_model_test engine_prefix_test prefix_logits_test"
    for t in ${TESTS:-core_test model_ops_test linear_test step_indices_test
             conv_norm_update_gpu_test ssd_gpu_test mamba1_gpu_test state_manager_gpu_test
             decode_graph_test $mpi_tests}; do
      have "$t" || continue
      if [[ " $mpi_tests " == *" $t "* ]]; then
        run "${t}_gpu_np1" mpi 1 "$t" --gtest_brief=1
      else
        run "$t" timeout 300 "$t" --gtest_brief=1
      fi
    done
  fi
  if [[ "$WHAT" == serve || "$WHAT" == all ]]; then
    run serve_gpu_np1 timeout 120 bash -c "$(declare -f serve_smoke); serve_smoke 1"
  fi
  if [[ "$WHAT" == multi ]]; then
    nvidia-smi topo -m > "$LOGS/topo.txt" 2>&1
    for t in parallel_mpi_test golden_test tp_model_test engine_prefix_test prefix_logits_test; do
      have "$t" && run "${t}_nccl_np2" mpi 2 "$t" --gtest_brief=1
    done
    run serve_gpu_np2 timeout 120 bash -c "$(declare -f serve_smoke); serve_smoke 2"
    have bench_allreduce && run bench_allreduce_np2 mpi 2 bench_allreduce
    if have bench_tp_layer; then  # 8 layers: the embedding and head are amortised
      run bench_tp_layer_np1 mpi 1 bench_tp_layer --layers 8
      run bench_tp_layer_np2 mpi 2 bench_tp_layer --layers 8
    fi
  fi
  if [[ "$WHAT" == bench || "$WHAT" == all ]]; then
    have bench_ssd_prefill && run bench_ssd_prefill timeout 300 bench_ssd_prefill
    have bench_mamba1 && run bench_mamba1 timeout 300 bench_mamba1
    have bench_mamba2_decode && run bench_mamba2_decode timeout 300 bench_mamba2_decode
    have bench_model && run bench_model timeout 400 bench_model --layers 64
    if [[ -d .fetched/mamba_ssm_triton ]]; then
      run anchor timeout 300 python3 bench/mamba_ssm_anchor.py --root .fetched/mamba_ssm_triton
    fi
  fi
done
