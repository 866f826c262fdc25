// Internal tuning entry point of the CUDA Mamba-2 state update, for the benchmark and the GPU
// test only: runs the kernel with a given number of state rows per thread group (2, 4, 8 or 16;
// 0 = the default policy of RunMamba2StateUpdate). Not part of the public API.
#ifndef MAMBASERVE_KERNELS_MAMBA2_STATE_UPDATE_INTERNAL_H_
#define MAMBASERVE_KERNELS_MAMBA2_STATE_UPDATE_INTERNAL_H_

#include "absl/status/status.h"
#include "core/stream.h"
#include "kernels/mamba2_state_update.h"

namespace mambaserve {

// The argument checks of RunMamba2StateUpdate that need no access to the block indices.
absl::Status ValidateMamba2StateUpdate(const Mamba2StateUpdateParams& p);

#if MAMBASERVE_HAS_CUDA
// Validates like RunMamba2StateUpdate, then launches with `rows` (honoured for state rows of at
// most 8 floats per thread, 16 only for at most 4; otherwise the default).
absl::Status RunMamba2StateUpdateCudaRows(const Mamba2StateUpdateParams& p, const Stream& stream,
                                          int rows);
#endif

}  // namespace mambaserve

#endif  // MAMBASERVE_KERNELS_MAMBA2_STATE_UPDATE_INTERNAL_H_
