#!/usr/bin/env bash
# Builds the kernel timeline tracer (development tool) into build-trace/: fetches CUPTI 13.0
# (the PyPI wheel nvidia-cuda-cupti; the Debian CUDA packages here do not carry it) into the
# git-ignored .fetched/cupti, then compiles kernel_trace.cc against it. libcupti.so.13 is
# copied beside the tracer so that a device bundle can carry both.
# Use: LD_PRELOAD=build-trace/libkernel_trace.so KERNEL_TRACE_OUT=t.csv PROGRAM ...
set -euo pipefail
cd "$(dirname "$0")/../.."
CUPTI=.fetched/cupti
if [ ! -f "$CUPTI/nvidia/cu13/include/cupti.h" ]; then
  mkdir -p "$CUPTI"
  pip download --no-deps -q -d "$CUPTI" "nvidia-cuda-cupti==13.0.*"
  (cd "$CUPTI" && unzip -q -o ./*.whl)
fi
mkdir -p build-trace
cp "$CUPTI/nvidia/cu13/lib/libcupti.so.13" build-trace/
g++ -std=c++17 -O2 -fPIC -shared -o build-trace/libkernel_trace.so \
  scripts/kernel_trace/kernel_trace.cc -I"$CUPTI/nvidia/cu13/include" \
  -I/usr/local/cuda/include -Lbuild-trace -l:libcupti.so.13 -Wl,-rpath,'$ORIGIN'
echo "built build-trace/libkernel_trace.so"
