#!/usr/bin/env bash
# The main job: until the model lands, the state-shape and unit checks are the most complete
# real thing; this is replaced by generation on the embedded model.
set -euo pipefail
BUILD_DIR="${1:-build}"
ctest --test-dir "$BUILD_DIR" --output-on-failure -L unit
