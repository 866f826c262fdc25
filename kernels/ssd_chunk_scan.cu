// CUDA implementations of the SSD chunked scan (see ssd_chunk_scan.h).
//
// kTensorCore (bf16 inputs, N <= 128): one fused kernel, one CTA of 8 warps per (sequence, head,
// tile of 64 channels p). The CTA walks its sequence in sub-chunks of up to 64 tokens (cut at
// absolute multiples of min(Q, 64), so every chunk and block boundary of the public chunking is a
// sub-chunk boundary), carrying the (N, 64) state in fp32 registers across sub-chunks; the
// intermediate chunk states never leave the SM. Per sub-chunk (bf16 mma.sync m16n8k16, fp32
// accumulate):
//   CB = C B^T (causal tiles only), G = CB o exp(cum_i - cum_j) dt_j (j <= i)     -> smem, bf16
//   Y  = exp(cum_i) C h_in + G X + D x, optional * silu(z)                       -> y
//   h  = exp(cum_last) h + B^T (exp(cum_last - cum_j) dt_j x_j)                  -> registers
// The next sub-chunk's x, B, C tiles are prefetched with cp.async (double buffer) while the
// current one is computed. The chunk size Q only fixes where block-boundary states can sit;
// the result does not depend on it beyond rounding.
//
// kSequential (any dtype, any N): the plain recurrence, one warp per (sequence, head, channel p),
// lanes over the state index n, fp32. Slow; it is the accuracy reference on the GPU and the
// fallback for f32/f16 inputs and N > 128.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "core/cuda_status.h"
#include "core/status_macros.h"
#include "kernels/mamba_math.h"
#include "kernels/ssd_chunk_scan.h"

namespace mambaserve {
namespace {

using bf16_t = __nv_bfloat16;
using bf162_t = __nv_bfloat162;

__device__ __forceinline__ float LoadF(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::kF32:
      return static_cast<const float*>(p)[i];
    case DType::kBF16:
      return __bfloat162float(static_cast<const bf16_t*>(p)[i]);
    default:
      return __half2float(static_cast<const __half*>(p)[i]);
  }
}

__device__ __forceinline__ void StoreF(void* p, DType t, int64_t i, float v) {
  switch (t) {
    case DType::kF32:
      static_cast<float*>(p)[i] = v;
      break;
    case DType::kBF16:
      static_cast<bf16_t*>(p)[i] = __float2bfloat16_rn(v);
      break;
    default:
      static_cast<__half*>(p)[i] = __float2half_rn(v);
      break;
  }
}

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

__device__ __forceinline__ int64_t GroupOf(const SsdChunkScanParams& p, int hd) {
  const int64_t hpg = p.heads_per_group > 0 ? p.heads_per_group : p.num_heads / p.num_groups;
  return (p.first_head + hd) / hpg - p.first_group;
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

constexpr int kT = 64;   // tokens per sub-chunk (padded)
constexpr int kN = 128;  // padded d_state
constexpr int kP = 64;   // channels per CTA
constexpr int kThreads = 256;
constexpr int kPitchX = kP + 8;   // bf16 elements per smem row (16 B pad: conflict-free ldmatrix)
constexpr int kPitchBC = kN + 8;
constexpr int kPitchG = kT + 8;
constexpr int kPitchH = kP + 8;

struct __align__(16) Smem {
  bf16_t x[2][kT * kPitchX];
  bf16_t b[2][kT * kPitchBC];
  bf16_t c[2][kT * kPitchBC];
  bf16_t xw[kT * kPitchX];
  bf16_t g[kT * kPitchG];
  bf16_t h[kN * kPitchH];
  float cum[kT];
  float dt[kT];
};

__device__ __forceinline__ uint32_t SmemAddr(const void* ptr) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(ptr));
}

__device__ __forceinline__ void Ldsm4(uint32_t (&r)[4], const void* ptr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SmemAddr(ptr)));
}

__device__ __forceinline__ void Ldsm4T(uint32_t (&r)[4], const void* ptr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SmemAddr(ptr)));
}

__device__ __forceinline__ void Mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(SmemAddr(smem)),
               "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void CpAsyncWait1() { asm volatile("cp.async.wait_group 1;\n" ::); }

__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  bf162_t v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Loads a (kT x cols) tile: rows r < rows_valid from src + r * row_stride, cols < cols_valid,
// zero elsewhere. vec: 16-byte cp.async (cols_valid % 8 == 0, aligned rows).
template <int kCols, int kPitch>
__device__ __forceinline__ void LoadTile(bf16_t* dst, const bf16_t* src, int64_t row_stride,
                                         int rows_valid, int cols_valid, bool vec) {
  if (vec) {
    constexpr int kChunks = kT * kCols / 8;
    for (int idx = threadIdx.x; idx < kChunks; idx += kThreads) {
      const int r = idx / (kCols / 8), c = (idx % (kCols / 8)) * 8;
      const bool v = r < rows_valid && c < cols_valid;
      CpAsync16(dst + r * kPitch + c, v ? src + r * row_stride + c : src, v);
    }
  } else {
    for (int idx = threadIdx.x; idx < kT * kCols; idx += kThreads) {
      const int r = idx / kCols, c = idx % kCols;
      dst[r * kPitch + c] = (r < rows_valid && c < cols_valid) ? src[r * row_stride + c]
                                                               : __float2bfloat16_rn(0.0f);
    }
  }
}

__global__ void __launch_bounds__(kThreads, 1)
    SsdTensorCoreKernel(SsdChunkScanParams p, int cut_len, bool vec_in, bool vec_y) {
  extern __shared__ __align__(16) uint8_t tc_smem_raw[];
  Smem& sm = *reinterpret_cast<Smem*>(tc_smem_raw);
  const int s = blockIdx.x, hd = blockIdx.y;
  const int64_t p0 = static_cast<int64_t>(blockIdx.z) * kP;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int gq = lane >> 2, t4 = lane & 3;
  const int64_t N = p.d_state, P = p.head_dim;
  const int cols_p = static_cast<int>(P - p0 < kP ? P - p0 : kP);
  const int cols_n = static_cast<int>(N);
  const int nk = (cols_n + 15) / 16;  // k-steps over the state index
  const SeqInfo q = GetSeq(p, s);
  const int64_t g = GroupOf(p, hd);
  const float A = p.A[hd];
  const int64_t hstride = p.state_head_stride > 0 ? p.state_head_stride : P * N;
  const int64_t sbase = hd * hstride + p0 * N;  // + pp * N + n

  const bf16_t* xg = static_cast<const bf16_t*>(p.x) + hd * p.x_head_stride + p0;
  const bf16_t* bg = static_cast<const bf16_t*>(p.B) + g * p.B_group_stride;
  const bf16_t* cg = static_cast<const bf16_t*>(p.C) + g * p.C_group_stride;

  // State rows n = 16*warp + gq (+8), columns pp = 8*j + 2*t4 (+1); element e of hacc[j]:
  // n += 8*(e>>1), pp += e&1.
  float hacc[8][4];
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int n = 16 * warp + gq + 8 * (e >> 1), pp = 8 * j + 2 * t4 + (e & 1);
      hacc[j][e] = (q.init_block != 0 && n < cols_n && pp < cols_p)
                       ? LoadF(p.state, p.state_dtype,
                               q.init_block * p.state_block_stride + sbase + pp * N + n)
                       : 0.0f;
    }
  }
  auto write_sh = [&]() {
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int e2 = 0; e2 < 2; ++e2) {
        const int n = 16 * warp + gq + 8 * e2, pp = 8 * j + 2 * t4;
        *reinterpret_cast<uint32_t*>(&sm.h[n * kPitchH + pp]) =
            PackBf16(hacc[j][2 * e2], hacc[j][2 * e2 + 1]);
      }
    }
  };
  auto store_state = [&](int32_t block) {
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int n = 16 * warp + gq + 8 * (e >> 1), pp = 8 * j + 2 * t4 + (e & 1);
        if (n < cols_n && pp < cols_p) {
          StoreF(p.state, p.state_dtype, block * p.state_block_stride + sbase + pp * N + n,
                 hacc[j][e]);
        }
      }
    }
  };
  write_sh();

  auto sub_len = [&](int64_t pos) -> int {
    const int64_t a = q.off + pos;
    const int64_t l = cut_len - a % cut_len;
    return static_cast<int>(q.len - pos < l ? q.len - pos : l);
  };
  auto load = [&](int buf, int64_t pos, int len_c) {
    const int64_t t = q.t0 + pos;
    LoadTile<kP, kPitchX>(sm.x[buf], xg + t * p.x_token_stride, p.x_token_stride, len_c, cols_p,
                          vec_in);
    LoadTile<kN, kPitchBC>(sm.b[buf], bg + t * p.B_token_stride, p.B_token_stride, len_c, cols_n,
                           vec_in);
    LoadTile<kN, kPitchBC>(sm.c[buf], cg + t * p.C_token_stride, p.C_token_stride, len_c, cols_n,
                           vec_in);
  };

  int buf = 0;
  if (q.len > 0) load(0, 0, sub_len(0));
  CpAsyncCommit();
  const int rb = warp & 3, half = warp >> 2;  // output row block / column half of this warp
  for (int64_t pos = 0; pos < q.len;) {
    const int len_c = sub_len(pos);
    const int64_t next = pos + len_c;
    if (next < q.len) load(buf ^ 1, next, sub_len(next));
    CpAsyncCommit();
    if (warp == 0) {  // dt, and the inclusive cumulative sum of dt*A over the sub-chunk
      float carry = 0.0f;
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        const int j = lane + 32 * hf;
        const float d = j < len_c ? DtOf(p, q.t0 + pos + j, hd) : 0.0f;
        float a = d * A;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
          const float v = __shfl_up_sync(0xffffffffu, a, o);
          if (lane >= o) a += v;
        }
        sm.dt[j] = d;
        sm.cum[j] = a + carry;
        carry += __shfl_sync(0xffffffffu, a, 31);
      }
    }
    CpAsyncWait1();
    __syncthreads();  // S1: tiles, dt, cum of this sub-chunk visible

    const bf16_t* sX = sm.x[buf];
    const bf16_t* sB = sm.b[buf];
    const bf16_t* sC = sm.c[buf];
    const float cum_last = sm.cum[kT - 1];  // padded tokens add 0
    // Weighted inputs for the state update: xw[j] = x[j] * exp(cum_last - cum_j) * dt_j.
    for (int idx = tid; idx < kT * kP / 2; idx += kThreads) {
      const int r = idx / (kP / 2), c = (idx % (kP / 2)) * 2;
      const float w = __expf(cum_last - sm.cum[r]) * sm.dt[r];
      const bf162_t v = *reinterpret_cast<const bf162_t*>(&sX[r * kPitchX + c]);
      *reinterpret_cast<uint32_t*>(&sm.xw[r * kPitchX + c]) =
          PackBf16(__low2float(v) * w, __high2float(v) * w);
    }
    // CB (causal tiles of rows 16*rb.., cols 32*half..) and C h_in (rows 16*rb.., channels
    // 32*half..), sharing the C fragments.
    int ncb = (16 * rb + 15 - 32 * half) / 8 + 1;
    ncb = ncb < 0 ? 0 : (ncb > 4 ? 4 : ncb);
    float cb[4][4], ya[4][4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) cb[j][e] = ya[j][e] = 0.0f;
    }
    for (int kk = 0; kk < nk; ++kk) {
      uint32_t a[4];
      Ldsm4(a, &sC[(16 * rb + (lane & 15)) * kPitchBC + 16 * kk + (lane >> 4) * 8]);
#pragma unroll
      for (int pr = 0; pr < 2; ++pr) {
        if (2 * pr < ncb) {
          uint32_t b[4];
          Ldsm4(b, &sB[(32 * half + 16 * pr + (lane & 7) + ((lane >> 4) << 3)) * kPitchBC +
                       16 * kk + ((lane >> 3) & 1) * 8]);
          Mma(cb[2 * pr], a, b[0], b[1]);
          if (2 * pr + 1 < ncb) Mma(cb[2 * pr + 1], a, b[2], b[3]);
        }
      }
#pragma unroll
      for (int pr = 0; pr < 2; ++pr) {
        uint32_t b[4];
        Ldsm4T(b, &sm.h[(16 * kk + (lane & 7) + ((lane >> 3) & 1) * 8) * kPitchH + 32 * half +
                        16 * pr + (lane >> 4) * 8]);
        Mma(ya[2 * pr], a, b[0], b[1]);
        Mma(ya[2 * pr + 1], a, b[2], b[3]);
      }
    }
    {
      const int i0 = 16 * rb + gq, i1 = i0 + 8;
      const float ci0 = sm.cum[i0], ci1 = sm.cum[i1];
      const float s0 = __expf(ci0), s1 = __expf(ci1);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        ya[j][0] *= s0;
        ya[j][1] *= s0;
        ya[j][2] *= s1;
        ya[j][3] *= s1;
        if (j < ncb) {
          const int c0 = 32 * half + 8 * j + 2 * t4, c1 = c0 + 1;
          const float w0 = sm.dt[c0], w1 = sm.dt[c1];
          const float cc0 = sm.cum[c0], cc1 = sm.cum[c1];
          const float g00 = c0 <= i0 ? cb[j][0] * __expf(ci0 - cc0) * w0 : 0.0f;
          const float g01 = c1 <= i0 ? cb[j][1] * __expf(ci0 - cc1) * w1 : 0.0f;
          const float g10 = c0 <= i1 ? cb[j][2] * __expf(ci1 - cc0) * w0 : 0.0f;
          const float g11 = c1 <= i1 ? cb[j][3] * __expf(ci1 - cc1) * w1 : 0.0f;
          *reinterpret_cast<uint32_t*>(&sm.g[i0 * kPitchG + c0]) = PackBf16(g00, g01);
          *reinterpret_cast<uint32_t*>(&sm.g[i1 * kPitchG + c0]) = PackBf16(g10, g11);
        }
      }
    }
    __syncthreads();  // S2: G and xw visible; every read of sm.h done

    // Y += G X over the causal k-blocks.
    for (int kk = 0; kk <= rb; ++kk) {
      uint32_t a[4];
      Ldsm4(a, &sm.g[(16 * rb + (lane & 15)) * kPitchG + 16 * kk + (lane >> 4) * 8]);
#pragma unroll
      for (int pr = 0; pr < 2; ++pr) {
        uint32_t b[4];
        Ldsm4T(b, &sX[(16 * kk + (lane & 7) + ((lane >> 3) & 1) * 8) * kPitchX + 32 * half +
                      16 * pr + (lane >> 4) * 8]);
        Mma(ya[2 * pr], a, b[0], b[1]);
        Mma(ya[2 * pr + 1], a, b[2], b[3]);
      }
    }
    // Epilogue: + D x, * silu(z), store y.
#pragma unroll
    for (int e2 = 0; e2 < 2; ++e2) {
      const int i = 16 * rb + gq + 8 * e2;
      if (i < len_c) {
        const int64_t t = q.t0 + pos + i;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int pp = 32 * half + 8 * j + 2 * t4;
          if (pp >= cols_p) continue;
          float v[2];
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int64_t pc = p0 + pp + e;
            float val = ya[j][2 * e2 + e];
            if (p.D) {
              const float Dv = p.D_per_channel ? (pp + e < cols_p ? p.D[hd * P + pc] : 0.0f)
                                               : p.D[hd];
              val += Dv * __bfloat162float(sX[i * kPitchX + pp + e]);
            }
            if (p.z && pp + e < cols_p) {
              val *= Silu(__bfloat162float(static_cast<const bf16_t*>(
                  p.z)[t * p.z_token_stride + hd * p.z_head_stride + pc]));
            }
            v[e] = val;
          }
          bf16_t* yp = static_cast<bf16_t*>(p.y) + t * p.y_token_stride + hd * p.y_head_stride +
                       p0 + pp;
          if (vec_y && pp + 1 < cols_p) {
            *reinterpret_cast<uint32_t*>(yp) = PackBf16(v[0], v[1]);
          } else {
            yp[0] = __float2bfloat16_rn(v[0]);
            if (pp + 1 < cols_p) yp[1] = __float2bfloat16_rn(v[1]);
          }
        }
      }
    }
    // State update: h = exp(cum_last) h + B^T xw (rows n = 16*warp.., all 64 channels).
    {
      const float dec = __expf(cum_last);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) hacc[j][e] *= dec;
      }
      const int nkt = (len_c + 15) / 16;
      if (16 * warp < cols_n) {
        for (int kk = 0; kk < nkt; ++kk) {
          uint32_t a[4];
          Ldsm4T(a, &sB[(16 * kk + (lane & 7) + ((lane >> 4) << 3)) * kPitchBC + 16 * warp +
                        ((lane >> 3) & 1) * 8]);
#pragma unroll
          for (int pr = 0; pr < 4; ++pr) {
            uint32_t b[4];
            Ldsm4T(b, &sm.xw[(16 * kk + (lane & 7) + ((lane >> 3) & 1) * 8) * kPitchX +
                             16 * pr + (lane >> 4) * 8]);
            Mma(hacc[2 * pr], a, b[0], b[1]);
            Mma(hacc[2 * pr + 1], a, b[2], b[3]);
          }
        }
      }
      write_sh();
      const int32_t bb = BoundaryBlock(p, q, q.off + next);
      if (bb != 0) store_state(bb);
    }
    __syncthreads();  // S3: this sub-chunk's buffers may be overwritten
    pos = next;
    buf ^= 1;
  }
  if (q.final_block != 0) store_state(q.final_block);
}

}  // namespace tc

bool Aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

}  // namespace

absl::Status RunSsdChunkScanCuda(const SsdChunkScanParams& p, const Stream& stream) {
  RETURN_IF_ERROR(ValidateSsdChunkScanParams(p));
  if (p.num_seqs == 0) return absl::OkStatus();
  cudaStream_t st = static_cast<cudaStream_t>(stream.handle());
  const bool tc_ok = p.dtype == DType::kBF16 && p.d_state <= tc::kN;
  SsdCudaImpl impl = p.cuda_impl;
  if (impl == SsdCudaImpl::kAuto) impl = tc_ok ? SsdCudaImpl::kTensorCore : SsdCudaImpl::kSequential;
  MS_CHECK_ARG(p.num_seqs <= 0x7fffffff && p.num_heads <= 65535,
               "ssd cuda: num_seqs or num_heads too large for the grid");
  if (impl == SsdCudaImpl::kTensorCore) {
    MS_CHECK_ARG(tc_ok, "ssd cuda: the tensor-core path needs bf16 inputs and d_state <= ",
                 tc::kN);
    const bool vec_in = Aligned16(p.x) && Aligned16(p.B) && Aligned16(p.C) &&
                        p.x_token_stride % 8 == 0 && p.x_head_stride % 8 == 0 &&
                        p.B_token_stride % 8 == 0 && p.B_group_stride % 8 == 0 &&
                        p.C_token_stride % 8 == 0 && p.C_group_stride % 8 == 0 &&
                        p.head_dim % 8 == 0 && p.d_state % 8 == 0;
    const bool vec_y = (reinterpret_cast<uintptr_t>(p.y) & 3u) == 0 &&
                       p.y_token_stride % 2 == 0 && p.y_head_stride % 2 == 0;
    const int cut_len = static_cast<int>(p.chunk_size < tc::kT ? p.chunk_size : tc::kT);
    const size_t smem = sizeof(tc::Smem);
    CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        tc::SsdTensorCoreKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    const dim3 grid(static_cast<unsigned>(p.num_seqs), static_cast<unsigned>(p.num_heads),
                    static_cast<unsigned>((p.head_dim + tc::kP - 1) / tc::kP));
    tc::SsdTensorCoreKernel<<<grid, tc::kThreads, smem, st>>>(p, cut_len, vec_in, vec_y);
    CUDA_RETURN_IF_LAUNCH_ERROR();
    return absl::OkStatus();
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
