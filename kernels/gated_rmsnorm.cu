// CUDA implementation (work in progress).
#include "kernels/gated_rmsnorm.h"

namespace mambaserve {

absl::Status RunGatedRmsNormCuda(const GatedRmsNormParams& p, const Stream& stream) {
  return absl::UnimplementedError("RunGatedRmsNormCuda: CUDA kernel not yet implemented");
}
}  // namespace mambaserve
