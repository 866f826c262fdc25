// CUDA implementation (work in progress).
#include "kernels/mamba2_state_update.h"

namespace mambaserve {

absl::Status RunMamba2StateUpdateCuda(const Mamba2StateUpdateParams& p, const Stream& stream) {
  return absl::UnimplementedError("RunMamba2StateUpdateCuda: CUDA kernel not yet implemented");
}
}  // namespace mambaserve
