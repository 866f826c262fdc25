// Index arithmetic of the conv state pool shared by the CPU and CUDA causal conv1d kernels.
#ifndef MAMBASERVE_KERNELS_CAUSAL_CONV1D_COMMON_H_
#define MAMBASERVE_KERNELS_CAUSAL_CONV1D_COMMON_H_

#include <cstdint>

#include "kernels/causal_conv1d.h"
#include "kernels/mamba_math.h"

namespace mambaserve {
namespace conv_internal {

// Element offset of (block, row, channel) in the pool.
MS_HOST_DEVICE int64_t StateOffset(const ConvStatePool& s, int64_t block, int64_t row, int64_t c) {
  return s.layout == ConvStateLayout::kSD ? block * s.state_block_stride + row * s.state_stride + c
                                          : block * s.state_block_stride + c * s.state_stride + row;
}

// First row of the conv window (W-1 rows) in a block.
MS_HOST_DEVICE int64_t WindowRow(const ConvStatePool& s, int64_t width) {
  return s.align == ConvStateAlign::kTail ? s.state_len - (width - 1) : 0;
}

}  // namespace conv_internal
}  // namespace mambaserve

#endif  // MAMBASERVE_KERNELS_CAUSAL_CONV1D_COMMON_H_
