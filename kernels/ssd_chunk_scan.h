// Mamba-2 SSD chunked scan (prefill) over packed variable-length batches, with per-sequence
// initial / final / block-boundary states in a paged state pool. The semantics of mamba_ssm's
// `mamba_chunk_scan_combined`, extended for serving.
//
// Per sequence s (tokens [cu_seqlens[s], cu_seqlens[s+1]) of the packed batch), local head h
// (group g = LocalGroupOfHead(h)), channel p, state n:
//   dt_t   = clamp(softplus(dt_raw[t,h] + dt_bias[h]), dt_min, dt_max)   (softplus optional)
//   h_t    = exp(dt_t * A[h]) * h_{t-1} + dt_t * B[t,g,:] * x[t,h,p]     (state (P, N))
//   y[t,h,p] = sum_n C[t,g,n] h_t[p,n] + D[h or h,p] * x[t,h,p]
//   y     *= silu(z[t,h,p])                                            (when z is given)
// h_{-1} is the state in block initial_state_block[s] (block 0: zeros). Accumulation is fp32.
//
// The computation is the chunked SSD algorithm: within a chunk of Q = chunk_size tokens the
// masked product (C B^T o L) X, each chunk's end state, the state passed chunk to chunk, and the
// incoming state's contribution. Chunks never cross a sequence boundary. Chunks are aligned to the
// sequence's absolute positions: with prefix_offset[s] = o, chunk boundaries are at absolute
// positions that are multiples of Q, so the first chunk of this call has Q - (o % Q) tokens
// (all Q when o % Q == 0, in particular without prefix_offset: each sequence is chunked from its
// own first token). The result does not depend on Q beyond rounding; a CUDA implementation may
// process a chunk in smaller sub-chunks (that divide Q).
//
// State pool (the Mamba-2 ssm state of DESIGN.md, (H, P, N) per block, N contiguous): element
// (head h, p, n) of block b at
//   state[b * state_block_stride + h * state_head_stride + p * N + n]
// `state` points at this call's head 0 in block 0 (a column slice of a TP rank's heads is a
// plain offset). Block 0 is the null block: never read (reads as zeros), never written.
//
// Prefix caching (block-boundary states, vLLM's "all" mode): with block_size > 0 (a multiple of
// chunk_size), the state after absolute position a - 1 for every a = k * block_size with
// prefix_offset[s] < a <= prefix_offset[s] + len_s is written. These are numbered i = 0, 1, ...
// in increasing order; boundary i of sequence s goes to block
//   boundary_state_blocks[boundary_state_offsets[s] + i]
// when i < boundary_state_offsets[s+1] - boundary_state_offsets[s] (later boundaries are not
// written; an entry of 0 skips that boundary). prefix_offset may be any value >= 0 (it need not
// be a multiple of Q or block_size). When the sequence ends exactly on a boundary, that state is
// both the boundary state and the final state.
//
// Pointers are host pointers for the CPU stream and device pointers for a CUDA stream. Index
// arrays (cu_seqlens, block indices, offsets) are int32. Strides are in elements, 64-bit.
#ifndef MAMBASERVE_KERNELS_SSD_CHUNK_SCAN_H_
#define MAMBASERVE_KERNELS_SSD_CHUNK_SCAN_H_

#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "core/dtype.h"
#include "core/stream.h"

namespace mambaserve {

// Which CUDA implementation runs (tests use this to check each one; callers leave kAuto).
enum class SsdCudaImpl : int32_t {
  kAuto = 0,        // tensor cores when supported (bf16 inputs, N <= 128), else kSequential
  kSequential = 1,  // plain fp32 recurrence, any dtype and size (reference-grade accuracy)
  kTensorCore = 2,  // chunked, bf16 mma, fp32 accumulate; bf16 inputs only, N <= 128
};

struct SsdChunkScanParams {
  // ---- sizes ----
  int64_t num_tokens = 0;  // T: rows of x/dt/B/C/z/y; cu_seqlens[num_seqs] <= T
  int64_t num_seqs = 0;
  int64_t num_heads = 0;     // H (local heads of this call)
  int64_t head_dim = 0;      // P
  int64_t num_groups = 0;    // G (local groups; B and C have G groups)
  int64_t d_state = 0;       // N
  int64_t chunk_size = 256;  // Q: a power of two >= 16

  // Head-to-group mapping (parallel/mamba2_groups.h, Mamba2RankSlice::LocalGroupOfHead):
  // local group of local head j = (first_head + j) / heads_per_group - first_group.
  // heads_per_group = 0 means num_heads / num_groups (first_head = first_group = 0 then is the
  // single-rank mapping h / (H/G)).
  int64_t first_head = 0;
  int64_t first_group = 0;
  int64_t heads_per_group = 0;

  // ---- inputs ----
  DType dtype = DType::kBF16;  // x, B, C, z and y: f32/bf16/f16
  // x[t, h, p] at x[t * x_token_stride + h * x_head_stride + p].
  const void* x = nullptr;
  int64_t x_token_stride = 0;
  int64_t x_head_stride = 0;
  // dt[t, h] (raw, before bias/softplus) at dt[t * dt_token_stride + h]; dtype dt_dtype.
  const void* dt = nullptr;
  int64_t dt_token_stride = 0;
  DType dt_dtype = DType::kBF16;
  const float* dt_bias = nullptr;  // (H) or null
  bool dt_softplus = true;
  float dt_min = 0.0f;  // dt_limit
  float dt_max = std::numeric_limits<float>::infinity();
  const float* A = nullptr;  // (H), already -exp(A_log): <= 0 (not checked: device memory)
  // B[t, g, n] at B[t * B_token_stride + g * B_group_stride + n]; likewise C.
  const void* B = nullptr;
  int64_t B_token_stride = 0;
  int64_t B_group_stride = 0;
  const void* C = nullptr;
  int64_t C_token_stride = 0;
  int64_t C_group_stride = 0;
  // D: (H) or, with D_per_channel, (H, P) contiguous; null = no skip term.
  const float* D = nullptr;
  bool D_per_channel = false;
  // z[t, h, p] at z[t * z_token_stride + h * z_head_stride + p]; null = no gating.
  const void* z = nullptr;
  int64_t z_token_stride = 0;
  int64_t z_head_stride = 0;

  // ---- output ----  y[t, h, p] at y[t * y_token_stride + h * y_head_stride + p]. Must not
  // alias any input. Rows not covered by cu_seqlens are not written.
  void* y = nullptr;
  int64_t y_token_stride = 0;
  int64_t y_head_stride = 0;

  // ---- sequences ----
  const int32_t* cu_seqlens = nullptr;  // (num_seqs + 1), non-decreasing, cu_seqlens[0] >= 0

  // ---- state pool ----
  void* state = nullptr;            // see the file comment; may be null when no block index is used
  DType state_dtype = DType::kF32;  // f32 or bf16
  int64_t num_blocks = 0;           // every block index must be < num_blocks
  int64_t state_block_stride = 0;   // elements between blocks (>= H * state_head_stride)
  int64_t state_head_stride = 0;    // elements between heads (>= P * N); 0 means P * N
  // (num_seqs) or null (= all 0 = zero initial state).
  const int32_t* initial_state_block = nullptr;
  // (num_seqs) or null (= all 0 = not written). Each index other than 0 must appear at most once
  // among all written blocks of the call. It may equal the sequence's own initial block.
  const int32_t* final_state_block = nullptr;

  // ---- prefix caching: block-boundary states (see the file comment) ----
  int64_t block_size = 0;                           // 0 = off; else a multiple of chunk_size
  const int32_t* prefix_offset = nullptr;           // (num_seqs) or null (= all 0)
  const int32_t* boundary_state_blocks = nullptr;   // flat list of block indices
  const int32_t* boundary_state_offsets = nullptr;  // (num_seqs + 1)

  SsdCudaImpl cuda_impl = SsdCudaImpl::kAuto;
  // Tensor-core path: segments per sequence (0 = auto, SsdAutoSegments: more than 1 only when
  // sequences x heads leave SMs idle and the sequences are long enough to pay for the extra
  // passes, e.g. a single prompt of 4K tokens). With k > 1 each sequence is cut into k segments
  // that run in parallel, each from a zero state but the first; a combine of the segment end
  // states adds each segment's incoming state to its boundary states, and a correction pass to
  // its y. This needs a workspace of about num_seqs * k * H * (1.5 P * N + 1) + H * num_tokens
  // floats (end states fp32, incoming states bf16, log decays, decays),
  // allocated stream-ordered (cudaMallocAsync) and freed on the same stream. Tests set it to
  // check the segmented path; the result differs from k = 1 only by rounding.
  int32_t cuda_num_segments = 0;
};

// Validates the sizes/strides/dtypes that can be checked without reading device memory and runs
// on `stream`'s device (CPU reference or CUDA). FailedPrecondition for a CUDA stream in a build
// without CUDA.
absl::Status RunSsdChunkScan(const SsdChunkScanParams& p, const Stream& stream);

// The CPU reference (host pointers). Also validates the index arrays.
absl::Status RunSsdChunkScanCpu(const SsdChunkScanParams& p);

#if MAMBASERVE_HAS_CUDA
absl::Status RunSsdChunkScanCuda(const SsdChunkScanParams& p, const Stream& stream);
#endif

// Segments per sequence that the tensor-core path picks for cuda_num_segments = 0: `ctas`
// sequences x heads x 64-channel tiles (one CTA of each is resident per SM), `mean_len` tokens
// per sequence, `sms` SMs. 1 unless SMs would sit idle and the extra passes cost less than the
// idle SMs; segments of >= 256 tokens.
int SsdAutoSegments(int64_t ctas, int64_t mean_len, int sms);

// Validation shared by both backends (sizes, strides, dtypes, flags).
absl::Status ValidateSsdChunkScanParams(const SsdChunkScanParams& p);

}  // namespace mambaserve

#endif  // MAMBASERVE_KERNELS_SSD_CHUNK_SCAN_H_
