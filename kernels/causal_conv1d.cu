// CUDA implementation (work in progress).
#include "kernels/causal_conv1d.h"

namespace mambaserve {

absl::Status RunCausalConv1dCuda(const CausalConv1dParams& p, const Stream& stream) {
  return absl::UnimplementedError("RunCausalConv1dCuda: CUDA kernel not yet implemented");
}

absl::Status RunCausalConv1dUpdateCuda(const CausalConv1dUpdateParams& p, const Stream& stream) {
  return absl::UnimplementedError("RunCausalConv1dUpdateCuda: CUDA kernel not yet implemented");
}
}  // namespace mambaserve
