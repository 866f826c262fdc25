// Mamba-1 selective scan (prefill) over a packed variable-length batch, with per-sequence initial
// and final states in the paged state pool, optional block-boundary states for prefix caching,
// and every discretisation mode of kernels/mamba_math.h.
//
// For every sequence s (tokens [cu_seqlens[s], cu_seqlens[s+1])), channel d in [0, dim) and
// state index n in [0, d_state), token t of the sequence:
//   dt_in    = delta[t, d] (+ delta_bias[d]), then softplus if delta_softplus
//   dt_decay = dt_in, except in kEventDriven mode: tau[t] * softplus(bias_A[d])
//   (dA, dB_scale) = Discretize(mode, dt_decay, dt_in, A[d, n])          (kernels/mamba_math.h)
//   h[d, n]  = dA * h[d, n] + dB_scale * B[t, g(d), n] * u[t, d]
//   y[t, d]  = sum_n C[t, g(d), n] * h[d, n]  (+ D[d] * u[t, d])  (* silu(z[t, d]) if z)
// with g(d) = d / (dim / n_groups). h starts from the sequence's initial state block (zeros for
// block 0) and is accumulated in fp32.
#ifndef MAMBASERVE_KERNELS_SELECTIVE_SCAN_H_
#define MAMBASERVE_KERNELS_SELECTIVE_SCAN_H_

#include <cstdint>

#include "absl/status/status.h"
#include "core/dtype.h"
#include "core/stream.h"
#include "kernels/mamba_math.h"

namespace mambaserve {

// Largest d_state the kernels accept.
inline constexpr int64_t kSelectiveScanMaxDState = 256;

// All pointers are host pointers for a CPU stream and device pointers for a CUDA stream
// (including cu_seqlens and the block-index arrays). Strides are in elements, 64-bit.
// Optional pointers are null when absent.
struct SelectiveScanParams {
  // ---- sizes ----
  int64_t num_tokens = 0;  // T: tokens of all sequences, packed
  int64_t num_seqs = 0;    // S
  int64_t dim = 0;         // d_inner (of this rank)
  int64_t d_state = 0;     // N, 1..256
  int64_t n_groups = 1;    // G: B/C groups; dim % n_groups == 0
  // [S + 1], cu_seqlens[0] = 0, non-decreasing, cu_seqlens[S] = T. Sequences may be empty.
  const int32_t* cu_seqlens = nullptr;

  // ---- activations ----
  // dtype of u, delta, z and y (f32, bf16, f16).
  DType x_dtype = DType::kBF16;
  // dtype of B and C (f32, bf16, f16); may differ from x_dtype (e.g. fp32 x_proj output).
  DType bc_dtype = DType::kBF16;
  // u[t, d] at u[t * u_row_stride + d] (channels contiguous; rows may be slices of a wider
  // projection output).
  const void* u = nullptr;
  int64_t u_row_stride = 0;
  const void* delta = nullptr;  // [T, dim], row stride delta_row_stride
  int64_t delta_row_stride = 0;
  const float* delta_bias = nullptr;  // [dim], optional
  bool delta_softplus = true;
  const float* A = nullptr;  // [dim, d_state], contiguous, fp32 (A = -exp(A_log))
  // B[t, g, n] at B[t * B_row_stride + g * B_group_stride + n]; ungrouped is n_groups = 1.
  const void* B = nullptr;
  int64_t B_row_stride = 0;
  int64_t B_group_stride = 0;
  const void* C = nullptr;
  int64_t C_row_stride = 0;
  int64_t C_group_stride = 0;
  const float* D = nullptr;  // [dim], optional skip connection
  const void* z = nullptr;   // [T, dim], optional gate: y *= silu(z)
  int64_t z_row_stride = 0;
  void* y = nullptr;  // [T, dim] output, row stride y_row_stride (may alias nothing above)
  int64_t y_row_stride = 0;

  // ---- discretisation ----
  Discretization mode = Discretization::kDefault;
  // kEventDriven only: per-token integration step tau [T] and per-channel bias_A [dim] (fp32);
  // dt_decay = tau[t] * softplus(bias_A[d]). Ignored in every other mode.
  const float* tau = nullptr;
  const float* bias_A = nullptr;

  // ---- state pool ----
  // Block b's state for this layer is the (dim, d_state) row-major array at
  // state_pool + b * state_block_stride (elements of state_dtype; 0 means dim * d_state).
  // Block 0 is the null block: never read, never written.
  void* state_pool = nullptr;
  DType state_dtype = DType::kF32;  // f32 or bf16 (f16 also accepted)
  int64_t num_state_blocks = 0;     // blocks in the pool (indices are checked on the CPU only)
  int64_t state_block_stride = 0;
  // [S] per-sequence initial state block; 0 (or a null array) = start from zeros.
  const int32_t* initial_state_block = nullptr;
  // [S] per-sequence block that receives the state after the sequence's last token;
  // 0 (or a null array) = not written. It may equal the sequence's initial block (in place).
  const int32_t* final_state_block = nullptr;

  // ---- block-boundary states (prefix caching, vLLM's "all" mode) ----
  // Off when block_size == 0. Otherwise prefix_offset[s] is the number of tokens of sequence s
  // processed before this call (its first token here has absolute position prefix_offset[s]).
  // Whenever the number of processed tokens k = prefix_offset[s] + i + 1 after local token i
  // (0 <= i < len_s) is a multiple of block_size, the state after that token (the state a block
  // holding absolute tokens [k - block_size, k) caches) is written to
  //   boundary_state_blocks[s * boundary_blocks_stride + j],
  //   j = k / block_size - prefix_offset[s] / block_size - 1   (integer division),
  // i.e. j counts the boundaries crossed inside this call, starting at 0. A destination of 0 is
  // skipped. Row s must hold at least (prefix_offset[s] + len_s) / block_size -
  // prefix_offset[s] / block_size entries; entries past that are not read. When the sequence's
  // end is itself a boundary the state goes both there and to final_state_block. Destinations
  // must not be any sequence's initial block.
  int64_t block_size = 0;
  const int64_t* prefix_offset = nullptr;          // [S]
  const int32_t* boundary_state_blocks = nullptr;  // [S, boundary_blocks_stride]
  int64_t boundary_blocks_stride = 0;

  // ---- CUDA launch geometry (tests and benchmarks) ----
  // Time segments of every sequence that the CUDA scan runs in parallel (1..16; each segment but
  // the last is then scanned twice); 0 = chosen from the sizes. Ignored by the CPU implementation.
  int cuda_time_segments = 0;
};

// Validates the parameters (sizes, dtypes, required pointers; on the CPU also the block indices
// and cu_seqlens) and runs the scan on `stream`'s device.
absl::Status RunSelectiveScan(const SelectiveScanParams& p, const Stream& stream);

// The implementations behind the dispatcher (no validation).
absl::Status RunSelectiveScanCpu(const SelectiveScanParams& p);
#if MAMBASERVE_HAS_CUDA
absl::Status RunSelectiveScanCuda(const SelectiveScanParams& p, const Stream& stream);
#endif

}  // namespace mambaserve

#endif  // MAMBASERVE_KERNELS_SELECTIVE_SCAN_H_
