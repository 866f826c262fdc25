// CUDA implementations of the SSD chunked scan (see ssd_chunk_scan.h).
//
// kTensorCore (bf16 inputs, N <= 128): one fused kernel, one CTA of 16 warps per (sequence, head,
// tile of 64 channels p). The CTA walks its sequence in sub-chunks of up to 64 tokens (cut at
// absolute multiples of min(Q, 64), so every chunk and block boundary of the public chunking is a
// sub-chunk boundary), carrying the (N, 64) state in fp32 registers across sub-chunks; the
// intermediate chunk states never leave the SM. Per sub-chunk (bf16 mma.sync m16n8k16, fp32
// accumulate):
//   CB = C B^T (causal tiles only), G = CB o exp(cum_i - cum_j) dt_j (j <= i)     -> smem, bf16
//   Y  = exp(cum_i) C h_in + G X + D x, optional * silu(z)                       -> y
//   h  = exp(cum_last) h + B^T (exp(cum_last - cum_j) dt_j x_j)                  -> registers
// The next sub-chunk's x, B, C tiles are prefetched (double buffer; TMA copies for full tiles of
// the common shape, cp.async otherwise) while the current one is computed. The chunk size Q only
// fixes where block-boundary states can sit; the result does not depend on it beyond rounding.
//
// kSequential (any dtype, any N): the plain recurrence, one warp per (sequence, head, channel p),
// lanes over the state index n, fp32. Slow; it is the accuracy reference on the GPU and the
// fallback for f32/f16 inputs and N > 128.
#include <cuda.h>          // CUtensorMap
#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/buffer.h"
#include "core/cuda_status.h"
#include "core/dependent_launch.cuh"
#include "core/status_macros.h"
#include "kernels/bulk_copy.cuh"
#include "kernels/cp_async.cuh"
#include "kernels/cuda_dtype.cuh"
#include "kernels/fast_exp.cuh"
#include "kernels/mamba_math.h"
#include "kernels/ssd_chunk_scan.h"

namespace mambaserve {
namespace {

using bf16_t = __nv_bfloat16;
using bf162_t = __nv_bfloat162;

__device__ __forceinline__ float DtOf(const SsdChunkScanParams& p, int64_t t, int hd) {
  float d = LoadF(p.dt, p.dt_dtype, t * p.dt_token_stride + hd);
  if (p.dt_bias) d += p.dt_bias[hd];
  if (p.dt_softplus) d = Softplus(d);
  return ClampDt(d, p.dt_min, p.dt_max);
}

struct SeqInfo {
  int64_t t0, len, off;
  int32_t init_block, final_block;
  int64_t bnd_begin, bnd_slots;
};

__device__ __forceinline__ SeqInfo GetSeq(const SsdChunkScanParams& p, int s) {
  SeqInfo q;
  q.t0 = p.cu_seqlens[s];
  q.len = p.cu_seqlens[s + 1] - q.t0;
  q.off = p.prefix_offset ? p.prefix_offset[s] : 0;
  q.init_block = p.initial_state_block ? p.initial_state_block[s] : 0;
  q.final_block = p.final_state_block ? p.final_state_block[s] : 0;
  q.bnd_begin = 0;
  q.bnd_slots = 0;
  if (p.block_size > 0) {
    q.bnd_begin = p.boundary_state_offsets[s];
    q.bnd_slots = p.boundary_state_offsets[s + 1] - q.bnd_begin;
  }
  return q;
}

// The block that receives the state at absolute position abs_end (the state after token
// abs_end - 1), or 0.
__device__ __forceinline__ int32_t BoundaryBlock(const SsdChunkScanParams& p, const SeqInfo& q,
                                                 int64_t abs_end) {
  if (p.block_size <= 0 || abs_end % p.block_size != 0) return 0;
  const int64_t i = abs_end / p.block_size - (q.off / p.block_size + 1);
  if (i < 0 || i >= q.bnd_slots) return 0;
  return p.boundary_state_blocks[q.bnd_begin + i];
}

// 32-bit: head indices are checked at launch to fit (num_heads <= 65535, first_head), and a
// 64-bit division is a called subroutine.
__device__ __forceinline__ int64_t GroupOf(const SsdChunkScanParams& p, int hd) {
  const int hpg =
      static_cast<int>(p.heads_per_group > 0 ? p.heads_per_group : p.num_heads / p.num_groups);
  return (static_cast<int>(p.first_head) + hd) / hpg - static_cast<int>(p.first_group);
}

// ------------------------------------------------------------------------------------------
// Sequential recurrence: grid (num_seqs, H, ceil(P/4)), 4 warps, warp = one channel p.
// ------------------------------------------------------------------------------------------
constexpr int kSeqWarps = 4;

__global__ void SsdSequentialKernel(SsdChunkScanParams p) {
  extern __shared__ float seq_smem[];
  const int s = blockIdx.x, hd = blockIdx.y;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t pc = static_cast<int64_t>(blockIdx.z) * kSeqWarps + warp;
  if (pc >= p.head_dim) return;  // no block-wide syncs below
  const int64_t N = p.d_state, P = p.head_dim;
  float* h = seq_smem + warp * N;
  const SeqInfo q = GetSeq(p, s);
  const int64_t g = GroupOf(p, hd);
  const int64_t hstride = p.state_head_stride > 0 ? p.state_head_stride : P * N;
  const int64_t sbase = hd * hstride + pc * N;
  for (int64_t n = lane; n < N; n += 32) {
    h[n] = q.init_block == 0
               ? 0.0f
               : LoadF(p.state, p.state_dtype, q.init_block * p.state_block_stride + sbase + n);
  }
  const float A = p.A[hd];
  const float Dv = p.D ? (p.D_per_channel ? p.D[hd * P + pc] : p.D[hd]) : 0.0f;
  for (int64_t i = 0; i < q.len; ++i) {
    const int64_t t = q.t0 + i;
    const float dt = DtOf(p, t, hd);
    const float dA = expf(dt * A);
    const float xv = LoadF(p.x, p.dtype, t * p.x_token_stride + hd * p.x_head_stride + pc);
    const float dtx = dt * xv;
    const int64_t boff = t * p.B_token_stride + g * p.B_group_stride;
    const int64_t coff = t * p.C_token_stride + g * p.C_group_stride;
    float acc = 0.0f;
    for (int64_t n = lane; n < N; n += 32) {
      const float hv = dA * h[n] + dtx * LoadF(p.B, p.dtype, boff + n);
      h[n] = hv;
      acc += LoadF(p.C, p.dtype, coff + n) * hv;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) {
      float v = acc + Dv * xv;
      if (p.z) v *= Silu(LoadF(p.z, p.dtype, t * p.z_token_stride + hd * p.z_head_stride + pc));
      StoreF(p.y, p.dtype, t * p.y_token_stride + hd * p.y_head_stride + pc, v);
    }
    const int32_t b = BoundaryBlock(p, q, q.off + i + 1);
    if (b != 0) {
      for (int64_t n = lane; n < N; n += 32) {
        StoreF(p.state, p.state_dtype, b * p.state_block_stride + sbase + n, h[n]);
      }
    }
  }
  if (q.final_block != 0) {
    for (int64_t n = lane; n < N; n += 32) {
      StoreF(p.state, p.state_dtype, q.final_block * p.state_block_stride + sbase + n, h[n]);
    }
  }
}

// ------------------------------------------------------------------------------------------
// Tensor-core fused kernel.
// ------------------------------------------------------------------------------------------
namespace tc {

constexpr int kT = 64;         // tokens per sub-chunk (padded)
constexpr int kN = 128;        // padded d_state
constexpr int kP = 64;         // channels per CTA
constexpr int kThreads = 512;  // 16 warps
// The warp that prepares the next sub-chunk's dt, cum and weights, right after the sub-chunk's
// first barrier: warp 3 (row block 0, column quarter 3) has no C B^T tile and no G to compute
// before the second barrier, so its dt scan fills that slack instead of delaying the last
// barrier (warp 0 did it there before).
constexpr int kDtWarp = 3;
constexpr int kPitchX = kP + 8;  // bf16 elements per smem row (16 B pad: conflict-free ldmatrix)
constexpr int kPitchBC = kN + 8;
constexpr int kPitchG = kT + 8;
constexpr int kPitchH = kP + 8;
// The warp whose lane 0 issues a full stage's tensor copies (row block 0, column quarter 1: no
// C B^T tile).
constexpr int kLoadWarp = 1;
// A stage's x, B and C boxes: kT rows of a whole smem pitch each (the pad columns take the
// next head's or group's first channels, or zeros past the map's end; nothing reads them).
constexpr uint32_t kStageBytes = kT * (kPitchX + 2 * kPitchBC) * sizeof(bf16_t);

// One sub-chunk's tiles and decays. The kernel double-buffers whole stages, so a thread's
// shared-memory addresses into the current stage are its stage-0 addresses plus one offset.
struct __align__(128) Stage {  // 128: tensor-copy destinations (x, b, c)
  bf16_t x[kT * kPitchX];
  bf16_t b[kT * kPitchBC];
  bf16_t c[kT * kPitchBC];
  // log2 units (dt*A*log2 e); warp kDtWarp prepares the next stage's.
  float cum[kT];
  float dt[kT];
  float w[kT];     // exp(cum_last - cum_j) * dt_j: weight of token j in the chunk state
  float ecum[kT];  // exp(cum_j): decay of the incoming state at token j
};

struct __align__(128) Smem {
  Stage st[2];
  bf16_t xw[kT * kPitchX];
  bf16_t g[kT * kPitchG];
  bf16_t h[kN * kPitchH];
  bf16_t ys[kT * kPitchX];  // y tile staged for 16-byte stores (y_mode 2)
  float d[kP];              // D of the CTA's channels (read by the epilogue; saves 4 registers)
  uint64_t full[2];         // mbarriers: stage st[i]'s tensor-copied tiles have landed
  int live_end;  // segments >= 1: 1 + the last position whose exp(cum) is not 0 (dt warp lane 0)
};
static_assert(offsetof(Stage, b) % 128 == 0 && offsetof(Stage, c) % 128 == 0 &&
                  sizeof(Stage) % 128 == 0,
              "tensor copies land on 128-byte boundaries");

// Tensor maps of x, B and C (2D: tokens x elements of a token's row) for the full tiles'
// copies; set only when SegArgs::tma.
struct TileMaps {
  CUtensorMap x, b, c;
};

__device__ __forceinline__ void Ldsm4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void Ldsm4(uint32_t (&r)[4], const void* ptr) {
  Ldsm4(r, SharedAddress(ptr));
}

__device__ __forceinline__ void Ldsm4T(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void Mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  bf162_t v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Token strides below this keep a tile's row offsets in 32 bits (LoadTile's 16-byte path).
constexpr int64_t kVecStrideLimit = (int64_t{1} << 31) / 256;

// Loads a (kRows x cols) tile: rows r < rows_valid from src + r * row_stride, cols < cols_valid,
// zero elsewhere, by the kBlockThreads threads numbered tid (a CTA's, or one warp's lanes).
// vec: 16-byte cp.async (cols_valid % 8 == 0, aligned rows).
template <int kCols, int kPitch, int kBlockThreads = kThreads, int kRows = kT>
__device__ __forceinline__ void LoadTile(bf16_t* dst, const bf16_t* src, int64_t row_stride,
                                         int rows_valid, int cols_valid, bool vec, int tid) {
  if (vec) {
    constexpr int kChunksPerRow = kCols / 8;
    constexpr int kChunks = kRows * kChunksPerRow;
    if constexpr (kChunks % kBlockThreads == 0 && kBlockThreads % kChunksPerRow == 0) {
      // Each thread (tid < kBlockThreads) copies a fixed column of rows kRowStep apart: its row
      // pointer is computed once and stepped, where the general loop below paid a 64-bit row
      // product, a runtime trip count and spilled offsets for every chunk.
      constexpr int kRowStep = kBlockThreads / kChunksPerRow;
      // 32-bit offsets: vec callers guarantee kRows * row_stride < 2^31 (kVecStrideLimit).
      // Unsigned: tid >= 0, and a signed division by a power of two costs a sign fix-up.
      const int r0 = static_cast<int>(static_cast<unsigned>(tid) / kChunksPerRow);
      const int c = static_cast<int>(static_cast<unsigned>(tid) % kChunksPerRow) * 8;
      const int rs = static_cast<int>(row_stride);
      const bool col_ok = c < cols_valid;
      bf16_t* d = dst + r0 * kPitch + c;
      if (rows_valid >= kRows) {
        // A full tile (every sub-chunk but a segment's last, and its first when unaligned): no
        // row checks, and the source steps by whole rows from one pointer, where the general
        // form below pays a 64-bit select and add per chunk.
        const bf16_t* s = col_ok ? src + (r0 * rs + c) : src;
#pragma unroll
        for (int k = 0; k < kChunks / kBlockThreads; ++k) {
          CpAsync16(d + k * kRowStep * kPitch, s, col_ok);
          s += kRowStep * rs;
        }
        return;
      }
      const bf16_t* s = src + (r0 * rs + c);
#pragma unroll
      for (int k = 0; k < kChunks / kBlockThreads; ++k) {
        const bool v = col_ok && r0 + k * kRowStep < rows_valid;
        CpAsync16(d + k * kRowStep * kPitch, v ? s + k * kRowStep * rs : src, v);
      }
    } else {
#pragma unroll
      for (int idx = tid; idx < kChunks; idx += kBlockThreads) {
        const int r = idx / kChunksPerRow, c = (idx % kChunksPerRow) * 8;
        const bool v = r < rows_valid && c < cols_valid;
        CpAsync16(dst + r * kPitch + c, v ? src + r * row_stride + c : src, v);
      }
    }
  } else {
    for (int idx = tid; idx < kRows * kCols; idx += kBlockThreads) {
      const int r = idx / kCols, c = idx % kCols;
      dst[r * kPitch + c] =
          (r < rows_valid && c < cols_valid) ? src[r * row_stride + c] : __float2bfloat16_rn(0.0f);
    }
  }
}

// Sequence segments (more CTAs when sequences x heads are too few to fill the GPU): with
// num_segs > 1 each sequence is cut into num_segs segments at sub-chunk boundaries, and every
// segment runs once, in parallel: segment 0 from the sequence's initial state, the others from
// a zero state. Their y and boundary states then lack the incoming state's term
// C_t exp(cum_t) S_in (cum_t: dt*A summed from the segment's first token through t). The main
// kernel writes each segment's end state E_k, its total log decay and exp(cum_t) of its tokens
// to the workspace; SsdCombineKernel turns E into every segment's incoming state S_in, adds
// its term to the segment's boundary states and writes the final state; SsdCorrectKernel adds
// the missing term to y (one (tokens x N) x (N x P) mma per head and segment, plus a read and
// write of y), up to the segment's last token whose exp(cum_t) has not underflowed to zero (past
// it the term is exactly zero). Nothing is computed twice. num_segs == 1: the main kernel only, no
// workspace.
struct SegArgs {
  int num_segs = 1;
  float* ws = nullptr;         // (num_seqs, num_segs, H, P, N) fp32: E_k
  bf16_t* sin = nullptr;       // (num_seqs, num_segs, H, P, N): S_in of segments >= 1, the
                               // correction's mma operand
  float* ws_logdec = nullptr;  // (num_seqs, num_segs, H) sum of dt*A over each segment
  float* decay = nullptr;      // (H, num_tokens) exp(cum_t) for tokens of segments >= 1
  // (num_seqs, num_segs, H) for segments >= 1: positions from live_end on have exp(cum_t) == 0
  // (fp32 underflow; heads that decay fast reach it a few hundred tokens into a segment), so
  // their correction term is exactly zero and the correction skips them.
  int* live_end = nullptr;
  int cut_len = kT;  // sub-chunk grid of the segment starts (SegBegin)
  bool tma = false;  // TileMaps are set: full tiles arrive as tensor copies
};

// Index of (sequence s, segment seg, head hd) in the segments' per-head workspace arrays.
__device__ __forceinline__ int64_t SegSlot(const SsdChunkScanParams& p, const SegArgs& sa, int s,
                                           int seg, int hd) {
  return (static_cast<int64_t>(s) * sa.num_segs + seg) * p.num_heads + hd;
}

// Segment k of a sequence of length len: local positions [SegBegin(k), SegBegin(k+1)).
// len and off come from int32 arrays; cut_len is a power of two (chunk_size is validated as one).
__device__ __forceinline__ int64_t SegBegin(int64_t len, int64_t off, int num_segs, int k,
                                            int cut_len) {
  if (k <= 0) return 0;
  if (k >= num_segs) return len;
  const int seg = static_cast<int>(
      ((static_cast<unsigned>(len) + num_segs - 1) / static_cast<unsigned>(num_segs) + 63) & ~63u);
  int64_t a = off + static_cast<int64_t>(k) * seg;             // absolute position
  a = (a + cut_len - 1) & ~static_cast<int64_t>(cut_len - 1);  // on the sub-chunk grid
  const int64_t pos = a - off;
  return pos < len ? pos : len;
}

// kFast: the common case (16-byte loads, y_mode 2, token strides under kVecStrideLimit)
// compiled without the other paths, which frees registers in the loop.
template <bool kFast>
__global__ void __launch_bounds__(kThreads, 1)
    SsdTensorCoreKernel(SsdChunkScanParams p, bool vec_in_arg, int y_mode_arg, int skip, SegArgs sa,
                        const __grid_constant__ TileMaps maps) {
  // y_mode: 0 scalar stores, 1 4-byte stores, 2 staged in smem and stored 16 bytes per thread.
  const bool vec_in = kFast || vec_in_arg;
  const int y_mode = kFast ? 2 : y_mode_arg;
  // Launched as a dependent (core/dependent_launch.h): the combine and correction after it
  // launch while its last wave runs and wait there, so their launches leave the critical path.
  WaitForPreviousKernels();
  AllowNextKernelLaunch();
  extern __shared__ __align__(16) uint8_t tc_smem_raw[];
  Smem& sm = *reinterpret_cast<Smem*>(tc_smem_raw);
  const int s = blockIdx.x / sa.num_segs, seg = blockIdx.x % sa.num_segs;
  const int hd = blockIdx.y;
  const int64_t p0 = static_cast<int64_t>(blockIdx.z) * kP;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int gq = lane >> 2, t4 = lane & 3;
  const int64_t N = p.d_state, P = p.head_dim;
  const int cols_p = static_cast<int>(P - p0 < kP ? P - p0 : kP);
  const int cols_n = static_cast<int>(N);
  const SeqInfo q = GetSeq(p, s);
  const int cut_len = sa.cut_len;
  // Sequence-local positions and token indices fit 32 bits (cu_seqlens is int32).
  const int pos_begin = static_cast<int>(SegBegin(q.len, q.off, sa.num_segs, seg, cut_len));
  const int pos_end = static_cast<int>(SegBegin(q.len, q.off, sa.num_segs, seg + 1, cut_len));
  const int t0 = static_cast<int>(q.t0);
  // Element offset of token t's row: one 32 x 32 -> 64-bit multiply when kFast guarantees the
  // stride fits 32 bits (kVecStrideLimit), where the general form multiplies 64-bit values.
  auto row_off = [](int t, int64_t stride) -> int64_t {
    // Unsigned (t and the stride are >= 0): one IMAD.WIDE.U32, where the signed product
    // needs two more multiplies for the sign.
    if constexpr (kFast) {
      return static_cast<int64_t>(static_cast<uint64_t>(static_cast<uint32_t>(t)) *
                                  static_cast<uint32_t>(stride));
    }
    return t * stride;
  };
  const int64_t g = GroupOf(p, hd);
  // The CTA's cumulative decays are kept in log2 units (dt * A * log2 e), so that every decay
  // factor is one ex2 (FastExp2) rather than __expf's multiply and denormal check.
  const float A2 = p.A[hd] * kLog2e;
  const int64_t hstride = p.state_head_stride > 0 ? p.state_head_stride : P * N;
  const int64_t sbase = hd * hstride + p0 * N;  // + pp * N + n

  const bf16_t* xg = static_cast<const bf16_t*>(p.x) + hd * p.x_head_stride + p0;
  const bf16_t* bg = static_cast<const bf16_t*>(p.B) + g * p.B_group_stride;
  const bf16_t* cg = static_cast<const bf16_t*>(p.C) + g * p.C_group_stride;

  // cut_len is a power of two.
  auto sub_len = [&](int pos) -> int {
    // Low bits only (unsigned: the absolute position may pass 2^31).
    const int l = cut_len - static_cast<int>((static_cast<unsigned>(q.off) + pos) & (cut_len - 1));
    return pos_end - pos < l ? pos_end - pos : l;
  };
  // The same for a position on the sub-chunk grid (every sub-chunk start after the first):
  // no alignment term. <= 0 at or past pos_end.
  auto grid_len = [&](int pos) -> int { return min(cut_len, pos_end - pos); };
  // Full tiles of the common shape (64 channels, N = 128) arrive as three tensor copies (x, B,
  // C boxes of kT rows) that one thread issues and the stage's mbarrier counts, where every
  // thread's cp.async took ~60 instructions a warp a sub-chunk. Partial tiles (whose missing
  // rows must be zeros) and other shapes keep LoadTile. bulk_bits: the stages with tensor copies
  // in flight; parity_bits: the phase each stage's mbarrier waits for next.
  const bool bulk = kFast && sa.tma && cols_p == kP && cols_n == kN;
  uint32_t bulk_bits = 0, parity_bits = 0;
  if (bulk) {
    if (tid == 0) {
      MbarrierInit(SharedAddress(&sm.full[0]), 1);
      MbarrierInit(SharedAddress(&sm.full[1]), 1);
      FenceMbarrierInit();
    }
    __syncthreads();
  }
  const int x_col = static_cast<int>(hd * p.x_head_stride + p0);
  const int b_col = static_cast<int>(g * p.B_group_stride);
  const int c_col = static_cast<int>(g * p.C_group_stride);
  auto load = [&](int buf, int pos, int len_c) {
    const int t = t0 + pos;
    if (bulk && len_c == kT) {
      bulk_bits |= 1u << buf;
      if (tid == 32 * kLoadWarp) {
        const uint32_t bar = SharedAddress(&sm.full[buf]);
        MbarrierArriveExpectTx(bar, kStageBytes);
        TmaLoad2d(SharedAddress(sm.st[buf].x), &maps.x, x_col, t, bar);
        TmaLoad2d(SharedAddress(sm.st[buf].b), &maps.b, b_col, t, bar);
        TmaLoad2d(SharedAddress(sm.st[buf].c), &maps.c, c_col, t, bar);
      }
      return;
    }
    LoadTile<kP, kPitchX>(sm.st[buf].x, xg + row_off(t, p.x_token_stride), p.x_token_stride, len_c,
                          cols_p, vec_in, tid);
    LoadTile<kN, kPitchBC>(sm.st[buf].b, bg + row_off(t, p.B_token_stride), p.B_token_stride, len_c,
                           cols_n, vec_in, tid);
    LoadTile<kN, kPitchBC>(sm.st[buf].c, cg + row_off(t, p.C_token_stride), p.C_token_stride, len_c,
                           cols_n, vec_in, tid);
  };
  // The first sub-chunk's tiles go out before the rest of the prologue, which then hides part of
  // their latency (at 8 sub-chunks a CTA the first wait was a visible share of the stalls).
  int len_c = 0;  // the current sub-chunk's length, carried from one iteration to the next
  if (pos_begin < pos_end) {
    len_c = sub_len(pos_begin);
    load(0, pos_begin, len_c);
  }
  CpAsyncCommit();

  // Warp roles. Outputs (64 tokens x 64 channels) and C B^T (64 x 64): row block rb = warp >> 2
  // (rows 16*rb..), column quarter cq = warp & 3 (columns 16*cq..). State (128 x 64): row
  // block nb = warp & 7 (n = 16*nb..), column half ph = warp >> 3 (p = 32*ph..). A scheduler
  // runs the warps of one warp % 4 = cq, so each holds all four row blocks and the causal G X
  // (rb + 1 k-steps) is the same work on every scheduler, where rb = warp & 3 gave one
  // scheduler 16 steps and another 4.
  const int rb = warp >> 2, cq = warp & 3;
  const int nb = warp & 7, ph = warp >> 3;

  // The thread's ldmatrix addresses (shared-memory bytes) in stage 0 at k-step 0. The loops add
  // the stage's offset and a constant a k-step, so no address is rebuilt from lane bits inside
  // the loop: at the 128-register cap the compiler recomputed them, ~90 instructions a warp a
  // sub-chunk. x shares h's lane offsets (same pitch), at a constant distance.
  static_assert(kPitchH == kPitchX, "x tiles are addressed from h's offsets");
  constexpr uint32_t kHToX = static_cast<uint32_t>(offsetof(Smem, st) + offsetof(Stage, x)) -
                             static_cast<uint32_t>(offsetof(Smem, h));
  struct {
    uint32_t c, b, h, g, bt, xw;
  } lds;
  {
    const int row16 = lane & 15, col8 = (lane >> 4) * 8;   // row-major operand, x4
    const int row_t = (lane & 7) + ((lane >> 3) & 1) * 8;  // transposed operand
    const int row_b = (lane & 7) + ((lane >> 4) << 3), col_b = ((lane >> 3) & 1) * 8;
    lds.c = SharedAddress(&sm.st[0].c[(16 * rb + row16) * kPitchBC + col8]);
    lds.b = SharedAddress(&sm.st[0].b[(16 * cq + row_b) * kPitchBC + col_b]);
    lds.h = SharedAddress(&sm.h[row_t * kPitchH + 16 * cq + col8]);
    lds.g = SharedAddress(&sm.g[(16 * rb + row16) * kPitchG + col8]);
    lds.bt = SharedAddress(&sm.st[0].b[row_b * kPitchBC + 16 * nb + col_b]);
    lds.xw = SharedAddress(&sm.xw[row_t * kPitchX + 32 * ph + col8]);
  }

  // hacc[j][e]: n = 16*nb + gq + 8*(e>>1), pp = 32*ph + 8*j + 2*t4 + (e&1).
  float hacc[4][4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int n = 16 * nb + gq + 8 * (e >> 1), pp = 32 * ph + 8 * j + 2 * t4 + (e & 1);
      float v = 0.0f;
      // Segments >= 1 start from zero (SsdCorrectKernel adds their incoming state's term).
      if (n < cols_n && pp < cols_p && q.init_block != 0 && seg == 0) {
        v = LoadF(p.state, p.state_dtype, q.init_block * p.state_block_stride + sbase + pp * N + n);
      }
      hacc[j][e] = v;
    }
  }
  auto write_sh = [&]() {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int e2 = 0; e2 < 2; ++e2) {
        const int n = 16 * nb + gq + 8 * e2, pp = 32 * ph + 8 * j + 2 * t4;
        *reinterpret_cast<uint32_t*>(&sm.h[n * kPitchH + pp]) =
            PackBf16(hacc[j][2 * e2], hacc[j][2 * e2 + 1]);
      }
    }
  };
  auto store_state = [&](int32_t block) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int n = 16 * nb + gq + 8 * (e >> 1), pp = 32 * ph + 8 * j + 2 * t4 + (e & 1);
        if (n < cols_n && pp < cols_p) {
          StoreF(p.state, p.state_dtype, block * p.state_block_stride + sbase + pp * N + n,
                 hacc[j][e]);
        }
      }
    }
  };
  write_sh();

  // D of the CTA's channels, visible to the epilogue after the first S1.
  if (tid < kP) {
    sm.d[tid] = p.D == nullptr    ? 0.0f
                : p.D_per_channel ? (tid < cols_p ? p.D[hd * P + p0 + tid] : 0.0f)
                                  : p.D[hd];
  }
  // dt of a sub-chunk: warp kDtWarp loads the raw values one sub-chunk ahead (registers) and turns
  // them into dt and the inclusive cumulative sum of dt*A (log2 units) in sm.st[buf].dt/cum one
  // sub-chunk ahead, so neither the load latency nor the scan sits on the critical path. The
  // loads keep the raw bits (LoadBits): with LoadF the conversion waited for each load as soon
  // as it was issued, and that wait - two global loads in a row each sub-chunk, on the warp
  // that every other warp then waits for at S2 - was the kernel's largest stall.
  uint32_t dt_bits[2] = {0, 0};
  const float dt_bias = p.dt_bias ? p.dt_bias[hd] : 0.0f;
  auto load_dt = [&](int pos, int len_c) {
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      const int j = lane + 32 * hf;
      dt_bits[hf] =
          j < len_c ? LoadBits(p.dt, p.dt_dtype, (q.t0 + pos + j) * p.dt_token_stride + hd) : 0u;
    }
  };
  // base: dt*A summed over this segment's earlier sub-chunks (for the segment decay output).
  float* decay_out = sa.decay != nullptr && seg > 0 ? sa.decay + hd * p.num_tokens + q.t0 : nullptr;
  auto scan_dt = [&](int buf, int pos, int len_c, float base) {
    float carry = 0.0f, cumv[2], dv[2];
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      const int j = lane + 32 * hf;
      float d = 0.0f;
      if (j < len_c) {
        d = BitsToF(dt_bits[hf], p.dt_dtype) + dt_bias;
        if (p.dt_softplus) d = DevSoftplus(d);  // one SFU operation (fast_exp.cuh)
        d = ClampDt(d, p.dt_min, p.dt_max);
      }
      float a = d * A2;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const float v = __shfl_up_sync(0xffffffffu, a, o);
        if (lane >= o) a += v;
      }
      sm.st[buf].dt[j] = d;
      sm.st[buf].cum[j] = a + carry;
      cumv[hf] = a + carry;
      dv[hf] = d;
      carry += __shfl_sync(0xffffffffu, a, 31);
    }
    // carry is now the sub-chunk total (padded tokens add 0).
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      const int j = lane + 32 * hf;
      sm.st[buf].w[j] = FastExp2(carry - cumv[hf]) * dv[hf];
      sm.st[buf].ecum[j] = FastExp2(cumv[hf]);
    }
    if (decay_out != nullptr) {
      bool nonzero[2];
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        const int j = lane + 32 * hf;
        const float e = FastExp2(base + cumv[hf]);
        if (j < len_c) decay_out[pos + j] = e;
        nonzero[hf] = j < len_c && e != 0.0f;
      }
      const unsigned live0 = __ballot_sync(0xffffffffu, nonzero[0]);
      const unsigned live1 = __ballot_sync(0xffffffffu, nonzero[1]);
      if (lane == 0 && (live0 | live1) != 0) {
        sm.live_end = pos + (live1 != 0 ? 64 - __clz(live1) : 32 - __clz(live0));
      }
    }
  };

  // The next block boundary after pos_begin, as a sequence-local end position: the walk compares
  // each sub-chunk end with it and divides only when it passes one, where BoundaryBlock at every
  // sub-chunk end took a 64-bit modulo (a called subroutine) per thread.
  int64_t bnd_end = INT64_MAX;
  if (p.block_size > 0) bnd_end = ((q.off + pos_begin) / p.block_size + 1) * p.block_size - q.off;
  int buf = 0;
  float seg_logdec = 0.0f;  // sum of dt*A over this CTA's positions (log2 units)
  if (tid == 32 * kDtWarp) sm.live_end = pos_begin;  // the dt warp's lane 0 moves it on
  if (pos_begin < pos_end && warp == kDtWarp) {
    load_dt(pos_begin, len_c);
    scan_dt(0, pos_begin, len_c, 0.0f);
    if (pos_begin + len_c < pos_end) load_dt(pos_begin + len_c, grid_len(pos_begin + len_c));
  }
  // y_mode 2: the y tile of the previous sub-chunk, staged in sm.ys, goes out with one 16-byte
  // store per thread (64 rows x 8 chunks of 8 channels = 512 chunks) after the next S1.
  int y_pos = -1;
  int y_len = 0;
  auto flush_y = [&]() {
    if (y_mode != 2 || y_pos < 0 || (skip & 16)) return;
    const int r = tid >> 3, c8 = (tid & 7) * 8;
    if (r < y_len && c8 < cols_p) {
      bf16_t* dst = static_cast<bf16_t*>(p.y) + row_off(t0 + y_pos + r, p.y_token_stride) +
                    hd * p.y_head_stride + p0 + c8;
      *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(&sm.ys[r * kPitchX + c8]);
    }
  };
  for (int pos = pos_begin; pos < pos_end;) {
    const int next = pos + len_c;
    const int len_next = grid_len(next);  // used only when next < pos_end
    CpAsyncWait<0>();
    if ((bulk_bits >> buf) & 1u) {
      MbarrierWait(SharedAddress(&sm.full[buf]), (parity_bits >> buf) & 1u);
      parity_bits ^= 1u << buf;
      bulk_bits &= ~(1u << buf);
    }
    // S1: this sub-chunk's tiles, dt and cum are visible, and every warp is done with the
    // previous sub-chunk - its tiles (the buffer the next loads overwrite), sm.g, sm.xw, the
    // reads and writes of sm.h, and the y tile staged in sm.ys. It is the sub-chunk's only
    // barrier besides S2: the loads and the y flush that sat before a third one now follow it.
    __syncthreads();
    if (next < pos_end && !(skip & 32)) load(buf ^ 1, next, len_next);
    CpAsyncCommit();
    flush_y();  // previous sub-chunk's y
    y_pos = pos;
    y_len = len_c;

    const Stage& cur = sm.st[buf];
    const uint32_t stage_off = buf * static_cast<uint32_t>(sizeof(Stage));
    const bf16_t* sX = cur.x;
    const float* cum = cur.cum;
    const float* dtv = cur.dt;
    const float cum_last = cum[kT - 1];  // padded tokens add 0
    seg_logdec += cum_last;
    // dt and cum of the next sub-chunk into the other buffer (last read before S1), then the raw
    // dt of the one after.
    if (warp == kDtWarp && next < pos_end) {
      scan_dt(buf ^ 1, next, len_next, seg_logdec);
      const int after = next + len_next;
      if (after < pos_end) load_dt(after, grid_len(after));
    }
    // Weighted inputs for the state update: xw[j] = x[j] * exp(cum_last - cum_j) * dt_j, by the
    // five warps with no C B^T tile (cq > rb) and no dt scan, which would otherwise wait at S2
    // for the C B^T warps.
    if (cq > rb && warp != kDtWarp) {
      // (rb, cq) = (0,1) (0,2) (1,2) (1,3) (2,3) -> 0..4; (0,3) is kDtWarp.
      static_assert(kDtWarp == 4 * 0 + 3, "the xw ranks assume kDtWarp is (rb 0, cq 3)");
      const int rank = cq * (cq - 1) / 2 + rb - (cq == 3 ? 1 : 0);
      static_assert(kP == 64, "a lane takes one channel pair of every row");
      const int c = 2 * lane;
#pragma unroll 2
      for (int r = rank; r < kT; r += 5) {
        const float w = cur.w[r];
        const bf162_t v = *reinterpret_cast<const bf162_t*>(&sX[r * kPitchX + c]);
        *reinterpret_cast<uint32_t*>(&sm.xw[r * kPitchX + c]) =
            PackBf16(__low2float(v) * w, __high2float(v) * w);
      }
    }
    // C B^T (tile rb, cq; only cq <= rb is causal) and C h_in (rows rb, channels cq), sharing
    // the C fragments. Fragments of step kk+1 are loaded before the mma of step kk.
    const bool do_cb = cq <= rb;
    float cb[2][4], ya[2][4];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) cb[j][e] = ya[j][e] = 0.0f;
    }
    // The loop is compiled once with C B^T and once without (kCb), so the B fragments' loads
    // are not predicated one by one: predicated, each rebuilt its address from lane bits.
    auto cb_ch_loop = [&](auto cb_tag) {
      constexpr bool kCb = decltype(cb_tag)::value;
      uint32_t fa[2][4], fb[2][4], fh[2][4];
      auto load1 = [&](int kk, int sl) {
        Ldsm4(fa[sl], lds.c + stage_off + 32 * kk);
        if constexpr (kCb) Ldsm4(fb[sl], lds.b + stage_off + 32 * kk);
        Ldsm4T(fh[sl], lds.h + 32 * kk * kPitchH);
      };
      load1(0, 0);
#pragma unroll
      for (int kk = 0; kk < kN / 16; ++kk) {
        const int sl = kk & 1;
        if (kk + 1 < kN / 16) load1(kk + 1, sl ^ 1);
        if constexpr (kCb) {
          Mma(cb[0], fa[sl], fb[sl][0], fb[sl][1]);
          Mma(cb[1], fa[sl], fb[sl][2], fb[sl][3]);
        }
        Mma(ya[0], fa[sl], fh[sl][0], fh[sl][1]);
        Mma(ya[1], fa[sl], fh[sl][2], fh[sl][3]);
      }
    };
    if (!(skip & 2)) {
      if (do_cb) {
        cb_ch_loop(std::true_type{});
      } else {
        cb_ch_loop(std::false_type{});
      }
    }
    {
      const int i0 = 16 * rb + gq, i1 = i0 + 8;
      const float ci0 = cum[i0], ci1 = cum[i1];
      const float s0 = cur.ecum[i0], s1 = cur.ecum[i1];
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        ya[j][0] *= s0;
        ya[j][1] *= s0;
        ya[j][2] *= s1;
        ya[j][3] *= s1;
        if (do_cb) {
          const int c0 = 16 * cq + 8 * j + 2 * t4, c1 = c0 + 1;
          const float w0 = dtv[c0], w1 = dtv[c1];
          const float cc0 = cum[c0], cc1 = cum[c1];
          // Branch-free: the exponent is clamped to <= 0 (it is, on and below the diagonal;
          // above it the value is discarded), so every lane takes the same path.
          const float g00 = c0 <= i0 ? cb[j][0] * FastExp2(fminf(ci0 - cc0, 0.0f)) * w0 : 0.0f;
          const float g01 = c1 <= i0 ? cb[j][1] * FastExp2(fminf(ci0 - cc1, 0.0f)) * w1 : 0.0f;
          const float g10 = c0 <= i1 ? cb[j][2] * FastExp2(fminf(ci1 - cc0, 0.0f)) * w0 : 0.0f;
          const float g11 = c1 <= i1 ? cb[j][3] * FastExp2(fminf(ci1 - cc1, 0.0f)) * w1 : 0.0f;
          *reinterpret_cast<uint32_t*>(&sm.g[i0 * kPitchG + c0]) = PackBf16(g00, g01);
          *reinterpret_cast<uint32_t*>(&sm.g[i1 * kPitchG + c0]) = PackBf16(g10, g11);
        }
      }
    }
    __syncthreads();  // S2: G and xw visible; every read of sm.h done

    // Y += G X over the causal k-blocks kk <= rb.
    if (!(skip & 4)) {
      uint32_t fa[2][4], fx[2][4];
      auto load2 = [&](int kk, int sl) {
        Ldsm4(fa[sl], lds.g + 32 * kk);
        Ldsm4T(fx[sl], lds.h + kHToX + stage_off + 32 * kk * kPitchX);
      };
      load2(0, 0);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        if (kk <= rb) {
          const int sl = kk & 1;
          if (kk + 1 <= rb) load2(kk + 1, sl ^ 1);
          Mma(ya[0], fa[sl], fx[sl][0], fx[sl][1]);
          Mma(ya[1], fa[sl], fx[sl][2], fx[sl][3]);
        }
      }
    }
    // Epilogue: + D x, * silu(z), store y.
    if (!(skip & 16) && y_mode == 2 && p.z == nullptr) {
      // The common case (the model gates in the norm): y is staged for the flush, which writes
      // only rows < len_c and columns < cols_p, so the other rows and columns are staged
      // unchecked. x and the staged y share a pitch: one offset serves both.
      const int off = (16 * rb + gq) * kPitchX + 16 * cq + 2 * t4;
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const float2 dc = *reinterpret_cast<const float2*>(&sm.d[16 * cq + 8 * j + 2 * t4]);
#pragma unroll
        for (int e2 = 0; e2 < 2; ++e2) {
          const int o = off + 8 * e2 * kPitchX + 8 * j;
          const bf162_t xv = *reinterpret_cast<const bf162_t*>(&sX[o]);
          *reinterpret_cast<uint32_t*>(&sm.ys[o]) = PackBf16(
              ya[j][2 * e2] + dc.x * __low2float(xv), ya[j][2 * e2 + 1] + dc.y * __high2float(xv));
        }
      }
    } else if (!(skip & 16)) {
#pragma unroll
      for (int e2 = 0; e2 < 2; ++e2) {
        const int i = 16 * rb + gq + 8 * e2;
        if (i < len_c) {
          const int t = t0 + pos + i;
          bf16_t* yrow =
              static_cast<bf16_t*>(p.y) + t * p.y_token_stride + hd * p.y_head_stride + p0;
#pragma unroll
          for (int j = 0; j < 2; ++j) {
            const int pp = 16 * cq + 8 * j + 2 * t4;
            if (pp >= cols_p) continue;
            const bf162_t xv = *reinterpret_cast<const bf162_t*>(&sX[i * kPitchX + pp]);
            const float2 dc = *reinterpret_cast<const float2*>(&sm.d[pp]);
            float v0 = ya[j][2 * e2] + dc.x * __low2float(xv);
            float v1 = ya[j][2 * e2 + 1] + dc.y * __high2float(xv);
            if (p.z) {
              const bf16_t* zr = static_cast<const bf16_t*>(p.z) + t * p.z_token_stride +
                                 hd * p.z_head_stride + p0 + pp;
              v0 *= Silu(__bfloat162float(zr[0]));
              if (pp + 1 < cols_p) v1 *= Silu(__bfloat162float(zr[1]));
            }
            if (y_mode == 2) {
              *reinterpret_cast<uint32_t*>(&sm.ys[i * kPitchX + pp]) = PackBf16(v0, v1);
            } else if (y_mode == 1 && pp + 1 < cols_p) {
              *reinterpret_cast<uint32_t*>(yrow + pp) = PackBf16(v0, v1);
            } else {
              yrow[pp] = __float2bfloat16_rn(v0);
              if (pp + 1 < cols_p) yrow[pp + 1] = __float2bfloat16_rn(v1);
            }
          }
        }
      }
    }
    // State update: h = exp(cum_last) h + B^T xw (rows n = 16*nb.., channels 32*ph..).
    {
      const float dec = cur.ecum[kT - 1];  // exp(cum_last)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) hacc[j][e] *= dec;
      }
      if (16 * nb < cols_n && !(skip & 8)) {
        uint32_t fa[2][4], fx[2][2][4];
        auto load3 = [&](int kk, int sl) {
          Ldsm4T(fa[sl], lds.bt + stage_off + 32 * kk * kPitchBC);
#pragma unroll
          for (int pr = 0; pr < 2; ++pr) {
            Ldsm4T(fx[sl][pr], lds.xw + 32 * kk * kPitchX + 32 * pr);
          }
        };
        load3(0, 0);
#pragma unroll
        for (int kk = 0; kk < kT / 16; ++kk) {
          const int sl = kk & 1;
          if (kk + 1 < kT / 16) load3(kk + 1, sl ^ 1);
#pragma unroll
          for (int pr = 0; pr < 2; ++pr) {
            Mma(hacc[2 * pr], fa[sl], fx[sl][pr][0], fx[sl][pr][1]);
            Mma(hacc[2 * pr + 1], fa[sl], fx[sl][pr][2], fx[sl][pr][3]);
          }
        }
      }
      write_sh();
      if (next >= bnd_end) {
        if (next == bnd_end) {
          const int32_t bb = BoundaryBlock(p, q, q.off + next);
          if (bb != 0) store_state(bb);
        }
        bnd_end += ((next - bnd_end) / p.block_size + 1) * p.block_size;
      }
    }
    pos = next;
    len_c = len_next;
    buf ^= 1;
  }
  __syncthreads();  // the last sub-chunk's y tile, staged by every warp
  flush_y();
  if (sa.num_segs > 1) {  // end state E_seg -> workspace slot seg, and the segment's log decay
    // This thread's first element (pp = 32*ph + 2*t4, n = 16*nb + gq); the others are 32-bit
    // offsets from it (a head's P x N fits 32 bits).
    const int n0 = 16 * nb + gq, pp0 = 32 * ph + 2 * t4;
    float* out = sa.ws + SegSlot(p, sa, s, seg, hd) * (P * N) + (p0 + pp0) * N + n0;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int dn = 8 * (e >> 1), dp = 8 * j + (e & 1);
        if (n0 + dn < cols_n && pp0 + dp < cols_p) out[dp * cols_n + dn] = hacc[j][e];
      }
    }
    const int64_t slot = SegSlot(p, sa, s, seg, hd);
    if (tid == 0 && blockIdx.z == 0) {
      sa.ws_logdec[slot] = seg_logdec * 0.6931471805599453f;  // ln 2: natural log for the combine
    }
    if (tid == 32 * kDtWarp && blockIdx.z == 0) sa.live_end[slot] = sm.live_end;
    return;
  }
  if (q.final_block != 0) store_state(q.final_block);  // one segment: E is the final state
}

// Incoming state of every segment, written as bf16 to sa.sin: S_in(1) = E_0 (segment 0 ran
// from the initial state), S_in(k) = exp(logdec[k-1]) S_in(k-1) + E_{k-1}. The sequence's final
// state exp(logdec[last]) S_in(last) + E_last goes to its final block, and every boundary state
// that a segment k >= 1 wrote gets its missing term exp(cum) S_in(k) here (the same element, in
// fp32). Grid (num_seqs, H, ceil(P*N / kCombineThreads)), one element (p, n) per thread; the
// end states are loaded kCombineBatch at a time so the loads overlap (one dependent load per
// segment was latency-bound).
constexpr int kCombineThreads = 256;
constexpr int kCombineBatch = 8;
__global__ void SsdCombineKernel(SsdChunkScanParams p, SegArgs sa) {
  WaitForPreviousKernels();
  AllowNextKernelLaunch();
  const int s = blockIdx.x, hd = blockIdx.y;
  const int64_t PN = p.head_dim * p.d_state;
  const int64_t e = static_cast<int64_t>(blockIdx.z) * kCombineThreads + threadIdx.x;
  if (e >= PN) return;
  const SeqInfo q = GetSeq(p, s);
  const int64_t hstride = p.state_head_stride > 0 ? p.state_head_stride : PN;
  const int64_t state_e = hd * hstride + e;  // + block * state_block_stride
  const int64_t slot0 = SegSlot(p, sa, s, 0, hd) * PN + e;
  const float* slot = sa.ws + slot0;
  bf16_t* sin = sa.sin + slot0;
  const int64_t slot_stride = p.num_heads * PN;
  const float* logdec = sa.ws_logdec + SegSlot(p, sa, s, 0, hd);
  const float* decay = sa.decay + hd * p.num_tokens + q.t0;
  float h = slot[0];
  for (int k0 = 1; k0 < sa.num_segs; k0 += kCombineBatch) {
    float end[kCombineBatch], dec[kCombineBatch];
#pragma unroll
    for (int j = 0; j < kCombineBatch; ++j) {
      const int k = k0 + j;
      end[j] = k < sa.num_segs ? slot[k * slot_stride] : 0.0f;
      dec[j] = k < sa.num_segs ? logdec[k * p.num_heads] : 0.0f;
    }
    for (int j = 0; j < kCombineBatch && k0 + j < sa.num_segs; ++j) {
      const int k = k0 + j;
      sin[k * slot_stride] = __float2bfloat16_rn(h);
      if (p.block_size > 0) {  // boundary states after positions in (begin, end] of segment k
        const int64_t begin = SegBegin(q.len, q.off, sa.num_segs, k, sa.cut_len);
        const int64_t last = q.off + SegBegin(q.len, q.off, sa.num_segs, k + 1, sa.cut_len);
        for (int64_t a = ((q.off + begin) / p.block_size + 1) * p.block_size; a <= last;
             a += p.block_size) {
          const int32_t bb = BoundaryBlock(p, q, a);
          if (bb == 0) continue;
          const int64_t off = bb * p.state_block_stride + state_e;
          StoreF(p.state, p.state_dtype, off,
                 LoadF(p.state, p.state_dtype, off) + decay[a - q.off - 1] * h);
        }
      }
      h = __expf(dec[j]) * h + end[j];
    }
  }
  if (q.final_block != 0) {
    StoreF(p.state, p.state_dtype, q.final_block * p.state_block_stride + state_e, h);
  }
}

// The incoming state's term in y for segments >= 1: y_t += exp(cum_t) C_t S_in (times
// silu(z_t) with gating). Tokens are independent and the pass streams y (read and written once)
// and C, so each warp streams its own steps of kCorrRows tokens through a kCorrStages-deep
// cp.async ring of C rows and y rows, with no barrier after the prologue: the CTA shares only
// S_in, which the combine wrote as bf16 (p, n), the layout of the mma's B operand, so the
// prologue is one more cp.async tile. Grid (num_seqs * (num_segs - 1) * parts, H, channel
// tiles); a CTA takes one of `parts` contiguous pieces of its segment, and its warps take that
// piece's steps in turn.
constexpr int kCorrWarps = 4;
constexpr int kCorrThreads = 32 * kCorrWarps;
constexpr int kCorrRows = 16;  // tokens per warp step: one m16 row tile
// Two stages: 70 KB of shared memory a CTA, so 3 CTAs (12 warps) share an SM; with three
// (97 KB, 2 CTAs) the pass was ~10% slower, latency-bound at two warps a scheduler.
constexpr int kCorrStages = 2;
struct __align__(16) CorrSmem {
  bf16_t h[kP * kPitchBC];  // S_in (p, n)
  bf16_t c[kCorrWarps][kCorrStages][kCorrRows * kPitchBC];
  bf16_t y[kCorrWarps][kCorrStages][kCorrRows * kPitchX];  // updated in place, then stored
};

// One warp's copy of a (kCorrRows x kCols) tile, rows < rows_valid and columns < cols_valid
// (zero elsewhere). vec: 16-byte cp.async, each lane keeping one column chunk and stepping its
// row pointer, so a copy costs an add and a select rather than LoadTile's index arithmetic;
// otherwise LoadTile's element path.
template <int kCols, int kPitch>
__device__ __forceinline__ void WarpCopyRows(bf16_t* dst, const bf16_t* src, int64_t row_stride,
                                             int rows_valid, int cols_valid, bool vec, int lane) {
  if (!vec) {
    LoadTile<kCols, kPitch, 32, kCorrRows>(dst, src, row_stride, rows_valid, cols_valid, false,
                                           lane);
    return;
  }
  constexpr int kChunksPerRow = kCols / 8;
  constexpr int kRowStep = 32 / kChunksPerRow;
  static_assert(32 % kChunksPerRow == 0 && kCorrRows % kRowStep == 0);
  const int r0 = lane / kChunksPerRow, c = (lane % kChunksPerRow) * 8;
  const bool col_ok = c < cols_valid;
  const bf16_t* from = src + r0 * row_stride + c;
  bf16_t* to = dst + r0 * kPitch + c;
#pragma unroll
  for (int k = 0; k < kCorrRows / kRowStep; ++k) {
    const bool v = col_ok && r0 + k * kRowStep < rows_valid;
    CpAsync16(to + k * kRowStep * kPitch, v ? from : src, v);
    from += kRowStep * row_stride;
  }
}

template <bool kGated>
__global__ void __launch_bounds__(kCorrThreads)
    SsdCorrectKernel(SsdChunkScanParams p, int parts, bool vec_c, bool vec_y, bool vec_s,
                     SegArgs sa) {
  WaitForPreviousKernels();
  AllowNextKernelLaunch();
  extern __shared__ __align__(16) uint8_t corr_smem_raw[];
  CorrSmem& sm = *reinterpret_cast<CorrSmem*>(corr_smem_raw);
  // Heads vary fastest along x: the CTAs resident at a time then read the same C rows (one
  // group's, shared by its heads) from L2, where (segment, part) fastest re-read them from DRAM
  // once per head.
  const int hd = static_cast<int>(blockIdx.x % p.num_heads);
  const int item = static_cast<int>(blockIdx.x / p.num_heads);
  const int part = item % parts;
  const int s = item / parts / (sa.num_segs - 1);
  const int seg = 1 + item / parts % (sa.num_segs - 1);
  const int64_t p0 = static_cast<int64_t>(blockIdx.z) * kP;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int gq = lane >> 2, t4 = lane & 3;
  const int64_t N = p.d_state, P = p.head_dim;
  const int cols_p = static_cast<int>(P - p0 < kP ? P - p0 : kP);
  const int cols_n = static_cast<int>(N);
  const SeqInfo q = GetSeq(p, s);
  const int64_t seg_begin = SegBegin(q.len, q.off, sa.num_segs, seg, sa.cut_len);
  const int64_t seg_end =
      std::min<int64_t>(SegBegin(q.len, q.off, sa.num_segs, seg + 1, sa.cut_len),
                        sa.live_end[SegSlot(p, sa, s, seg, hd)]);
  const int64_t per_part = ((seg_end - seg_begin + kCorrRows - 1) / kCorrRows + parts - 1) / parts;
  const int64_t first = seg_begin + part * per_part * kCorrRows;
  const int64_t last = std::min<int64_t>(seg_end, first + per_part * kCorrRows);
  if (first >= last) return;  // the whole CTA
  const int steps = static_cast<int>((last - first + kCorrRows - 1) / kCorrRows);
  const int my_steps = (steps - warp + kCorrWarps - 1) / kCorrWarps;  // this warp's: warp + 4i
  const bf16_t* cg =
      static_cast<const bf16_t*>(p.C) + GroupOf(p, hd) * p.C_group_stride + q.t0 * p.C_token_stride;
  bf16_t* yg = static_cast<bf16_t*>(p.y) + q.t0 * p.y_token_stride + hd * p.y_head_stride + p0;
  const float* decay = sa.decay + hd * p.num_tokens + q.t0;
  auto step_row = [&](int i) {
    return first + static_cast<int64_t>(warp + kCorrWarps * i) * kCorrRows;
  };
  // Ring stages are counted, not computed as i % kCorrStages (a division per step).
  auto next_stage = [](int st) { return st + 1 == kCorrStages ? 0 : st + 1; };
  auto issue = [&](int i, int st) {  // this warp's step i into stage st
    if (i < my_steps) {
      const int64_t r0 = step_row(i);
      const int rows = static_cast<int>(std::min<int64_t>(kCorrRows, last - r0));
      WarpCopyRows<kN, kPitchBC>(sm.c[warp][st], cg + r0 * p.C_token_stride, p.C_token_stride, rows,
                                 cols_n, vec_c, lane);
      WarpCopyRows<kP, kPitchX>(sm.y[warp][st], yg + r0 * p.y_token_stride, p.y_token_stride, rows,
                                cols_p, vec_y, lane);
    }
    CpAsyncCommit();  // empty groups keep the wait count uniform
  };
  // S_in first (every warp needs all of it), then the ring's first stages behind it.
  const bf16_t* s_in = sa.sin + SegSlot(p, sa, s, seg, hd) * (P * N) + p0 * N;
  LoadTile<kN, kPitchBC, kCorrThreads, kP>(sm.h, s_in, N, cols_p, cols_n, vec_s, tid);
  CpAsyncCommit();
#pragma unroll
  for (int i = 0; i < kCorrStages - 1; ++i) issue(i, i);
  CpAsyncWait<kCorrStages - 1>();  // S_in's group
  __syncthreads();
  int stage = 0, fill_stage = kCorrStages - 1;  // step i's stage, and step i + stages - 1's
  for (int i = 0; i < my_steps; ++i) {
    issue(i + kCorrStages - 1, fill_stage);
    fill_stage = next_stage(fill_stage);
    const int64_t r0 = step_row(i);
    const int rows = static_cast<int>(std::min<int64_t>(kCorrRows, last - r0));
    float fac[2];
#pragma unroll
    for (int e2 = 0; e2 < 2; ++e2) {
      const int r = gq + 8 * e2;
      fac[e2] = r < rows ? decay[r0 + r] : 0.0f;
    }
    CpAsyncWait<kCorrStages - 1>();
    __syncwarp();
    const bf16_t* sc = sm.c[warp][stage];
    bf16_t* ys = sm.y[warp][stage];
    stage = next_stage(stage);
    float acc[8][4];
#pragma unroll
    for (int c = 0; c < 8; ++c) {
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[c][e] = 0.0f;
    }
#pragma unroll
    for (int kk = 0; kk < kN / 16; ++kk) {
      uint32_t fa[4];
      Ldsm4(fa, &sc[(lane & 15) * kPitchBC + 16 * kk + (lane >> 4) * 8]);
#pragma unroll
      for (int cq = 0; cq < 4; ++cq) {
        uint32_t fh[4];
        Ldsm4(fh, &sm.h[(16 * cq + (lane & 7) + ((lane >> 4) << 3)) * kPitchBC + 16 * kk +
                        ((lane >> 3) & 1) * 8]);
        Mma(acc[2 * cq], fa, fh[0], fh[1]);
        Mma(acc[2 * cq + 1], fa, fh[2], fh[3]);
      }
    }
    // acc[c][e]: row gq + 8 (e >> 1), channel 8c + 2 t4 + (e & 1); y += fac * acc in smem. Rows
    // and channels outside the tile hold zeros (their copies were zero-filled) and are never
    // stored, so without the gate the update needs no bounds checks.
#pragma unroll
    for (int e2 = 0; e2 < 2; ++e2) {
      const int r = gq + 8 * e2;
      [[maybe_unused]] const bf16_t* zrow = nullptr;
      if constexpr (kGated) {
        if (r >= rows) continue;
        zrow = static_cast<const bf16_t*>(p.z) + (q.t0 + r0 + r) * p.z_token_stride +
               hd * p.z_head_stride + p0;
      }
#pragma unroll
      for (int c = 0; c < 8; ++c) {
        const int pp = 8 * c + 2 * t4;
        float f0 = fac[e2], f1 = fac[e2];
        if constexpr (kGated) {
          if (pp >= cols_p) continue;
          f0 *= Silu(__bfloat162float(zrow[pp]));
          if (pp + 1 < cols_p) f1 *= Silu(__bfloat162float(zrow[pp + 1]));
        }
        const bf162_t yv = *reinterpret_cast<const bf162_t*>(&ys[r * kPitchX + pp]);
        *reinterpret_cast<uint32_t*>(&ys[r * kPitchX + pp]) = PackBf16(
            __low2float(yv) + f0 * acc[c][2 * e2], __high2float(yv) + f1 * acc[c][2 * e2 + 1]);
      }
    }
    __syncwarp();
    if (vec_y) {
#pragma unroll
      for (int idx = lane; idx < kCorrRows * kP / 8; idx += 32) {
        const int r = idx / (kP / 8), c8 = (idx % (kP / 8)) * 8;
        if (r < rows && c8 < cols_p) {
          *reinterpret_cast<uint4*>(yg + (r0 + r) * p.y_token_stride + c8) =
              *reinterpret_cast<const uint4*>(&ys[r * kPitchX + c8]);
        }
      }
    } else {
      for (int idx = lane; idx < kCorrRows * kP; idx += 32) {
        const int r = idx / kP, c = idx % kP;
        if (r < rows && c < cols_p) yg[(r0 + r) * p.y_token_stride + c] = ys[r * kPitchX + c];
      }
    }
    __syncwarp();  // the stage is refilled by issue(i + kCorrStages)
  }
}

}  // namespace tc

bool Aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

int SmCount() {
  static const int sms = [] {
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      return 132;
    }
    return n;
  }();
  return sms;
}

// The correction's launch: the gated or plain kernel, its shared memory, and `parts` pieces per
// segment - about four waves of resident CTAs in all (the last wave's idle tail is then short),
// each piece >= 8 steps so S_in's load stays a small part.
struct CorrPlan {
  void (*kernel)(SsdChunkScanParams, int, bool, bool, bool, tc::SegArgs) = nullptr;
  int smem = 0;
  int parts = 1;
  dim3 grid;
};

// Tensor maps for the main kernel's full tiles: x, B and C, each as 2D (a token's elements from
// the first head's or group's start x tokens), with boxes of kT rows and a whole smem pitch of
// elements. The extent ends at the last head's or group's last element, so the boxes' pad
// columns past it read zeros. False where the driver or the shape does not allow them (the
// kernel then loads every tile with cp.async).
bool EncodeTileMaps(const SsdChunkScanParams& p, tc::TileMaps* maps) {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
                                         &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return static_cast<PFN_cuTensorMapEncodeTiled_v12000>(nullptr);
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  if (encode == nullptr || p.head_dim % tc::kP != 0 || p.d_state != tc::kN) return false;
  auto one = [&](CUtensorMap* map, const void* base, int64_t cols, int64_t stride, int box_cols) {
    // Coordinates are 32-bit; strides are 16-byte multiples (vec_in).
    if (cols + box_cols >= (int64_t{1} << 31) || p.num_tokens >= (int64_t{1} << 31)) return false;
    const cuuint64_t dims[2] = {static_cast<cuuint64_t>(cols),
                                static_cast<cuuint64_t>(p.num_tokens)};
    const cuuint64_t strides[1] = {static_cast<cuuint64_t>(stride) * sizeof(bf16_t)};
    const cuuint32_t box[2] = {static_cast<cuuint32_t>(box_cols), tc::kT};
    const cuuint32_t unit[2] = {1, 1};
    return encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(base), dims, strides,
                  box, unit, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                  CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                  CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
  };
  return one(&maps->x, p.x, (p.num_heads - 1) * p.x_head_stride + p.head_dim, p.x_token_stride,
             tc::kPitchX) &&
         one(&maps->b, p.B, (p.num_groups - 1) * p.B_group_stride + p.d_state, p.B_token_stride,
             tc::kPitchBC) &&
         one(&maps->c, p.C, (p.num_groups - 1) * p.C_group_stride + p.d_state, p.C_token_stride,
             tc::kPitchBC);
}

absl::StatusOr<CorrPlan> PlanCorrection(const SsdChunkScanParams& p, int num_segs, int64_t ptiles) {
  CorrPlan plan;
  plan.smem = static_cast<int>(sizeof(tc::CorrSmem));
  plan.kernel = p.z != nullptr ? &tc::SsdCorrectKernel<true> : &tc::SsdCorrectKernel<false>;
  CUDA_RETURN_IF_ERROR(
      cudaFuncSetAttribute(plan.kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, plan.smem));
  int per_sm = 0;
  CUDA_RETURN_IF_ERROR(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, plan.kernel,
                                                                     tc::kCorrThreads, plan.smem));
  const int64_t items = p.num_seqs * (num_segs - 1) * p.num_heads * ptiles;
  const int64_t seg_steps =
      std::max<int64_t>(1, p.num_tokens / p.num_seqs / num_segs / (8 * tc::kCorrRows));
  plan.parts = static_cast<int>(
      std::clamp<int64_t>((4 * std::max(per_sm, 1) * SmCount() + items - 1) / items, 1,
                          std::min<int64_t>(seg_steps, 4096)));
  const int64_t ctas = p.num_seqs * (num_segs - 1) * plan.parts * p.num_heads;
  MS_CHECK_ARG(ctas <= 0x7fffffff, "ssd cuda: too many correction blocks (", ctas, ")");
  plan.grid = dim3(static_cast<unsigned>(ctas), 1, static_cast<unsigned>(ptiles));
  return plan;
}

}  // namespace

absl::Status RunSsdChunkScanCuda(const SsdChunkScanParams& p, const Stream& stream) {
  RETURN_IF_ERROR(ValidateSsdChunkScanParams(p));
  if (p.num_seqs == 0) return absl::OkStatus();
  cudaStream_t st = static_cast<cudaStream_t>(stream.handle());
  const bool tc_ok = p.dtype == DType::kBF16 && p.d_state <= tc::kN;
  SsdCudaImpl impl = p.cuda_impl;
  if (impl == SsdCudaImpl::kAuto)
    impl = tc_ok ? SsdCudaImpl::kTensorCore : SsdCudaImpl::kSequential;
  MS_CHECK_ARG(p.num_seqs <= 0x7fffffff && p.num_heads <= 65535,
               "ssd cuda: num_seqs or num_heads too large for the grid");
  MS_CHECK_ARG(p.first_head <= 0x7fffffff - p.num_heads,
               "ssd cuda: first_head too large (head indices are 32-bit on the GPU)");
  if (impl == SsdCudaImpl::kTensorCore) {
    MS_CHECK_ARG(tc_ok, "ssd cuda: the tensor-core path needs bf16 inputs and d_state <= ", tc::kN);
    const bool vec_in =
        Aligned16(p.x) && Aligned16(p.B) && Aligned16(p.C) && p.x_token_stride % 8 == 0 &&
        p.x_head_stride % 8 == 0 && p.B_token_stride % 8 == 0 && p.B_group_stride % 8 == 0 &&
        p.C_token_stride % 8 == 0 && p.C_group_stride % 8 == 0 && p.head_dim % 8 == 0 &&
        p.d_state % 8 == 0 && p.x_token_stride < tc::kVecStrideLimit &&
        p.B_token_stride < tc::kVecStrideLimit && p.C_token_stride < tc::kVecStrideLimit;
    const bool vec_y = (reinterpret_cast<uintptr_t>(p.y) & 3u) == 0 && p.y_token_stride % 2 == 0 &&
                       p.y_head_stride % 2 == 0;
    const bool vec_y16 = Aligned16(p.y) && p.y_token_stride % 8 == 0 && p.y_head_stride % 8 == 0 &&
                         p.head_dim % 8 == 0;
    const int y_mode = vec_y16 ? 2 : (vec_y ? 1 : 0);
    const size_t smem = sizeof(tc::Smem);
    const bool fast = vec_in && y_mode == 2 && p.y_token_stride < tc::kVecStrideLimit;
    auto* kernel = fast ? &tc::SsdTensorCoreKernel<true> : &tc::SsdTensorCoreKernel<false>;
    CUDA_RETURN_IF_ERROR(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    const int64_t ptiles = (p.head_dim + tc::kP - 1) / tc::kP;
    const int64_t ctas = p.num_seqs * p.num_heads * ptiles;
    int num_segs = p.cuda_num_segments > 0
                       ? p.cuda_num_segments
                       : SsdAutoSegments(ctas, p.num_tokens / p.num_seqs, SmCount());
    MS_CHECK_ARG(p.num_seqs * num_segs * 64 <= 0x7fffffff, "ssd cuda: too many segments");
    // Profiling switch (never set in production): MS_SSD_PROFILE_SKIP is a bit mask of stages
    // to leave out (2 CB/Ch mma, 4 GX mma, 8 state mma, 16 y stores, 32 tile loads, 64 the
    // segments' combine and correction); the output is then wrong. bench_ssd_prefill --profile
    // and --segs use it to attribute time to stages.
    const char* skip_env = std::getenv("MS_SSD_PROFILE_SKIP");
    const int skip = skip_env ? std::atoi(skip_env) : 0;
    // Segments' workspace (stream-ordered allocation, freed after the kernels on the same
    // stream). Automatic segments only make the call faster: without room for the workspace the
    // sequences run whole instead of failing the call.
    const int64_t ws_floats = p.num_seqs * num_segs * p.num_heads * p.head_dim * p.d_state;
    const int64_t sin_floats = (ws_floats + 1) / 2;  // S_in, bf16
    const int64_t ld_floats = p.num_seqs * num_segs * p.num_heads;
    const int64_t decay_floats = p.num_heads * p.num_tokens;
    const int64_t live_ints = ld_floats;  // live ends, one int32 per (sequence, segment, head)
    // The correction's launch shape is settled before anything is allocated or launched, so a
    // shape it cannot take fails the call with nothing run.
    CorrPlan corr;
    void* ws = nullptr;
    if (num_segs > 1) {
      ASSIGN_OR_RETURN(corr, PlanCorrection(p, num_segs, ptiles));
      RETURN_IF_ERROR(KeepFreedStreamMemory(stream.device()));
      const cudaError_t e = cudaMallocAsync(
          &ws, (ws_floats + sin_floats + ld_floats + decay_floats + live_ints) * sizeof(float), st);
      if (e == cudaErrorMemoryAllocation && p.cuda_num_segments <= 0) {
        (void)cudaGetLastError();
        num_segs = 1;
      } else {
        CUDA_RETURN_IF_ERROR(e);
      }
    }
    const dim3 grid(static_cast<unsigned>(p.num_seqs * num_segs),
                    static_cast<unsigned>(p.num_heads), static_cast<unsigned>(ptiles));
    tc::SegArgs sa;
    tc::TileMaps maps{};
    sa.tma = fast && EncodeTileMaps(p, &maps);
    sa.num_segs = num_segs;
    sa.cut_len = static_cast<int>(p.chunk_size < tc::kT ? p.chunk_size : tc::kT);
    if (num_segs == 1) {
      CUDA_RETURN_IF_ERROR(LaunchDependent(kernel, grid, dim3(tc::kThreads), smem, st, p, vec_in,
                                           y_mode, skip, sa, maps));
      return absl::OkStatus();
    }
    // [E (fp32)][S_in (bf16)][log decays][exp(cum)][live ends]; the S_in rows are 16-byte aligned
    // when N is a multiple of 8 (vec_s below).
    sa.ws = static_cast<float*>(ws);
    sa.sin = reinterpret_cast<bf16_t*>(sa.ws + ws_floats);
    sa.ws_logdec = sa.ws + ws_floats + sin_floats;
    sa.decay = sa.ws_logdec + ld_floats;
    sa.live_end = reinterpret_cast<int*>(sa.decay + decay_floats);
    absl::Status launch = CudaStatus(LaunchDependent(kernel, grid, dim3(tc::kThreads), smem, st, p,
                                                     vec_in, y_mode, skip, sa, maps),
                                     "ssd segments", __FILE__, __LINE__);
    if (launch.ok() && !(skip & 64)) {
      const int64_t spans =
          (p.head_dim * p.d_state + tc::kCombineThreads - 1) / tc::kCombineThreads;
      const dim3 grid_c(static_cast<unsigned>(p.num_seqs), static_cast<unsigned>(p.num_heads),
                        static_cast<unsigned>(spans));
      launch.Update(CudaStatus(
          LaunchDependent(tc::SsdCombineKernel, grid_c, dim3(tc::kCombineThreads), 0, st, p, sa),
          "ssd combine", __FILE__, __LINE__));
    }
    if (launch.ok() && !(skip & 64)) {
      const bool vec_s = p.head_dim % 8 == 0 && p.d_state % 8 == 0;
      launch.Update(
          CudaStatus(LaunchDependent(corr.kernel, corr.grid, dim3(tc::kCorrThreads), corr.smem, st,
                                     p, corr.parts, vec_in, y_mode == 2, vec_s, sa),
                     "ssd correction", __FILE__, __LINE__));
    }
    CUDA_RETURN_IF_ERROR(cudaFreeAsync(ws, st));
    return launch;
  }
  const size_t smem = sizeof(float) * kSeqWarps * p.d_state;
  if (smem > 48 * 1024) {
    MS_CHECK_ARG(smem <= 200 * 1024, "ssd cuda: d_state too large for the sequential path");
    CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        SsdSequentialKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  }
  const dim3 grid(static_cast<unsigned>(p.num_seqs), static_cast<unsigned>(p.num_heads),
                  static_cast<unsigned>((p.head_dim + kSeqWarps - 1) / kSeqWarps));
  SsdSequentialKernel<<<grid, 32 * kSeqWarps, smem, st>>>(p);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

}  // namespace mambaserve
