// Depthwise causal conv1d over packed variable-length batches (prefill) and its decode update,
// with the conv state kept in a paged state pool addressed by block index.
//
// out[t, c] = act(bias[c] + sum_{k=0}^{W-1} weight[c, k] * xx[t - (W-1) + k, c])
// where xx is the sequence's inputs preceded by its W-1 history inputs (the conv window read
// from the state pool, or zeros), and act is SiLU or the identity. weight[c, W-1] multiplies the
// current token (PyTorch's conv1d weight (dim, 1, W) squeezed). Accumulation is fp32.
//
// Conv state pool. One block holds a (state_len, dim) array of past *inputs* (x before the conv),
// block b, row r (0 = oldest), channel c at
//   SD layout: conv_state[b * state_block_stride + r * state_stride + c]
//   DS layout: conv_state[b * state_block_stride + c * state_stride + r]
// state_stride is the pool's full row (SD) or channel (DS) pitch, so a call may cover a column
// slice of the pool's channels: pass conv_state already offset to the first channel.
// state_len >= W - 1 (Mamba-2 with speculative decoding keeps W - 1 + num_spec rows).
// Block 0 is the null block: never read (reads as zeros) and never written.
//
// Where the conv window (the W-1 most recent inputs) sits in a block, `align`:
//   kTail (default; vLLM's prefill convention): a block holds the last state_len inputs of the
//     stream, newest at row state_len-1, older rows zero when the stream is shorter. The window
//     is rows [state_len-(W-1), state_len). Every write shifts the whole block: new block = the
//     last state_len rows of (old block rows ++ new tokens).
//   kHead (the convention of DESIGN.md's copy spec, "copy rows [k-1, state_len) to row 0"):
//     the window is rows [0, W-1), oldest first. Prefill writes rows [0, W-1) only (rows
//     >= W-1 are left untouched). A decode update of T_s tokens writes rows
//     [0, W-2+T_s) = (old window rows 1..W-2) ++ (the T_s new tokens), i.e. drops only the oldest
//     row, so the window that ends at token k-1 (k accepted tokens) starts at row k-1; it
//     requires state_len >= W-2+T_s. Rows >= W-2+T_s are left untouched.
//   With state_len == W-1 and one token per decode step the two conventions are identical.
//   With state_len == W-1+num_spec and T_s = 1+num_spec, both put the window ending at
//   accepted token k-1 at rows [k-1, k-1+W-1) after a decode update.
#ifndef MAMBASERVE_KERNELS_CAUSAL_CONV1D_H_
#define MAMBASERVE_KERNELS_CAUSAL_CONV1D_H_

#include <cstdint>

#include "absl/status/status.h"
#include "core/dtype.h"
#include "core/stream.h"

namespace mambaserve {

enum class ConvStateLayout : int32_t {
  kSD = 0,  // (state_len, dim): channel contiguous (default)
  kDS = 1,  // (dim, state_len): rows of one channel contiguous
};

enum class ConvStateAlign : int32_t {
  kTail = 0,  // window = last W-1 rows, newest at row state_len-1 (vLLM prefill)
  kHead = 1,  // window = rows [0, W-1) (DESIGN.md copy spec)
};

// Conv weights, shared by prefill and decode.
struct ConvWeights {
  int64_t dim = 0;    // channels in this call
  int64_t width = 0;  // W, 2..8
  // weight[c, k] at weight[c * weight_row_stride + k]; weight_row_stride >= width
  // (0 means width). Dtype f32/bf16/f16.
  const void* weight = nullptr;
  int64_t weight_row_stride = 0;
  DType weight_dtype = DType::kF32;
  // (dim), same dtype as weight; null = no bias.
  const void* bias = nullptr;
  bool silu = true;
};

// The conv state pool (see the file comment). `conv_state` points at channel 0 of this call's
// channels in block 0.
struct ConvStatePool {
  void* conv_state = nullptr;
  DType state_dtype = DType::kF32;  // f32, or the same dtype as x
  ConvStateLayout layout = ConvStateLayout::kSD;
  ConvStateAlign align = ConvStateAlign::kTail;
  int64_t num_blocks = 0;          // block indices must be < num_blocks
  int64_t state_len = 0;           // rows per block, >= W-1
  int64_t state_block_stride = 0;  // elements between blocks
  int64_t state_stride = 0;        // SD: elements between rows (>= dim); DS: between channels
};

// Prefill over a packed batch: sequence s is rows [cu_seqlens[s], cu_seqlens[s+1]) of x and out.
struct CausalConv1dParams {
  ConvWeights w;
  ConvStatePool pool;

  int64_t num_tokens = 0;  // rows of x/out; cu_seqlens[num_seqs] <= num_tokens
  int64_t num_seqs = 0;
  // x[t, c] at x[t * x_row_stride + c] (x is often a column slice of in_proj's output).
  const void* x = nullptr;
  int64_t x_row_stride = 0;
  DType dtype = DType::kF32;  // x and out: f32/bf16/f16
  // out[t, c] at out[t * out_row_stride + c]. Must not alias x.
  void* out = nullptr;
  int64_t out_row_stride = 0;

  // Device (CUDA) or host (CPU) int32 arrays.
  const int32_t* cu_seqlens = nullptr;  // (num_seqs + 1), non-decreasing
  // (num_seqs) or null (= all 0). Block 0: the history window reads as zeros.
  const int32_t* initial_state_block = nullptr;
  // (num_seqs) or null (= all 0). Block 0: the final window is not written. Each block index
  // other than 0 must appear at most once, and must not be ANOTHER sequence's initial block
  // (sequences run in parallel on the GPU). A block may equal the sequence's own initial block
  // (chunked prefill continues in place).
  const int32_t* final_state_block = nullptr;
};

// Decode update: every sequence has exactly tokens_per_seq = 1 + num_spec new tokens.
// Token j of sequence s: x[s * x_seq_stride + j * x_token_stride + c]; likewise out.
// The history window is read from block state_block[s] and the block is updated in place
// (see `align`). state_block[s] == 0: the sequence is skipped, its out rows are NOT written.
// Token j's output uses the window ending at token j-1 (the tokens before it in this call
// included), i.e. the result equals tokens_per_seq single-token updates in sequence; the state
// is written once, after all tokens (speculative decoding: the copy spec later picks the window
// of the accepted prefix).
// Every non-zero state_block must be distinct. The CUDA kernel supports tokens_per_seq <= 16.
struct CausalConv1dUpdateParams {
  ConvWeights w;
  ConvStatePool pool;

  int64_t num_seqs = 0;
  int64_t tokens_per_seq = 1;  // 1 + num_spec
  const void* x = nullptr;
  int64_t x_seq_stride = 0;
  int64_t x_token_stride = 0;
  DType dtype = DType::kF32;
  void* out = nullptr;  // may alias x exactly (in-place) but not partially
  int64_t out_seq_stride = 0;
  int64_t out_token_stride = 0;
  const int32_t* state_block = nullptr;  // (num_seqs), required
  // CUDA: read the conv window before waiting for the kernels before this one (see
  // Mamba2StateUpdateParams::read_state_before_wait for when a caller may).
  bool read_state_before_wait = false;
};

absl::Status RunCausalConv1d(const CausalConv1dParams& p, const Stream& stream);
absl::Status RunCausalConv1dUpdate(const CausalConv1dUpdateParams& p, const Stream& stream);

// Implementations (called by the dispatchers after validation).
absl::Status RunCausalConv1dCpu(const CausalConv1dParams& p);
absl::Status RunCausalConv1dUpdateCpu(const CausalConv1dUpdateParams& p);
#if MAMBASERVE_HAS_CUDA
absl::Status RunCausalConv1dCuda(const CausalConv1dParams& p, const Stream& stream);
absl::Status RunCausalConv1dUpdateCuda(const CausalConv1dUpdateParams& p, const Stream& stream);
#endif

}  // namespace mambaserve

#endif  // MAMBASERVE_KERNELS_CAUSAL_CONV1D_H_
