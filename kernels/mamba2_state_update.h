// Mamba-2 selective state update (decode), per-head scalar A, with the SSM state kept in a
// paged state pool addressed by block index, and a multi-token speculative mode.
//
// For sequence b, token t (0 <= t < T_s = tokens_per_seq), local head h, channel p, state n,
// with g = the local group of head h (see below):
//   dt    = dt_raw[b,t,h] + dt_bias[h]            (dt_bias optional)
//   dt    = softplus(dt) if dt_softplus           (mamba_math.h Softplus, threshold 20)
//   dt    = clamp(dt, dt_min, dt_max)             (dt_limit, default (0, inf))
//   dA    = exp(dt * A[h])
//   s[p,n] = dA * s[p,n] + dt * B[b,t,g,n] * x[b,t,h,p]
//   y     = sum_n C[b,t,g,n] * s[p,n] + D * x[b,t,h,p]      (D[h], D[h,p] or none)
//   y    *= silu(z[b,t,h,p])                       (z optional)
// State arithmetic is fp32 (a bf16 state is widened on load, rounded once on store).
//
// Head-to-group mapping (parallel/mamba2_groups.h): local head j reads local group
//   (first_head + j) / heads_per_group - first_group
// which covers contiguous groups, the extra-group replication rule and straddling ranks.
// Defaults (first_head = first_group = 0, heads_per_group = 0 meaning num_heads/num_groups)
// give the single-rank mapping h / (H/G).
//
// State pool: element (block k, head h, p, n) at
//   state[k * state_block_stride + h * state_head_stride + p * state_p_stride + n]
// (n contiguous). fp32 or bf16. Block 0 is the null block.
//
// Addressing:
//   state_block_in[b]: the block read. 0 = the sequence is skipped entirely: no state is read
//     or written and its y rows are NOT written.
//   state_block_out == null: after the last token the state is written back in place to
//     state_block_in[b].
//   state_block_out != null (speculative, vLLM style): the state after token t is written to
//     block state_block_out[b * state_block_out_stride + t] (0 = don't write that token's
//     state); block state_block_in[b] is then not written unless it also appears there.
//     Output blocks of different (b, t) must be distinct and must not be another sequence's
//     input block.
//   T_s tokens in one call equal T_s single-token calls in sequence.
//
// Inputs with a token dim (b, t, ...): x/z/y (B, T_s, H, P), dt (B, T_s, H), B/C (B, T_s, G, N),
// all with explicit 64-bit strides (elements); the innermost dim (P or N) must be contiguous.
#ifndef MAMBASERVE_KERNELS_MAMBA2_STATE_UPDATE_H_
#define MAMBASERVE_KERNELS_MAMBA2_STATE_UPDATE_H_

#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "core/dtype.h"
#include "core/stream.h"

namespace mambaserve {

struct Mamba2StateUpdateParams {
  int64_t batch = 0;           // sequences
  int64_t tokens_per_seq = 1;  // 1 + num_spec
  int64_t num_heads = 0;       // local heads H
  int64_t head_dim = 0;        // P
  int64_t num_groups = 0;      // local groups G (B and C have G rows per token)
  int64_t d_state = 0;         // N

  // Group mapping (see the file comment).
  int64_t first_head = 0;
  int64_t heads_per_group = 0;  // 0 = num_heads / num_groups
  int64_t first_group = 0;

  DType dtype = DType::kF32;  // x, z, B, C, y: f32/bf16/f16
  const void* x = nullptr;
  int64_t x_batch_stride = 0, x_token_stride = 0, x_head_stride = 0;
  const void* z = nullptr;  // optional
  int64_t z_batch_stride = 0, z_token_stride = 0, z_head_stride = 0;
  const void* B = nullptr;
  int64_t B_batch_stride = 0, B_token_stride = 0, B_group_stride = 0;
  const void* C = nullptr;
  int64_t C_batch_stride = 0, C_token_stride = 0, C_group_stride = 0;
  void* y = nullptr;  // must not alias inputs
  int64_t y_batch_stride = 0, y_token_stride = 0, y_head_stride = 0;

  DType dt_dtype = DType::kF32;  // f32/bf16/f16
  const void* dt = nullptr;
  int64_t dt_batch_stride = 0, dt_token_stride = 0, dt_head_stride = 1;

  // Per-head parameters, fp32.
  const float* dt_bias = nullptr;  // (H) or null
  bool dt_softplus = true;
  float dt_min = 0.0f;
  float dt_max = std::numeric_limits<float>::infinity();
  const float* A = nullptr;  // (H), already -exp(A_log)
  const float* D = nullptr;  // (H), or (H, P) contiguous when d_per_channel; null = no skip
  bool d_per_channel = false;

  // State pool.
  void* state = nullptr;
  DType state_dtype = DType::kF32;  // f32 or bf16
  int64_t num_blocks = 0;           // block indices must be < num_blocks
  int64_t state_block_stride = 0, state_head_stride = 0, state_p_stride = 0;
  const int32_t* state_block_in = nullptr;   // (batch), required
  const int32_t* state_block_out = nullptr;  // (batch, T_s) or null
  int64_t state_block_out_stride = 0;        // 0 = tokens_per_seq

  // CUDA, launched as a dependent (core/dependent_launch.h): read the state before waiting for
  // the kernels before this one, so its DRAM latency overlaps them. Only for a caller whose
  // earlier kernels on the stream cannot still be writing these states (the model's step: the
  // previous step has ended, and nothing before the update in a step writes a decode state).
  // A permission: the kernel uses it only for a grid that is resident at once (one wave).
  bool read_state_before_wait = false;
};

absl::Status RunMamba2StateUpdate(const Mamba2StateUpdateParams& p, const Stream& stream);

absl::Status RunMamba2StateUpdateCpu(const Mamba2StateUpdateParams& p);
#if MAMBASERVE_HAS_CUDA
absl::Status RunMamba2StateUpdateCuda(const Mamba2StateUpdateParams& p, const Stream& stream);
#endif

}  // namespace mambaserve

#endif  // MAMBASERVE_KERNELS_MAMBA2_STATE_UPDATE_H_
