// CUDA Mamba-1 decode update. Memory bound on the state. Three kernels, by case:
// - streamed (N = 16, one token per sequence, 16-byte aligned rows: plain decode in serving): a
//   resident grid walks (sequence, 128-channel tile) items, staging the next items' state in
//   shared memory with cp.async while it computes the current one;
// - row (N <= 16 otherwise, e.g. speculative tokens): a thread owns a channel's whole state row;
// - general (N > 16): one thread owns kNPT consecutive state elements of one channel, tpc
//   threads share a channel and reduce y with shuffles; block = (sequence, tile of channels).
// The per-element arithmetic is the prefill kernel's (selective_scan_cuda.h).
#include <algorithm>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/cuda_status.h"
#include "core/dependent_launch.cuh"
#include "core/resident_blocks.h"
#include "core/status_macros.h"
#include "kernels/cp_async.cuh"
#include "kernels/mamba1_state_update.h"
#include "kernels/selective_scan_cuda.h"

namespace mambaserve {
namespace {

using namespace scan_cuda;

struct DecodeArgs {
  int64_t batch, D, N, dpg, tokens;
  int x_dt, bc_dt, delta_dt;
  const void* u;
  int64_t u_rs;
  const void* delta;
  int64_t delta_rs;
  const float* delta_bias;
  bool softplus;
  const float* A;
  const void* B;
  int64_t B_rs, B_gs;
  const void* C;
  int64_t C_rs, C_gs;
  const float* Dv;
  const void* z;
  int64_t z_rs;
  void* y;
  int64_t y_rs;
  const float* tau;
  const float* bias_A;
  void* pool;
  int64_t block_stride;
  const int32_t* blk_in;
  const int32_t* blk_out;
  int tpc_log2;
  bool vec_state;  // state rows of this lane are whole, aligned vectors
  // v2 (N <= 16, one thread per channel): 16-state rows load as vectors.
  bool row_vec_state, row_vec_A, row_vec_bc;
  // Streamed kernel (see Mamba1DecodeStreamKernel): channel tiles and the shared-memory stage.
  int64_t tiles;
  int st_units_log2;  // log2 of the 16-byte units of a channel's state row
  int st_row_smem;    // bytes of a staged state row (the row + 16 bytes, so that 8 consecutive
                      // threads' 16-byte reads hit distinct banks)
  int bc_units;       // 16-byte units of a B / C row
  int off_u, off_delta, off_z, off_B, off_C, stage_bytes;
  int max_items;  // items of the block that walks the most (set at launch)
  // Mamba1StateUpdateParams::read_state_before_wait: block indices and state rows may be read
  // before the wait for the previous kernels (launched as dependents).
  bool early_state;
};

// The per-(token, channel) scalars of token row r, channel d (both decode kernels).
template <Discretization kMode>
__device__ __forceinline__ TokenScalars LoadTokenScalars(const DecodeArgs& a, int64_t r, int64_t d,
                                                         float bias, float spb) {
  const float u = LoadElem(a.u, a.x_dt, r * a.u_rs + d);
  const float dl = LoadElem(a.delta, a.delta_dt, r * a.delta_rs + d);
  const float ev = kMode == Discretization::kEventDriven ? a.tau[r] * spb : 0.0f;
  return MakeTokenScalars<kMode>(dl, bias, a.softplus, u, ev);
}

// kNPT = 4 or 8 states per lane, loaded as float4 (fp32) or uint2 (16-bit) pieces.

template <typename StateT, int kNPT>
__device__ __forceinline__ void LoadStates(const StateT* p, int count, bool vec, float* h) {
  if (vec && count == kNPT) {
    if constexpr (std::is_same_v<StateT, float>) {
#pragma unroll
      for (int j = 0; j < kNPT; j += 4) {
        const float4 v = *reinterpret_cast<const float4*>(p + j);
        h[j] = v.x, h[j + 1] = v.y, h[j + 2] = v.z, h[j + 3] = v.w;
      }
    } else {
#pragma unroll
      for (int j = 0; j < kNPT; j += 4) {
        const uint2 v = *reinterpret_cast<const uint2*>(p + j);
        const StateT* e = reinterpret_cast<const StateT*>(&v);
#pragma unroll
        for (int k = 0; k < 4; ++k) h[j + k] = static_cast<float>(e[k]);
      }
    }
    return;
  }
#pragma unroll
  for (int j = 0; j < kNPT; ++j) h[j] = j < count ? static_cast<float>(p[j]) : 0.0f;
}

template <typename StateT>
__device__ __forceinline__ StateT FromF(float v) {
  if constexpr (std::is_same_v<StateT, float>) {
    return v;
  } else if constexpr (std::is_same_v<StateT, __nv_bfloat16>) {
    return __float2bfloat16_rn(v);
  } else {
    return __float2half_rn(v);
  }
}

template <typename StateT, int kNPT>
__device__ __forceinline__ void StoreStates(StateT* p, int count, bool vec, const float* h) {
  if (vec && count == kNPT) {
    if constexpr (std::is_same_v<StateT, float>) {
#pragma unroll
      for (int j = 0; j < kNPT; j += 4) {
        *reinterpret_cast<float4*>(p + j) = make_float4(h[j], h[j + 1], h[j + 2], h[j + 3]);
      }
    } else {
#pragma unroll
      for (int j = 0; j < kNPT; j += 4) {
        uint2 v;
        StateT* e = reinterpret_cast<StateT*>(&v);
#pragma unroll
        for (int k = 0; k < 4; ++k) e[k] = FromF<StateT>(h[j + k]);
        *reinterpret_cast<uint2*>(p + j) = v;
      }
    }
    return;
  }
#pragma unroll
  for (int j = 0; j < kNPT; ++j)
    if (j < count) p[j] = FromF<StateT>(h[j]);
}

template <Discretization kMode, int kNPT, typename StateT>
__global__ void __launch_bounds__(256) Mamba1DecodeKernel(const DecodeArgs a) {
  AllowNextKernelLaunch();  // dependents still wait for this kernel before reading its outputs
  WaitForPreviousKernels();
  const int64_t b = blockIdx.y;
  const int tpc = 1 << a.tpc_log2;
  const int cpb = blockDim.x >> a.tpc_log2;
  const int slot = threadIdx.x >> a.tpc_log2;
  const int sub = threadIdx.x & (tpc - 1);
  const int64_t d = static_cast<int64_t>(blockIdx.x) * cpb + slot;
  const bool ch_valid = d < a.D;
  const int64_t dc = ch_valid ? d : a.D - 1;  // clamped for reads; lanes past D store nothing
  const int64_t N = a.N;
  const int64_t n0 = sub * kNPT;
  const int64_t rem = N - n0;
  const int count = rem <= 0 ? 0 : (rem < kNPT ? static_cast<int>(rem) : kNPT);
  const int64_t g = dc / a.dpg;
  StateT* pool = static_cast<StateT*>(a.pool);

  float h[kNPT], Ar[kNPT];
  const int64_t in_blk = a.blk_in[b];
  if (in_blk != 0 && count > 0) {
    LoadStates<StateT, kNPT>(pool + in_blk * a.block_stride + dc * N + n0, count, a.vec_state, h);
  } else {
#pragma unroll
    for (int j = 0; j < kNPT; ++j) h[j] = 0.0f;
  }
#pragma unroll
  for (int j = 0; j < kNPT; ++j) Ar[j] = j < count ? PrepareA<kMode>(a.A[dc * N + n0 + j]) : 0.0f;
  const float bias = a.delta_bias ? a.delta_bias[dc] : 0.0f;
  const float spb = kMode == Discretization::kEventDriven ? DevSoftplus(a.bias_A[dc]) : 0.0f;
  const float Dd = a.Dv ? a.Dv[dc] : 0.0f;
  const unsigned full = 0xffffffffu;

  for (int64_t t = 0; t < a.tokens; ++t) {
    const int64_t r = b * a.tokens + t;
    const TokenScalars ts = LoadTokenScalars<kMode>(a, r, dc, bias, spb);
    const float u = ts.u;
    float yp = 0.0f;
#pragma unroll
    for (int j = 0; j < kNPT; ++j) {
      if (j < count) {
        const float Bv = LoadElem(a.B, a.bc_dt, r * a.B_rs + g * a.B_gs + n0 + j);
        const float Cv = LoadElem(a.C, a.bc_dt, r * a.C_rs + g * a.C_gs + n0 + j);
        h[j] = StepState<kMode>(h[j], Ar[j], Bv, ts);
        yp = fmaf(Cv, h[j], yp);
      }
    }
    for (int off = tpc >> 1; off > 0; off >>= 1) yp += __shfl_xor_sync(full, yp, off);
    if (sub == 0 && ch_valid) {
      float yv = yp + Dd * u;
      if (a.z) yv *= DevSilu(LoadElem(a.z, a.x_dt, r * a.z_rs + dc));
      StoreElem(a.y, a.x_dt, r * a.y_rs + dc, yv);
    }
    if (a.blk_out) {
      const int64_t ob = a.blk_out[r];
      if (ob != 0 && ch_valid && count > 0) {
        StoreStates<StateT, kNPT>(pool + ob * a.block_stride + dc * N + n0, count, a.vec_state, h);
      }
    }
  }
  if (!a.blk_out && in_blk != 0 && ch_valid && count > 0) {
    StoreStates<StateT, kNPT>(pool + in_blk * a.block_stride + dc * N + n0, count, a.vec_state, h);
  }
}

// Version 2 (the default for d_state <= 16): one thread owns a whole channel (its N states in
// registers), so each thread moves 64 bytes of fp32 state each way with vector accesses, y needs
// no shuffles, and u / delta / z / y accesses are coalesced across the warp.
template <typename StateT>
__device__ __forceinline__ void LoadRow16(const StateT* p, bool vec, int N, float* h) {
  if (vec) {
    if constexpr (std::is_same_v<StateT, float>) {
#pragma unroll
      for (int j = 0; j < 16; j += 4) {
        const float4 v = *reinterpret_cast<const float4*>(p + j);
        h[j] = v.x, h[j + 1] = v.y, h[j + 2] = v.z, h[j + 3] = v.w;
      }
    } else {
#pragma unroll
      for (int j = 0; j < 16; j += 8) {
        const uint4 v = *reinterpret_cast<const uint4*>(p + j);
        const StateT* e = reinterpret_cast<const StateT*>(&v);
#pragma unroll
        for (int k = 0; k < 8; ++k) h[j + k] = static_cast<float>(e[k]);
      }
    }
    return;
  }
#pragma unroll
  for (int j = 0; j < 16; ++j) h[j] = j < N ? static_cast<float>(p[j]) : 0.0f;
}

template <typename StateT>
__device__ __forceinline__ void StoreRow16(StateT* p, bool vec, int N, const float* h) {
  if (vec) {
    if constexpr (std::is_same_v<StateT, float>) {
#pragma unroll
      for (int j = 0; j < 16; j += 4) {
        *reinterpret_cast<float4*>(p + j) = make_float4(h[j], h[j + 1], h[j + 2], h[j + 3]);
      }
    } else {
#pragma unroll
      for (int j = 0; j < 16; j += 8) {
        uint4 v;
        StateT* e = reinterpret_cast<StateT*>(&v);
#pragma unroll
        for (int k = 0; k < 8; ++k) e[k] = FromF<StateT>(h[j + k]);
        *reinterpret_cast<uint4*>(p + j) = v;
      }
    }
    return;
  }
#pragma unroll
  for (int j = 0; j < 16; ++j)
    if (j < N) p[j] = FromF<StateT>(h[j]);
}

// 16 bf16 (kBf16) or fp16 values packed in two 16-byte words, to float.
template <bool kBf16>
__device__ __forceinline__ void Unpack16Bit(const uint4 (&w)[2], float* v) {
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const uint32_t ws[4] = {w[j].x, w[j].y, w[j].z, w[j].w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      if constexpr (kBf16) {
        v[8 * j + 2 * k] = __uint_as_float(ws[k] << 16);
        v[8 * j + 2 * k + 1] = __uint_as_float(ws[k] & 0xffff0000u);
      } else {
        const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&ws[k]));
        v[8 * j + 2 * k] = f.x, v[8 * j + 2 * k + 1] = f.y;
      }
    }
  }
}

// 16 values of B or C (fp32 or 16-bit) from `p`.
__device__ __forceinline__ void LoadBC16(const void* base, int dtype, int64_t off, bool vec, int N,
                                         float* v) {
  if (vec) {
    if (dtype == kF32) {
      const float4* q = reinterpret_cast<const float4*>(static_cast<const float*>(base) + off);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float4 w = q[j];
        v[4 * j] = w.x, v[4 * j + 1] = w.y, v[4 * j + 2] = w.z, v[4 * j + 3] = w.w;
      }
    } else {
      const uint4* q = reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(base) + off);
      const uint4 w[2] = {q[0], q[1]};
      // One branch around all 16 conversions: inside the loop the compiler predicated both
      // kinds, so every value paid for both.
      if (dtype == kBF16) {
        Unpack16Bit<true>(w, v);
      } else {
        Unpack16Bit<false>(w, v);
      }
    }
    return;
  }
#pragma unroll
  for (int j = 0; j < 16; ++j) v[j] = j < N ? LoadElem(base, dtype, off + j) : 0.0f;
}

// Channel d's row of A (N <= 16 values, zero-padded to 16), prepared for kMode.
template <Discretization kMode>
__device__ __forceinline__ void LoadA16(const DecodeArgs& a, int64_t d, int N, float* Ar) {
  if (a.row_vec_A) {
    const float4* q = reinterpret_cast<const float4*>(a.A + d * 16);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float4 w = q[j];
      Ar[4 * j] = PrepareA<kMode>(w.x), Ar[4 * j + 1] = PrepareA<kMode>(w.y);
      Ar[4 * j + 2] = PrepareA<kMode>(w.z), Ar[4 * j + 3] = PrepareA<kMode>(w.w);
    }
  } else {
#pragma unroll
    for (int j = 0; j < 16; ++j) Ar[j] = j < N ? PrepareA<kMode>(a.A[d * N + j]) : 0.0f;
  }
}

// Each thread updates its channel in kSeqs sequences: their state rows (and the sequences' block
// indices before them) are requested together, so more bytes are in flight per thread, and the
// channel's constants (A, dt bias, D) are loaded once for all of them.
template <Discretization kMode, typename StateT, int kSeqs>
__global__ void __launch_bounds__(128) Mamba1DecodeRowKernel(const DecodeArgs a) {
  AllowNextKernelLaunch();  // dependents still wait for this kernel before reading its outputs
  if (!a.early_state) WaitForPreviousKernels();
  const int64_t d = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (d >= a.D) return;  // no cross-thread communication below
  const int N = static_cast<int>(a.N);
  const int64_t g = d / a.dpg;
  StateT* pool = static_cast<StateT*>(a.pool);
  const int64_t b0 = static_cast<int64_t>(blockIdx.y) * kSeqs;
  int64_t in_blk[kSeqs];
#pragma unroll
  for (int s = 0; s < kSeqs; ++s) in_blk[s] = b0 + s < a.batch ? a.blk_in[b0 + s] : 0;
  float h[kSeqs][16];
#pragma unroll
  for (int s = 0; s < kSeqs; ++s) {
    if (in_blk[s] != 0) {
      LoadRow16<StateT>(pool + in_blk[s] * a.block_stride + d * N, a.row_vec_state, N, h[s]);
    } else {
#pragma unroll
      for (int j = 0; j < 16; ++j) h[s][j] = 0.0f;
    }
  }
  float Ar[16];
  LoadA16<kMode>(a, d, N, Ar);
  const float bias = a.delta_bias ? a.delta_bias[d] : 0.0f;
  const float spb = kMode == Discretization::kEventDriven ? DevSoftplus(a.bias_A[d]) : 0.0f;
  const float Dd = a.Dv ? a.Dv[d] : 0.0f;
  if (a.early_state) WaitForPreviousKernels();  // the token inputs are earlier kernels' outputs
#pragma unroll
  for (int s = 0; s < kSeqs; ++s) {
    const int64_t b = b0 + s;
    if (b >= a.batch) break;
    for (int64_t t = 0; t < a.tokens; ++t) {
      const int64_t r = b * a.tokens + t;
      const TokenScalars ts = LoadTokenScalars<kMode>(a, r, d, bias, spb);
      const float u = ts.u;
      float Bv[16], Cv[16];
      LoadBC16(a.B, a.bc_dt, r * a.B_rs + g * a.B_gs, a.row_vec_bc, N, Bv);
      LoadBC16(a.C, a.bc_dt, r * a.C_rs + g * a.C_gs, a.row_vec_bc, N, Cv);
      float yp = 0.0f;
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        if (j < N) {
          h[s][j] = StepState<kMode>(h[s][j], Ar[j], Bv[j], ts);
          yp = fmaf(Cv[j], h[s][j], yp);
        }
      }
      float yv = yp + Dd * u;
      if (a.z) yv *= DevSilu(LoadElem(a.z, a.x_dt, r * a.z_rs + d));
      StoreElem(a.y, a.x_dt, r * a.y_rs + d, yv);
      if (a.blk_out) {
        const int64_t ob = a.blk_out[r];
        if (ob != 0) {
          StoreRow16<StateT>(pool + ob * a.block_stride + d * N, a.row_vec_state, N, h[s]);
        }
      }
    }
    if (!a.blk_out && in_blk[s] != 0) {
      StoreRow16<StateT>(pool + in_blk[s] * a.block_stride + d * N, a.row_vec_state, N, h[s]);
    }
  }
}

// Streamed decode (N = 16, one token per sequence, 16-byte aligned rows; the common serving
// case). A grid that fits the GPU at once walks (sequence, tile of 128 channels) items, one
// channel per thread. Each item's state tile and token inputs are staged in shared memory with
// cp.async kStages - 1 items ahead, so the state reads of the next items are in flight while a
// thread computes and stores the current one (the row kernel has only its own two rows in
// flight and waits for them). The grid is a multiple of the tile count, so a block keeps one
// tile and its channels' constants stay in registers.
// Stages: with the coalesced stores below, 2 (one item in flight while one is computed)
// measured 2-3% faster than 3 and 4 at B = 64-256 on an H100, 6 slower; with the block indices
// preloaded, 3 and 2 measure the same (bench/RESULTS_mamba1.md).
constexpr int kStreamStages = 2;

// The shared-memory byte offset of 16-byte unit u of a staged tile's state rows (rows of
// 2^st_units_log2 units, st_row_smem bytes apart): the cp.async copies in and the stores out.
__device__ __forceinline__ int StagedUnitOffset(const DecodeArgs& a, int u) {
  return (u >> a.st_units_log2) * a.st_row_smem + (u & ((1 << a.st_units_log2) - 1)) * 16;
}

// 5 blocks of 128 threads per SM (<= 102 registers: no spills; a stage takes 11-12 KB of
// shared memory).
template <Discretization kMode, typename StateT, int kStages>
__global__ void __launch_bounds__(128, 5) Mamba1DecodeStreamKernel(const DecodeArgs a) {
  extern __shared__ __align__(16) char smem[];
  constexpr int kThreads = 128;
  const int tid = threadIdx.x;
  // tau, preloaded with the block indices below, is an input like u: no early start with it.
  const bool early = a.early_state && kMode != Discretization::kEventDriven;
  AllowNextKernelLaunch();  // dependents still wait for this kernel before reading its outputs
  if (!early) WaitForPreviousKernels();
  const int64_t tiles = a.tiles;
  const int64_t d0 = (blockIdx.x % tiles) * kThreads;
  const int valid = static_cast<int>(min(static_cast<int64_t>(kThreads), a.D - d0));
  const bool ch_valid = tid < valid;
  const int64_t d = d0 + min(tid, valid - 1);  // clamped for reads; lanes past D store nothing
  const int64_t g = d0 / a.dpg;                // a tile lies inside one group (launch checks)
  StateT* pool = static_cast<StateT*>(a.pool);

  // The channel's constants first: their loads overlap the index reads below.
  float Ar[16];
  LoadA16<kMode>(a, d, 16, Ar);
  const float bias = a.delta_bias ? a.delta_bias[d] : 0.0f;
  const float spb = kMode == Discretization::kEventDriven ? DevSoftplus(a.bias_A[d]) : 0.0f;
  const float Dd = a.Dv ? a.Dv[d] : 0.0f;

  // The block's items are (sequence b0 + k * m, this tile) for k < my_items: the grid is a
  // multiple of the tile count, m = gridDim.x / tiles sequences apart. Their block indices (and
  // tau) are read into shared memory once, at the start: loaded from global memory an item
  // ahead, they still stalled the loop (the compiler moves a loaded index into a uniform
  // register at once, ncu at b = 256).
  const int64_t m = gridDim.x / tiles;
  const int64_t b0 = blockIdx.x / tiles;
  const int my_items = static_cast<int>((a.batch - b0 + m - 1) / m);
  int32_t* const s_in = reinterpret_cast<int32_t*>(smem + kStages * a.stage_bytes);
  int32_t* const s_out = s_in + a.max_items;
  float* const s_tau = reinterpret_cast<float*>(s_out + a.max_items);
  for (int k = tid; k < my_items; k += kThreads) {
    const int64_t b = b0 + k * m;
    s_in[k] = a.blk_in[b];
    s_out[k] = a.blk_out ? a.blk_out[b] : s_in[k];
    if (kMode == Discretization::kEventDriven) s_tau[k] = a.tau[b];
  }
  __syncthreads();

  // Item k's copies into `stage`: its state tile, then its token inputs (the previous kernels'
  // outputs), then the commit.
  auto issue_state = [&](int k, int stage) {
    if (k < my_items) {
      char* st = smem + stage * a.stage_bytes;
      const int64_t blk = s_in[k];
      if (blk != 0) {
        const char* src = reinterpret_cast<const char*>(pool + blk * a.block_stride + d0 * 16);
        const int units = valid << a.st_units_log2;
        for (int u = tid; u < units; u += kThreads) {
          CpAsync16(st + StagedUnitOffset(a, u), src + u * 16);
        }
      }
    }
  };
  auto issue_inputs = [&](int k, int stage) {
    if (k < my_items) {
      char* st = smem + stage * a.stage_bytes;
      const int64_t b = b0 + k * m;
      const int esx = a.x_dt == kF32 ? 4 : 2, esbc = a.bc_dt == kF32 ? 4 : 2;
      const int esd = a.delta_dt == kF32 ? 4 : 2;
      // D * esx and D * esd are multiples of 16 (launch checks).
      const int x_units = (valid * esx) >> 4, d_units = (valid * esd) >> 4;
      const char* u_src = static_cast<const char*>(a.u) + (b * a.u_rs + d0) * esx;
      const char* dl_src = static_cast<const char*>(a.delta) + (b * a.delta_rs + d0) * esd;
      for (int u = tid; u < d_units; u += kThreads) {
        CpAsync16(st + a.off_delta + u * 16, dl_src + u * 16);
      }
      for (int u = tid; u < x_units; u += kThreads) {
        CpAsync16(st + a.off_u + u * 16, u_src + u * 16);
        if (a.z) {
          CpAsync16(st + a.off_z + u * 16,
                    static_cast<const char*>(a.z) + (b * a.z_rs + d0) * esx + u * 16);
        }
      }
      if (tid < a.bc_units) {
        CpAsync16(st + a.off_B + tid * 16,
                  static_cast<const char*>(a.B) + (b * a.B_rs + g * a.B_gs) * esbc + tid * 16);
        CpAsync16(st + a.off_C + tid * 16,
                  static_cast<const char*>(a.C) + (b * a.C_rs + g * a.C_gs) * esbc + tid * 16);
      }
    }
    CpAsyncCommit();  // possibly empty: every thread counts the same groups
  };

  auto issue = [&](int k, int stage) {
    issue_state(k, stage);
    issue_inputs(k, stage);
  };

  // With early_state the first item's state tile is requested before the wait, so its DRAM
  // latency overlaps the kernels before this one (the grid is resident at once).
  issue_state(0, 0);
  if (early) WaitForPreviousKernels();
  issue_inputs(0, 0);
#pragma unroll
  for (int s = 1; s < kStages - 1; ++s) issue(s, s);
  int stage = 0;
  for (int k = 0; k < my_items; ++k) {
    CpAsyncWait<kStages - 2>();  // this thread's copies of item k have landed
    __syncthreads();             // everyone's have; and the stage refilled below is spent
    issue(k + kStages - 1, stage == 0 ? kStages - 1 : stage - 1);
    char* st = smem + stage * a.stage_bytes;
    stage = stage + 1 == kStages ? 0 : stage + 1;

    const int64_t b = b0 + k * m;
    const int64_t blk = s_in[k];
    const int64_t ob = s_out[k];
    float h[16];
    if (blk != 0) {
      LoadRow16<StateT>(reinterpret_cast<const StateT*>(st + tid * a.st_row_smem), true, 16, h);
    } else {
#pragma unroll
      for (int j = 0; j < 16; ++j) h[j] = 0.0f;
    }
    const float u = LoadElem(st + a.off_u, a.x_dt, tid);
    const float dl = LoadElem(st + a.off_delta, a.delta_dt, tid);
    const float ev = kMode == Discretization::kEventDriven ? s_tau[k] * spb : 0.0f;
    const TokenScalars ts = MakeTokenScalars<kMode>(dl, bias, a.softplus, u, ev);
    float Bv[16], Cv[16];
    LoadBC16(st + a.off_B, a.bc_dt, 0, true, 16, Bv);
    LoadBC16(st + a.off_C, a.bc_dt, 0, true, 16, Cv);
    float yp = 0.0f;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      h[j] = StepState<kMode>(h[j], Ar[j], Bv[j], ts);
      yp = fmaf(Cv[j], h[j], yp);
    }
    if (ch_valid) {
      float yv = yp + Dd * u;
      if (a.z) yv *= DevSilu(LoadElem(st + a.off_z, a.x_dt, tid));
      StoreElem(a.y, a.x_dt, b * a.y_rs + d, yv);
    }
    // The new state goes back through the staged rows, so that the tile leaves in coalesced
    // 16-byte stores (a thread's own row would take four stores 64 bytes apart, twice the L2
    // requests). Each warp stores its own 32 rows, which are contiguous in the pool, so a warp
    // barrier suffices (a block barrier here was 9% of the stall samples, ncu at b = 256). The
    // stage is refilled only after the next iteration's block barrier.
    if (ob != 0) {  // uniform over the block
      StoreRow16<StateT>(reinterpret_cast<StateT*>(st + tid * a.st_row_smem), true, 16, h);
      __syncwarp();
      char* dst = reinterpret_cast<char*>(pool + ob * a.block_stride + d0 * 16);
      const int row0 = tid & ~31;
      const int units = min(valid, row0 + 32) << a.st_units_log2;
      for (int u = (row0 << a.st_units_log2) + (tid & 31); u < units; u += 32) {
        // Evict-first: the next read of this state is the next decode step's, after the whole
        // batch has streamed through L2 (2-6% faster at b = 16-64 on an H100).
        __stcs(reinterpret_cast<uint4*>(dst + u * 16),
               *reinterpret_cast<const uint4*>(st + StagedUnitOffset(a, u)));
      }
    }
  }
  CpAsyncWait<0>();
}

// Per-item values the streamed kernel keeps in shared memory: input and output block index and
// tau. Batches that would need more (over 1024 items a block: > 16,000 sequences at d_inner
// 5120) take the row kernel.
constexpr int kStreamItemBytes = 12;
constexpr int kMaxStreamItemBytes = 12 * 1024;

// Launches the streamed kernel; false (nothing launched) when the batch is too large for it.
template <Discretization kMode, typename StateT>
absl::StatusOr<bool> LaunchStream(const DecodeArgs& a0, cudaStream_t st) {
  auto kernel = Mamba1DecodeStreamKernel<kMode, StateT, kStreamStages>;
  // Occupancy is planned for the largest per-item area; smaller batches use less of it.
  const int stages_bytes = kStreamStages * a0.stage_bytes;
  const int max_smem = stages_bytes + kMaxStreamItemBytes;
  if (max_smem > 48 * 1024) {  // not for the 16-state rows eligible today (<= 36 KB); general
    CUDA_RETURN_IF_ERROR(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, max_smem));
  }
  ASSIGN_OR_RETURN(const int64_t resident,
                   ResidentBlocks(reinterpret_cast<const void*>(kernel), 128, max_smem));
  const int64_t items = a0.batch * a0.tiles;
  const int64_t blocks = std::min(items, a0.tiles * std::max<int64_t>(1, resident / a0.tiles));
  const int64_t m = blocks / a0.tiles;  // sequences between a block's consecutive items
  const int64_t max_items = (a0.batch + m - 1) / m;
  if (max_items * kStreamItemBytes > kMaxStreamItemBytes) return false;
  DecodeArgs a = a0;
  a.max_items = static_cast<int>(max_items);
  const int smem = stages_bytes + static_cast<int>(max_items) * kStreamItemBytes;
  CUDA_RETURN_IF_ERROR(
      LaunchDependent(kernel, dim3(static_cast<unsigned>(blocks)), dim3(128), smem, st, a));
  return true;
}

template <Discretization kMode, int kNPT, typename StateT>
absl::Status Launch(const DecodeArgs& a, dim3 grid, int threads, cudaStream_t st) {
  if (a.stage_bytes > 0) {
    ASSIGN_OR_RETURN(const bool launched, (LaunchStream<kMode, StateT>(a, st)));
    if (launched) return absl::OkStatus();
  }
  if (a.N <= 16) {
    const int rt = 128;
    constexpr int kSeqs = 2;
    dim3 rgrid(static_cast<unsigned>((a.D + rt - 1) / rt),
               static_cast<unsigned>((a.batch + kSeqs - 1) / kSeqs));
    CUDA_RETURN_IF_ERROR(
        LaunchDependent(Mamba1DecodeRowKernel<kMode, StateT, kSeqs>, rgrid, dim3(rt), 0, st, a));
  } else {
    CUDA_RETURN_IF_ERROR(
        LaunchDependent(Mamba1DecodeKernel<kMode, kNPT, StateT>, grid, dim3(threads), 0, st, a));
  }
  return absl::OkStatus();
}

template <int kNPT, typename StateT>
absl::Status LaunchMode(Discretization mode, const DecodeArgs& a, dim3 grid, int threads,
                        cudaStream_t st) {
  switch (mode) {
    case Discretization::kDefault:
      return Launch<Discretization::kDefault, kNPT, StateT>(a, grid, threads, st);
    case Discretization::kZoh:
      return Launch<Discretization::kZoh, kNPT, StateT>(a, grid, threads, st);
    case Discretization::kBilinear:
      return Launch<Discretization::kBilinear, kNPT, StateT>(a, grid, threads, st);
    case Discretization::kDirac:
      return Launch<Discretization::kDirac, kNPT, StateT>(a, grid, threads, st);
    case Discretization::kEventDriven:
      return Launch<Discretization::kEventDriven, kNPT, StateT>(a, grid, threads, st);
  }
  return absl::InvalidArgumentError("mamba1_state_update: unknown discretization");
}

template <int kNPT>
absl::Status LaunchState(DType state_dtype, Discretization mode, const DecodeArgs& a, dim3 grid,
                         int threads, cudaStream_t st) {
  switch (state_dtype) {
    case DType::kF32:
      return LaunchMode<kNPT, float>(mode, a, grid, threads, st);
    case DType::kBF16:
      return LaunchMode<kNPT, __nv_bfloat16>(mode, a, grid, threads, st);
    case DType::kF16:
      return LaunchMode<kNPT, __half>(mode, a, grid, threads, st);
  }
  return absl::InvalidArgumentError("mamba1_state_update: bad state dtype");
}

}  // namespace

absl::Status RunMamba1StateUpdateCuda(const Mamba1StateUpdateParams& p, const Stream& stream) {
  MS_CHECK_ARG(p.batch <= 65535, "mamba1_state_update (CUDA): at most 65535 sequences per call");
  cudaStream_t st = static_cast<cudaStream_t>(stream.handle());
  DecodeArgs a{};
  a.batch = p.batch;
  a.D = p.dim;
  a.N = p.d_state;
  a.dpg = p.dim / p.n_groups;
  a.tokens = 1 + p.num_spec;
  a.x_dt = static_cast<int>(p.x_dtype);
  a.bc_dt = static_cast<int>(p.bc_dtype);
  const DType delta_dtype = p.delta_dtype.value_or(p.x_dtype);
  a.delta_dt = static_cast<int>(delta_dtype);
  a.u = p.u;
  a.u_rs = p.u_row_stride;
  a.delta = p.delta;
  a.delta_rs = p.delta_row_stride;
  a.delta_bias = p.delta_bias;
  a.softplus = p.delta_softplus;
  a.A = p.A;
  a.B = p.B;
  a.B_rs = p.B_row_stride;
  a.B_gs = p.B_group_stride;
  a.C = p.C;
  a.C_rs = p.C_row_stride;
  a.C_gs = p.C_group_stride;
  a.Dv = p.D;
  a.z = p.z;
  a.z_rs = p.z_row_stride;
  a.y = p.y;
  a.y_rs = p.y_row_stride;
  a.tau = p.tau;
  a.bias_A = p.bias_A;
  a.pool = p.state_pool;
  a.block_stride = p.state_block_stride > 0 ? p.state_block_stride : p.dim * p.d_state;
  a.blk_in = p.state_block_in;
  a.blk_out = p.state_block_out;
  a.early_state = p.read_state_before_wait;
  const int npt = p.d_state <= 128 ? 4 : 8;
  int tpc = 1;
  while (tpc * npt < p.d_state) tpc *= 2;
  int log2 = 0;
  while ((1 << log2) < tpc) ++log2;
  a.tpc_log2 = log2;
  const int64_t es = DTypeSize(p.state_dtype);
  const int64_t vec_bytes = npt * es;  // 16/32 bytes (fp32) or 8/16 (16-bit)
  const int64_t align = std::min<int64_t>(vec_bytes, 16);
  a.vec_state = p.d_state % npt == 0 && (a.block_stride * es) % align == 0 &&
                reinterpret_cast<uintptr_t>(p.state_pool) % align == 0;
  auto aligned16 = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  a.row_vec_state = p.d_state == 16 && (a.block_stride * es) % 16 == 0 && aligned16(p.state_pool);
  a.row_vec_A = p.d_state == 16 && aligned16(p.A);
  const int64_t esbc = DTypeSize(p.bc_dtype);
  a.row_vec_bc = p.d_state == 16 && aligned16(p.B) && aligned16(p.C) &&
                 (p.B_row_stride * esbc) % 16 == 0 && (p.C_row_stride * esbc) % 16 == 0 &&
                 (p.n_groups == 1 ||
                  ((p.B_group_stride * esbc) % 16 == 0 && (p.C_group_stride * esbc) % 16 == 0));
  // The streamed kernel's eligibility and shared-memory stage (a.stage_bytes = 0: not eligible).
  auto rows_ok = [&](const void* ptr, int64_t row_stride, DType dtype) {
    const int64_t e = DTypeSize(dtype);
    return aligned16(ptr) && (row_stride * e) % 16 == 0 && (p.dim * e) % 16 == 0;
  };
  const int64_t dpg = p.dim / p.n_groups;
  if (p.d_state == 16 && a.tokens == 1 && a.row_vec_state && a.row_vec_bc &&
      (p.n_groups == 1 || dpg % 128 == 0) && rows_ok(p.u, p.u_row_stride, p.x_dtype) &&
      rows_ok(p.delta, p.delta_row_stride, delta_dtype) &&
      (!p.z || rows_ok(p.z, p.z_row_stride, p.x_dtype))) {
    const int esx = static_cast<int>(DTypeSize(p.x_dtype));
    const int esd = static_cast<int>(DTypeSize(delta_dtype));
    const int st_row = 16 * static_cast<int>(es);
    a.tiles = (p.dim + 127) / 128;
    a.st_units_log2 = st_row == 64 ? 2 : 1;
    a.st_row_smem = st_row + 16;
    a.bc_units = static_cast<int>(esbc);  // 16 values of esbc bytes
    a.off_u = 128 * a.st_row_smem;
    a.off_delta = a.off_u + 128 * esx;
    a.off_z = a.off_delta + 128 * esd;
    a.off_B = a.off_z + 128 * esx;
    a.off_C = a.off_B + 16 * static_cast<int>(esbc);
    a.stage_bytes = (a.off_C + 16 * static_cast<int>(esbc) + 15) / 16 * 16;
  }
  const int threads = 256;
  const int cpb = threads / tpc;
  dim3 grid(static_cast<unsigned>((p.dim + cpb - 1) / cpb), static_cast<unsigned>(p.batch));
  if (npt == 4) return LaunchState<4>(p.state_dtype, p.mode, a, grid, threads, st);
  return LaunchState<8>(p.state_dtype, p.mode, a, grid, threads, st);
}

}  // namespace mambaserve
