// One Mamba-2 decode step between in_proj and out_proj: causal conv update of xBC, selective
// state update, gated RMSNorm. Semantically it is exactly the three ops in sequence:
//   RunCausalConv1dUpdate(conv) ; RunMamba2StateUpdate(ssm) ; RunGatedRmsNorm(norm)
// which is what the CPU path runs (each op is checked against a float64 oracle in its own
// tests). On the GPU, when the arguments have the standard Mamba-2 layout (see
// Mamba2DecodeStepFusable), one kernel does all three: at batch 1 the three ops are each a few
// microseconds of latency over a few MB, so launching them separately costs more than their
// memory traffic (bench/RESULTS.md, "decode step").
//
// The fused kernel runs one thread block per (sequence, head, tile of head rows). Each block
// computes the conv outputs it needs (its x rows and its group's B and C), updates its state
// rows, writes y rounded to the activation dtype and a partial sum of squares; the last block
// of a sequence to finish (an arrival counter) normalises the sequence's whole y row and writes
// the conv windows of the B and C channels, which every head of a group reads.
#ifndef MAMBASERVE_KERNELS_MAMBA2_DECODE_STEP_H_
#define MAMBASERVE_KERNELS_MAMBA2_DECODE_STEP_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "core/stream.h"
#include "kernels/causal_conv1d.h"
#include "kernels/gated_rmsnorm.h"
#include "kernels/mamba2_state_update.h"

namespace mambaserve {

struct Mamba2DecodeStepParams {
  // conv.out is the conv output; ssm.x, ssm.B and ssm.C read it, norm.y is ssm.y.
  CausalConv1dUpdateParams conv;
  Mamba2StateUpdateParams ssm;
  GatedRmsNormParams norm;

  // Scratch of the fused CUDA kernel (device memory; unused elsewhere):
  //   arrivals: (ssm.batch) int32, all zero before the call; the kernel leaves them zero.
  //   partial_sums: (ssm.batch * Mamba2DecodeStepPartials(ssm)) floats, any contents.
  // With the fused kernel the contents of conv.out after the call are unspecified.
  int32_t* arrivals = nullptr;
  float* partial_sums = nullptr;
};

// Partial sums per sequence the fused kernel writes (one per block; a block has at least
// kMamba2DecodeStepMinRows state rows).
inline constexpr int64_t kMamba2DecodeStepMinRows = 8;
inline int64_t Mamba2DecodeStepPartials(const Mamba2StateUpdateParams& ssm) {
  return ssm.num_heads * ((ssm.head_dim + kMamba2DecodeStepMinRows - 1) / kMamba2DecodeStepMinRows);
}

// Whether the fused CUDA kernel can run these arguments; if not, `why` says what is missing.
// It needs: one token per sequence, the state updated in place, conv.out laid out as
// [x (H*P) | B (G*N) | C (G*N)] with ssm.x/B/C pointing into it, tail-aligned conv windows of
// exactly width-1 rows, the same block indices for conv and state, a fused-mode norm over
// ssm.y in place whose groups hold whole heads, no z in the state update (the norm gates),
// fp32 or bf16 activations and conv weights, conv width <= 4, d_state a power of two from 32
// (fp32 state) or 64 (bf16 state) to 256, and the scratch.
bool Mamba2DecodeStepFusable(const Mamba2DecodeStepParams& p, std::string* why = nullptr);

// Validates every part, then runs the fused kernel or the three ops.
absl::Status RunMamba2DecodeStep(const Mamba2DecodeStepParams& p, const Stream& stream);

#if MAMBASERVE_HAS_CUDA
// The fused kernel alone (the caller has validated and checked Mamba2DecodeStepFusable).
absl::Status RunMamba2DecodeStepFusedCuda(const Mamba2DecodeStepParams& p, const Stream& stream);
#endif

}  // namespace mambaserve

#endif  // MAMBASERVE_KERNELS_MAMBA2_DECODE_STEP_H_
