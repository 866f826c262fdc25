#!/usr/bin/env bash
# The project's entry point.
#   ./dev.sh run    install what is missing, build, and run the main job
#   ./dev.sh test   install what is missing, build, and run every test (ctest, incl. mpirun)
#   ./dev.sh build  install and build only
# Environment: BUILD_DIR (default build), JOBS (default: all cores), SANITIZE=0 skips the
# sanitizer pass of `test`.
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(pwd)"
BUILD_DIR="${BUILD_DIR:-build}"
JOBS="${JOBS:-$(nproc)}"

install() { "$ROOT/scripts/install_deps.sh"; }

build() {
  local dir="$1"; shift
  cmake -S "$ROOT" -B "$dir" -G Ninja "$@" >/dev/null
  cmake --build "$dir" -j "$JOBS"
}

case "${1:-}" in
  build)
    install
    build "$BUILD_DIR"
    ;;
  run)
    install
    build "$BUILD_DIR"
    exec "$ROOT/scripts/main_job.sh" "$BUILD_DIR"
    ;;
  test)
    install
    build "$BUILD_DIR"
    ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS"
    if [[ "${SANITIZE:-1}" != 0 ]]; then
      # CPU unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer (no CUDA, so
      # the sanitizer runtime never meets the CUDA driver).
      build "${BUILD_DIR}-asan" -DMAMBASERVE_SANITIZE=ON -DMAMBASERVE_ENABLE_CUDA=OFF \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo
      ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --test-dir "${BUILD_DIR}-asan" --output-on-failure -j "$JOBS" -L unit
    fi
    ;;
  *)
    echo "usage: $0 run|test|build" >&2
    exit 2
    ;;
esac
