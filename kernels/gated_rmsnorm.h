// Gated RMSNorm of the Mamba-2 mixer output, normalised per group of channels (mamba_ssm's
// RMSNormGated with group_size), with a split form for groups that span tensor-parallel ranks.
//
// For token t and local channel c (0 <= c < dim), with gate g = silu(z[t, c]) (g = 1 if no z):
//   norm_before_gate == false:  v = y * g;  out = v * rsqrt(S / group_size + eps) * w[c]
//   norm_before_gate == true:   v = y;      out = v * rsqrt(S / group_size + eps) * w[c] * g
// (w = 1 without a weight: the model folds w into out_proj's columns.)
// where S is the sum of v^2 over the channel's whole group. Accumulation is fp32.
//
// Groups are numbered globally: local channel c is global channel channel_offset + c and
// belongs to global group (channel_offset + c) / group_size. group_size is always the GLOBAL
// group width (I_total / G), also when this rank holds only part of a group.
//
// Modes:
//   kFused: every group of the local channels is whole: requires channel_offset % group_size
//     == 0 and dim % group_size == 0. Computes `out` in one pass.
//   kPartialSums (split pass 1): for every (token, global group g touched by the local
//     channels) writes the fp32 partial sum of v^2 over the LOCAL channels of g to
//       sums[t * sums_row_stride + (g - sums_group_offset)]
//     (overwrites; columns of groups with no local channel are not touched, so a caller that
//     all-reduces a (T, G) buffer with sums_group_offset = 0 zeroes it first; a caller with a
//     local (T, num_local_groups) buffer passes sums_group_offset = its first global group).
//     `out` is not written.
//   kApply (split pass 2): reads the complete (all-reduced) sums S from the same addressing
//     and writes `out`. channel_offset and dim may be anything (groups may be partial).
//   Summing every rank's kPartialSums columns and then running kApply equals kFused.
#ifndef MAMBASERVE_KERNELS_GATED_RMSNORM_H_
#define MAMBASERVE_KERNELS_GATED_RMSNORM_H_

#include <cstdint>

#include "absl/status/status.h"
#include "core/dtype.h"
#include "core/stream.h"

namespace mambaserve {

enum class GatedRmsNormMode : int32_t { kFused = 0, kPartialSums = 1, kApply = 2 };

struct GatedRmsNormParams {
  GatedRmsNormMode mode = GatedRmsNormMode::kFused;
  int64_t num_tokens = 0;
  int64_t dim = 0;            // local channels
  DType dtype = DType::kF32;  // y, z, out: f32/bf16/f16

  const void* y = nullptr;  // y[t, c] at y[t * y_row_stride + c]
  int64_t y_row_stride = 0;
  const void* z = nullptr;  // optional gate, same dtype; null = no gating
  int64_t z_row_stride = 0;
  const void* weight = nullptr;  // (dim) local slice of norm.weight or null (1); unused in
                                 // kPartialSums
  DType weight_dtype = DType::kF32;
  void* out = nullptr;  // out[t, c] at out[t * out_row_stride + c]; may alias y exactly
  int64_t out_row_stride = 0;

  int64_t group_size = 0;      // global group width (channels), > 0
  int64_t channel_offset = 0;  // global index of local channel 0
  float eps = 1e-5f;
  bool norm_before_gate = false;

  // Split form only: fp32 sums of squares, see the file comment.
  float* sums = nullptr;
  int64_t sums_row_stride = 0;
  int64_t sums_group_offset = 0;
};

absl::Status RunGatedRmsNorm(const GatedRmsNormParams& p, const Stream& stream);

absl::Status RunGatedRmsNormCpu(const GatedRmsNormParams& p);
#if MAMBASERVE_HAS_CUDA
absl::Status RunGatedRmsNormCuda(const GatedRmsNormParams& p, const Stream& stream);
#endif

}  // namespace mambaserve

#endif  // MAMBASERVE_KERNELS_GATED_RMSNORM_H_
