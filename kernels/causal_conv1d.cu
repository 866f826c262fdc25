// CUDA causal conv1d: prefill over packed varlen batches and the decode update.
//
// Prefill: one thread per (channel, chunk of kChunk tokens); threads of a block cover
// consecutive channels so every row access is coalesced. The thread keeps the last W-1 inputs
// in registers while it walks its chunk, crossing sequence boundaries by restarting the window
// from the next sequence's initial state. A second small kernel then writes every sequence's
// final window (one thread per (sequence, channel)), after all reads of the initial windows.
// Decode: one thread per (sequence, channel).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "core/cuda_status.h"
#include "core/dependent_launch.cuh"
#include "core/status_macros.h"
#include "kernels/causal_conv1d.h"
#include "kernels/causal_conv1d_common.h"
#include "kernels/cuda_dtype.cuh"
#include "kernels/mamba_math.h"

namespace mambaserve {
namespace {

using conv_internal::StateOffset;
using conv_internal::WindowRow;

constexpr int kThreads = 128;
constexpr int kChunk = 64;
constexpr int kMaxTokensPerSeq = 16;  // decode: 1 + num_spec <= 16

template <typename T>
struct Cvt;
template <>
struct Cvt<float> {
  static __device__ __forceinline__ float Load(const float* p) { return *p; }
  static __device__ __forceinline__ void Store(float* p, float v) { *p = v; }
};
template <>
struct Cvt<__nv_bfloat16> {
  static __device__ __forceinline__ float Load(const __nv_bfloat16* p) {
    return __bfloat162float(*p);
  }
  static __device__ __forceinline__ void Store(__nv_bfloat16* p, float v) {
    *p = __float2bfloat16_rn(v);
  }
};
template <>
struct Cvt<__half> {
  static __device__ __forceinline__ float Load(const __half* p) { return __half2float(*p); }
  static __device__ __forceinline__ void Store(__half* p, float v) { *p = __float2half_rn(v); }
};

// The W-1 history inputs before the first token of sequence s (oldest first) into win.
template <int W>
__device__ __forceinline__ void LoadInitialWindow(const ConvStatePool& s, const int32_t* init,
                                                  int64_t seq, int64_t c, float (&win)[W]) {
  const int64_t blk = init != nullptr ? init[seq] : 0;
  const int64_t r0 = WindowRow(s, W);
#pragma unroll
  for (int i = 0; i < W - 1; ++i) {
    win[i] = blk != 0 ? LoadF(s.conv_state, s.state_dtype, StateOffset(s, blk, r0 + i, c)) : 0.0f;
  }
}

// Index of the sequence holding token t: the largest s with cu[s] <= t (skipping empty ones).
__device__ __forceinline__ int64_t FindSeq(const int32_t* cu, int64_t num_seqs, int64_t t) {
  int64_t lo = 0, hi = num_seqs;  // invariant: cu[lo] <= t < cu[hi]
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (cu[mid] <= t)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

// CPT consecutive channels per thread, loaded as one 16-byte vector when CPT > 1.
template <typename XT, int CPT>
struct VecIO {
  static __device__ __forceinline__ void Load(const XT* p, float (&v)[CPT]) {
    if constexpr (CPT == 1) {
      v[0] = Cvt<XT>::Load(p);
    } else {
      union {
        uint4 u;
        XT e[CPT];
      } q;
      q.u = *reinterpret_cast<const uint4*>(p);
#pragma unroll
      for (int i = 0; i < CPT; ++i) v[i] = Cvt<XT>::Load(&q.e[i]);
    }
  }
  static __device__ __forceinline__ void Store(XT* p, const float (&v)[CPT]) {
    if constexpr (CPT == 1) {
      Cvt<XT>::Store(p, v[0]);
    } else {
      union {
        uint4 u;
        XT e[CPT];
      } q;
#pragma unroll
      for (int i = 0; i < CPT; ++i) Cvt<XT>::Store(&q.e[i], v[i]);
      *reinterpret_cast<uint4*>(p) = q.u;
    }
  }
};

// Tokens whose inputs are loaded together (independent loads in flight per thread).
constexpr int kBatch = 4;

template <typename XT, int W, int CPT>
__global__ void __launch_bounds__(kThreads) ConvPrefillKernel(const CausalConv1dParams p) {
  const int64_t c0 = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) * CPT;
  if (c0 >= p.w.dim) return;
  const int64_t total = p.cu_seqlens[p.num_seqs];
  const int64_t first = p.cu_seqlens[0];
  const int64_t t0 = first + static_cast<int64_t>(blockIdx.y) * kChunk;
  if (t0 >= total) return;
  const int64_t t1 = min(t0 + kChunk, total);

  float w[W][CPT], bias[CPT];
  const int64_t ws = p.w.weight_row_stride > 0 ? p.w.weight_row_stride : W;
#pragma unroll
  for (int j = 0; j < CPT; ++j) {
#pragma unroll
    for (int k = 0; k < W; ++k) w[k][j] = LoadF(p.w.weight, p.w.weight_dtype, (c0 + j) * ws + k);
    bias[j] = p.w.bias != nullptr ? LoadF(p.w.bias, p.w.weight_dtype, c0 + j) : 0.0f;
  }
  const XT* __restrict__ x = static_cast<const XT*>(p.x) + c0;
  XT* __restrict__ out = static_cast<XT*>(p.out) + c0;
  const int64_t xs = p.x_row_stride, os = p.out_row_stride;

  // The window before token t, oldest first: win[0..W-2][channel].
  float win[W - 1][CPT];
  auto load_initial = [&](int64_t seq) {
    float hist[W];
#pragma unroll
    for (int j = 0; j < CPT; ++j) {
      LoadInitialWindow<W>(p.pool, p.initial_state_block, seq, c0 + j, hist);
#pragma unroll
      for (int i = 0; i < W - 1; ++i) win[i][j] = hist[i];
    }
  };
  int64_t seq = FindSeq(p.cu_seqlens, p.num_seqs, t0);
  int64_t seq_start = p.cu_seqlens[seq], seq_end = p.cu_seqlens[seq + 1];
  if (t0 - (W - 1) < seq_start) load_initial(seq);
#pragma unroll
  for (int i = 0; i < W - 1; ++i) {
    const int64_t u = t0 - (W - 1) + i;
    if (u >= seq_start) {
      VecIO<XT, CPT>::Load(x + u * xs, win[i]);
    } else {
      // History element i sits (seq_start - u) steps before the sequence: window slot
      // (W-1) - (seq_start - u) of the initial state, which load_initial put in win[...].
      // Rotate: slots are filled in increasing i, and the source slot is >= i, so in place.
      const int64_t src = (W - 1) - (seq_start - u);
#pragma unroll
      for (int j = 0; j < CPT; ++j) win[i][j] = win[src][j];
    }
  }
  auto step = [&](const float(&xt)[CPT], int64_t t) {
    float o[CPT];
#pragma unroll
    for (int j = 0; j < CPT; ++j) {
      float acc = bias[j];
#pragma unroll
      for (int k = 0; k < W - 1; ++k) acc = fmaf(w[k][j], win[k][j], acc);
      acc = fmaf(w[W - 1][j], xt[j], acc);
      o[j] = p.w.silu ? Silu(acc) : acc;
#pragma unroll
      for (int k = 0; k < W - 2; ++k) win[k][j] = win[k + 1][j];
      win[W - 2][j] = xt[j];
    }
    VecIO<XT, CPT>::Store(out + t * os, o);
  };
  for (int64_t t = t0; t < t1;) {
    if (t >= seq_end) {  // next non-empty sequence
      do {
        ++seq;
        seq_start = p.cu_seqlens[seq];
        seq_end = p.cu_seqlens[seq + 1];
      } while (t >= seq_end);
      load_initial(seq);
    }
    const int64_t stop = min(seq_end, t1);
    if (stop - t >= kBatch) {
      float xb[kBatch][CPT];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) VecIO<XT, CPT>::Load(x + (t + u) * xs, xb[u]);
#pragma unroll
      for (int u = 0; u < kBatch; ++u) step(xb[u], t + u);
      t += kBatch;
    } else {
      float xt[CPT];
      VecIO<XT, CPT>::Load(x + t * xs, xt);
      step(xt, t);
      ++t;
    }
  }
}

// Final windows: one thread per (sequence, channel). Runs after ConvPrefillKernel.
__global__ void __launch_bounds__(kThreads) ConvPrefillStateKernel(const CausalConv1dParams p) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t seq = blockIdx.y;
  if (c >= p.w.dim) return;
  const int64_t fb = p.final_state_block != nullptr ? p.final_state_block[seq] : 0;
  if (fb == 0) return;
  const ConvStatePool& s = p.pool;
  const int64_t ib = p.initial_state_block != nullptr ? p.initial_state_block[seq] : 0;
  const int64_t W = p.w.width, w1 = W - 1, R = s.state_len;
  const int64_t t0 = p.cu_seqlens[seq], L = p.cu_seqlens[seq + 1] - t0;
  if (s.align == ConvStateAlign::kTail) {
    // Last R of (old R rows ++ L inputs); increasing r reads old rows at r + L >= r first.
    for (int64_t r = 0; r < R; ++r) {
      const int64_t idx = r + L;
      float v;
      if (idx < R) {
        v = ib != 0 ? LoadF(s.conv_state, s.state_dtype, StateOffset(s, ib, idx, c)) : 0.0f;
      } else {
        v = LoadF(p.x, p.dtype, (t0 + idx - R) * p.x_row_stride + c);
      }
      StoreF(s.conv_state, s.state_dtype, StateOffset(s, fb, r, c), v);
    }
  } else {
    // Last W-1 of (window ++ L inputs) into rows [0, W-1): row r is stream index L + r of
    // (window ++ x); window row j = L + r < W-1 reads old row j >= r (safe in place).
    for (int64_t r = 0; r < w1; ++r) {
      const int64_t idx = L + r;
      float v;
      if (idx < w1) {
        v = ib != 0 ? LoadF(s.conv_state, s.state_dtype, StateOffset(s, ib, idx, c)) : 0.0f;
      } else {
        v = LoadF(p.x, p.dtype, (t0 + idx - w1) * p.x_row_stride + c);
      }
      StoreF(s.conv_state, s.state_dtype, StateOffset(s, fb, r, c), v);
    }
  }
}

template <int W>
__global__ void __launch_bounds__(kThreads) ConvUpdateKernel(const CausalConv1dUpdateParams p) {
  // Launched as a dependent of in_proj (RunCausalConv1dUpdateCuda); the state update after it
  // is one too. Weights are constants; the window may be read early (read_state_before_wait).
  AllowNextKernelLaunch();
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t seq = blockIdx.y;
  if (c >= p.w.dim) return;
  float w[W];
  const int64_t ws = p.w.weight_row_stride > 0 ? p.w.weight_row_stride : W;
#pragma unroll
  for (int k = 0; k < W; ++k) w[k] = LoadF(p.w.weight, p.w.weight_dtype, c * ws + k);
  const float bias = p.w.bias != nullptr ? LoadF(p.w.bias, p.w.weight_dtype, c) : 0.0f;
  if (!p.read_state_before_wait) WaitForPreviousKernels();
  const int64_t blk = p.state_block[seq];
  if (blk == 0) return;
  const ConvStatePool& s = p.pool;
  const int64_t R = s.state_len, Ts = p.tokens_per_seq;

  if (Ts == 1 && R == W - 1) {
    // Plain decode (both alignments coincide): the block is exactly the window, every index is
    // known at compile time (registers, no local memory), and the shifted window is written
    // from registers, so the kernel waits on memory once.
    float win[W];
#pragma unroll
    for (int i = 0; i < W - 1; ++i)
      win[i] = LoadF(s.conv_state, s.state_dtype, StateOffset(s, blk, i, c));
    WaitForPreviousKernels();  // x is in_proj's output
    win[W - 1] = LoadF(p.x, p.dtype, seq * p.x_seq_stride + c);
    float acc = bias;
#pragma unroll
    for (int k = 0; k < W; ++k) acc = fmaf(w[k], win[k], acc);
    if (p.w.silu) acc = Silu(acc);
    StoreF(p.out, p.dtype, seq * p.out_seq_stride + c, acc);
#pragma unroll
    for (int r = 0; r < W - 1; ++r)
      StoreF(s.conv_state, s.state_dtype, StateOffset(s, blk, r, c), win[r + 1]);
    return;
  }

  WaitForPreviousKernels();
  // buf = window (W-1) ++ tokens (Ts).
  float buf[W - 1 + kMaxTokensPerSeq];
  const int64_t r0 = WindowRow(s, W);
#pragma unroll
  for (int i = 0; i < W - 1; ++i)
    buf[i] = LoadF(s.conv_state, s.state_dtype, StateOffset(s, blk, r0 + i, c));
  for (int64_t j = 0; j < Ts; ++j) {
    buf[W - 1 + j] = LoadF(p.x, p.dtype, seq * p.x_seq_stride + j * p.x_token_stride + c);
  }
  for (int64_t j = 0; j < Ts; ++j) {
    float acc = bias;
#pragma unroll
    for (int k = 0; k < W; ++k) acc = fmaf(w[k], buf[j + k], acc);
    if (p.w.silu) acc = Silu(acc);
    StoreF(p.out, p.dtype, seq * p.out_seq_stride + j * p.out_token_stride + c, acc);
  }
  if (s.align == ConvStateAlign::kTail) {
    for (int64_t r = 0; r < R; ++r) {
      const int64_t idx = r + Ts;  // in (old R rows ++ tokens)
      const float v = idx < R ? LoadF(s.conv_state, s.state_dtype, StateOffset(s, blk, idx, c))
                              : buf[W - 1 + idx - R];
      StoreF(s.conv_state, s.state_dtype, StateOffset(s, blk, r, c), v);
    }
  } else {
    for (int64_t r = 0; r < W - 2 + Ts; ++r) {
      StoreF(s.conv_state, s.state_dtype, StateOffset(s, blk, r, c), buf[1 + r]);
    }
  }
}

template <typename XT, int CPT>
absl::Status LaunchPrefillVec(const CausalConv1dParams& p, int64_t max_tokens, cudaStream_t st) {
  const int64_t threads_needed = (p.w.dim + CPT - 1) / CPT;
  const dim3 grid(static_cast<unsigned>((threads_needed + kThreads - 1) / kThreads),
                  static_cast<unsigned>((max_tokens + kChunk - 1) / kChunk));
  switch (p.w.width) {
#define MS_CONV_CASE(WW)                                          \
  case WW:                                                        \
    ConvPrefillKernel<XT, WW, CPT><<<grid, kThreads, 0, st>>>(p); \
    break;
    MS_CONV_CASE(2)
    MS_CONV_CASE(3)
    MS_CONV_CASE(4)
    MS_CONV_CASE(5)
    MS_CONV_CASE(6)
    MS_CONV_CASE(7)
    MS_CONV_CASE(8)
#undef MS_CONV_CASE
    default:
      return absl::InvalidArgumentError("causal_conv1d: width out of range");
  }
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

// 16-byte vectors of channels when the layout allows, else one channel per thread.
template <typename XT>
absl::Status LaunchPrefill(const CausalConv1dParams& p, int64_t max_tokens, cudaStream_t st) {
  constexpr int kVec = 16 / sizeof(XT);
  const bool vec = p.w.dim % kVec == 0 && p.x_row_stride % kVec == 0 &&
                   p.out_row_stride % kVec == 0 && reinterpret_cast<uintptr_t>(p.x) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(p.out) % 16 == 0;
  return vec ? LaunchPrefillVec<XT, kVec>(p, max_tokens, st)
             : LaunchPrefillVec<XT, 1>(p, max_tokens, st);
}

}  // namespace

absl::Status RunCausalConv1dCuda(const CausalConv1dParams& p, const Stream& stream) {
  auto st = static_cast<cudaStream_t>(stream.handle());
  // cu_seqlens lives on the device; the grid covers all num_tokens rows (chunks past the last
  // sequence exit at once).
  const int64_t max_tokens = p.num_tokens;
  if (max_tokens > 0) {
    if (max_tokens / kChunk + 1 > 65535) {
      return absl::InvalidArgumentError("causal_conv1d: too many tokens for one launch");
    }
    switch (p.dtype) {
      case DType::kF32:
        RETURN_IF_ERROR(LaunchPrefill<float>(p, max_tokens, st));
        break;
      case DType::kBF16:
        RETURN_IF_ERROR(LaunchPrefill<__nv_bfloat16>(p, max_tokens, st));
        break;
      case DType::kF16:
        RETURN_IF_ERROR(LaunchPrefill<__half>(p, max_tokens, st));
        break;
    }
  }
  if (p.final_state_block != nullptr) {
    if (p.num_seqs > 65535) return absl::InvalidArgumentError("causal_conv1d: too many sequences");
    const dim3 grid(static_cast<unsigned>((p.w.dim + kThreads - 1) / kThreads),
                    static_cast<unsigned>(p.num_seqs));
    ConvPrefillStateKernel<<<grid, kThreads, 0, st>>>(p);
    CUDA_RETURN_IF_LAUNCH_ERROR();
  }
  return absl::OkStatus();
}

absl::Status RunCausalConv1dUpdateCuda(const CausalConv1dUpdateParams& p, const Stream& stream) {
  MS_CHECK_ARG(p.tokens_per_seq <= kMaxTokensPerSeq, "causal_conv1d_update: CUDA supports at most ",
               kMaxTokensPerSeq, " tokens per sequence, got ", p.tokens_per_seq);
  MS_CHECK_ARG(p.num_seqs <= 65535, "causal_conv1d_update: too many sequences");
  auto st = static_cast<cudaStream_t>(stream.handle());
  const dim3 grid(static_cast<unsigned>((p.w.dim + kThreads - 1) / kThreads),
                  static_cast<unsigned>(p.num_seqs));
  switch (p.w.width) {
#define MS_CONV_CASE(WW)                                                                         \
  case WW:                                                                                       \
    CUDA_RETURN_IF_ERROR(LaunchDependent(ConvUpdateKernel<WW>, grid, dim3(kThreads), 0, st, p)); \
    break;
    MS_CONV_CASE(2)
    MS_CONV_CASE(3)
    MS_CONV_CASE(4)
    MS_CONV_CASE(5)
    MS_CONV_CASE(6)
    MS_CONV_CASE(7)
    MS_CONV_CASE(8)
#undef MS_CONV_CASE
    default:
      return absl::InvalidArgumentError("causal_conv1d_update: width out of range");
  }
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

}  // namespace mambaserve
