// The causal-conv stage both mixers share: over one step's batch, the decode rows update their
// conv window in place and the prefill sequences read their initial window and write their
// final one, all in the pool's SD layout with the window at the tail of each block.
#ifndef MAMBASERVE_LAYERS_MIXER_CONV_H_
#define MAMBASERVE_LAYERS_MIXER_CONV_H_

#include <cstdint>

#include "absl/status/status.h"
#include "core/buffer.h"
#include "layers/step_context.h"
#include "state_manager/state_pool.h"

namespace mambaserve {

struct MixerConvArgs {
  const void* x = nullptr;  // (T, dim) rows x_row_stride apart, dtype
  int64_t x_row_stride = 0;
  void* out = nullptr;  // (T, dim) contiguous, dtype
  int64_t dim = 0;
  int64_t width = 4;
  const Buffer* weight = nullptr;  // (dim, width), dtype
  const Buffer* bias = nullptr;    // (dim), dtype; empty buffer = no bias
  DType dtype = DType::kF32;
};

// Runs the conv over the step. With kernel-written prefix caching it first stores the conv
// window at every block boundary of the prefills into the boundary's block (read before the
// conv updates the sequences' initial blocks in place).
absl::Status RunMixerConv(const MixerConvArgs& a, const StateTensorRef& conv, StepContext& ctx);

}  // namespace mambaserve

#endif  // MAMBASERVE_LAYERS_MIXER_CONV_H_
