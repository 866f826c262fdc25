#!/usr/bin/env bash
# The main job: start `mpirun -np 2 mambaserve` on the embedded model (testdata/golden/m2_g1, a
# small Mamba-2 checkpoint; on a GPU machine each rank takes a GPU, elsewhere the CPU backend),
# generate from a prompt over gRPC, run the load generator, then drain and stop the server.
#   scripts/main_job.sh [BUILD_DIR]      env: RANKS (2), MODEL, LOAD_SECONDS (5)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build}"
RANKS="${RANKS:-2}"
MODEL="${MODEL:-testdata/golden/m2_g1}"
# (Not $SECONDS: bash keeps the seconds since the shell started there, so it is always set.)
SECONDS_LOAD="${LOAD_SECONDS:-5}"
SOCK="unix:/tmp/mambaserve_main_$$.sock"
LOG="/tmp/mambaserve_main_$$.log"
SERVER="$BUILD_DIR/launcher/mambaserve"
CLIENT="$BUILD_DIR/launcher/mambaserve_client"

mpiexec -np "$RANKS" --oversubscribe --allow-run-as-root --bind-to none \
  "$SERVER" --model "$MODEL" --config configs/presets/cpu_small.textproto --listen "$SOCK" \
  >"$LOG" 2>&1 &
MPI_PID=$!
trap 'kill -KILL $MPI_PID 2>/dev/null || true' EXIT

for _ in $(seq 1 300); do
  if "$CLIENT" --address "$SOCK" health 2>/dev/null | grep -q "serving: true"; then break; fi
  if ! kill -0 $MPI_PID 2>/dev/null; then cat "$LOG"; echo "server failed to start" >&2; exit 1; fi
  sleep 0.2
done
echo "== server (mpirun -np $RANKS mambaserve --model $MODEL)"
"$CLIENT" --address "$SOCK" info
PROMPT="1,17,42,99,256,7,300,12,5,88,64,128"
echo "== generate: prompt $PROMPT, 24 greedy tokens"
"$CLIENT" --address "$SOCK" generate --ids "$PROMPT" --max_new_tokens 24
echo "== load: 8 streams for ${SECONDS_LOAD}s, 48-token prompts sharing a 32-token prefix, 32 new tokens each"
"$CLIENT" --address "$SOCK" load --streams 8 --seconds "$SECONDS_LOAD" --prompt_len 48 \
  --shared_prefix 32 --max_new_tokens 32
echo "== stats"
"$CLIENT" --address "$SOCK" stats
# mpirun forwards SIGUSR1 to the ranks: rank 0 drains in-flight requests and stops everyone.
kill -USR1 $MPI_PID
wait $MPI_PID
trap - EXIT
echo "== server log"
cat "$LOG"
