// CUDA against CPU for causal conv1d, gated RMSNorm and the Mamba-2 state update (GPU machine).
#include "core/device.h"
#include "gtest/gtest.h"

namespace mambaserve {
namespace {

TEST(ConvNormUpdateGpu, Placeholder) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device: CUDA-vs-CPU checks skipped";
}

}  // namespace
}  // namespace mambaserve
