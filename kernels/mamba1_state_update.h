// Mamba-1 decode: one recurrence step per token on states held in the paged state pool, with an
// optional multi-token speculative mode. Same math as the prefill scan (kernels/selective_scan.h)
// and the same discretisation code (kernels/mamba_math.h), so a prefill of n tokens followed by
// m decodes gives the prefill of n + m tokens.
//
// Tokens are rows r = b * (1 + num_spec) + t, b in [0, batch), t in [0, 1 + num_spec). Sequence
// b reads its state from block state_block_in[b], runs its 1 + num_spec tokens in order, and
//   - without state_block_out: writes the state after its last token back to state_block_in[b]
//     (in place);
//   - with state_block_out: writes the state after token t to block
//     state_block_out[b * (1 + num_spec) + t] (each token's state into its own block, so the
//     scheduler can keep the state of the last accepted draft token); state_block_in[b] is then
//     left untouched unless it also appears in state_block_out.
// Block 0 is the null block: an input block of 0 starts from zeros, an output block of 0 is not
// written. y is always computed (for a padded slot with block 0 it is the zero-state output).
#ifndef MAMBASERVE_KERNELS_MAMBA1_STATE_UPDATE_H_
#define MAMBASERVE_KERNELS_MAMBA1_STATE_UPDATE_H_

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "core/dtype.h"
#include "core/stream.h"
#include "kernels/mamba_math.h"

namespace mambaserve {

// Pointers are host pointers for a CPU stream, device pointers for a CUDA stream. Strides are in
// elements. Optional pointers are null when absent.
struct Mamba1StateUpdateParams {
  int64_t batch = 0;     // sequences
  int64_t num_spec = 0;  // speculative tokens per sequence; each sequence has 1 + num_spec rows
  int64_t dim = 0;       // d_inner (of this rank)
  int64_t d_state = 0;   // N, 1..256
  int64_t n_groups = 1;  // dim % n_groups == 0; channel d reads group d / (dim / n_groups)

  DType x_dtype = DType::kBF16;   // u, delta (unless delta_dtype), z, y
  DType bc_dtype = DType::kBF16;  // B, C
  const void* u = nullptr;        // [rows, dim], row stride u_row_stride
  int64_t u_row_stride = 0;
  const void* delta = nullptr;  // [rows, dim]
  int64_t delta_row_stride = 0;
  // delta's dtype when it differs from x_dtype: the model passes dt_proj's f32 output as it is
  // (no cast kernel between them in a decode step).
  std::optional<DType> delta_dtype;
  const float* delta_bias = nullptr;  // [dim], optional
  bool delta_softplus = true;
  const float* A = nullptr;  // [dim, d_state] fp32
  const void* B = nullptr;   // B[r, g, n] at B[r * B_row_stride + g * B_group_stride + n]
  int64_t B_row_stride = 0;
  int64_t B_group_stride = 0;
  const void* C = nullptr;
  int64_t C_row_stride = 0;
  int64_t C_group_stride = 0;
  const float* D = nullptr;  // [dim], optional
  const void* z = nullptr;   // [rows, dim], optional gate
  int64_t z_row_stride = 0;
  void* y = nullptr;  // [rows, dim]
  int64_t y_row_stride = 0;

  Discretization mode = Discretization::kDefault;
  const float* tau = nullptr;     // [rows], kEventDriven only
  const float* bias_A = nullptr;  // [dim], kEventDriven only

  // Block b's state: (dim, d_state) row-major at state_pool + b * state_block_stride
  // (0 = dim * d_state).
  void* state_pool = nullptr;
  DType state_dtype = DType::kF32;
  int64_t num_state_blocks = 0;
  int64_t state_block_stride = 0;
  const int32_t* state_block_in = nullptr;   // [batch], required
  const int32_t* state_block_out = nullptr;  // [batch * (1 + num_spec)], optional

  // CUDA, launched as a dependent (core/dependent_launch.h): read the block indices and the state
  // before waiting for the kernels before this one, so that their DRAM latency overlaps them.
  // Only for a caller whose earlier kernels on the stream cannot still be writing these states
  // or indices (the model's step: the previous step has ended, and nothing before the update in
  // a step writes a decode state). Not used by the event-driven mode's streamed kernel (its tau
  // is read with the indices).
  bool read_state_before_wait = false;
};

absl::Status RunMamba1StateUpdate(const Mamba1StateUpdateParams& p, const Stream& stream);

absl::Status RunMamba1StateUpdateCpu(const Mamba1StateUpdateParams& p);
#if MAMBASERVE_HAS_CUDA
absl::Status RunMamba1StateUpdateCuda(const Mamba1StateUpdateParams& p, const Stream& stream);
#endif

}  // namespace mambaserve

#endif  // MAMBASERVE_KERNELS_MAMBA1_STATE_UPDATE_H_
