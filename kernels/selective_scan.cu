// CUDA Mamba-1 selective scan (prefill).
//
// Design: one thread block per (sequence, channel tile). A channel's N states are spread over a
// group of `tpc` lanes (kNPT states each, in registers); a warp holds cpw = 32 / tpc channels. A
// block has `cw` warps side by side over channels and `tw` warps along time. It walks its
// sequence in chunks: the raw rows of u, delta, z, B and C of chunk c + 1 are copied into shared
// memory with cp.async while chunk c is computed (double buffering), then converted once per
// (token, channel) into fp32 scalars (dt_in, dt_decay, dt_in * u, u) and once per (token, n) into
// fp32 B and C shared by the tile's channels.
//
// Time warps give a small batch of long sequences enough parallelism: the chunk's rows are cut
// into one segment per time warp (warp 0's of seg0 rows, the others' of kT). Warp 0 continues the
// recurrence from the carried state. Every other warp scans its segment from a zero state and
// keeps, per row and state, the product P of the decays since the segment start (kT x kNPT
// registers) and its partial y. After a barrier each warp composes the aggregates of the
// segments before it (h <- P_end h + h_end) into its true starting state h_in and adds
// C_t P_t h_in to its y: one exponential per element, as in the sequential scan. A segment that is
// partial (the sequence's last chunk) or holds a block boundary (whose state prefix caching
// stores) is instead scanned twice, for its aggregate and then again from h_in. With tw = 1 (large
// batches) the kernel is the plain sequential scan.
// y is reduced across the lane group through shared memory; the epilogue adds D u, applies the
// silu(z) gate and stores y.
#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/cuda_status.h"
#include "core/resident_blocks.h"
#include "core/status_macros.h"
#include "kernels/selective_scan.h"
#include "kernels/selective_scan_cuda.h"

namespace mambaserve {
namespace {

using namespace scan_cuda;

struct ScanArgs {
  int64_t D, N, dpg;
  const int32_t* cu;
  int x_dt, bc_dt, st_dt, esx, esbc;
  const char* u;
  int64_t u_rs;
  const char* delta;
  int64_t delta_rs;
  const float* delta_bias;
  bool softplus;
  const float* A;
  const char* B;
  int64_t B_rs, B_gs;
  const char* C;
  int64_t C_rs, C_gs;
  const float* Dv;
  const char* z;
  int64_t z_rs;
  char* y;
  int64_t y_rs;
  const float* tau;
  const float* bias_A;
  void* pool;
  int64_t block_stride;
  const int32_t* init_blk;
  const int32_t* final_blk;
  int64_t block_size;
  const int64_t* prefix;
  const int32_t* bnd;
  int64_t bnd_stride;
  // Geometry (see the kernel): lanes per channel (log2), channels per warp, channel warps, time
  // warps, rows of time warp 0's segment, rows per chunk, states per channel padded to lanes.
  int tpc_log2, cpw, cw, tw, seg0, K, npad;
  bool bc_vec;  // B/C rows convert in 16-byte units (N == npad, N * esbc % 16 == 0)
  int vec_u, vec_delta, vec_z, vec_B, vec_C;
  int seg_x, seg_bc;  // bytes of one raw row in shared memory (multiples of 16)
  // Shared memory: two stages of raw rows, then the converted rows, the partial sums of y, the
  // time warps' aggregates and the carried state.
  int raw_stage_bytes, off_par, off_B, off_C, off_yp, off_agg, off_carry;
  // Per copied array: log2 of the units per row when that is a power of two <= 32, else -1.
  int upr_log2_x, upr_log2_delta, upr_log2_z, upr_log2_B, upr_log2_C;
};

__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void CpAsync8(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void CpAsync4(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void CpAsyncWait1() { asm volatile("cp.async.wait_group 1;\n" ::); }

// Copies `rows` rows of `row_bytes` bytes (src rows `src_rs` bytes apart, dst rows `dst_rs`
// apart) in units of `vec` bytes: 16/8/4 asynchronously, 2 synchronously.
__device__ __forceinline__ void CopyUnit(char* d, const char* s, int vec) {
  if (vec == 16) {
    CpAsync16(d, s);
  } else if (vec == 8) {
    CpAsync8(d, s);
  } else if (vec == 4) {
    CpAsync4(d, s);
  } else {
    *reinterpret_cast<uint16_t*>(d) = *reinterpret_cast<const uint16_t*>(s);
  }
}

// A row of 2^upr_log2 units (upr_log2 >= 0, at most 32 units) gives every thread a fixed unit of
// every (nthreads >> upr_log2)-th row, found with shifts; other rows take the general loop. The
// copy is issued once per chunk for each array, so its index arithmetic matters.
__device__ __forceinline__ void CopyRows(char* dst, int dst_rs, const char* src, int64_t src_rs,
                                         int rows, int row_bytes, int vec, int upr_log2, int tid,
                                         int nthreads) {
  if (upr_log2 >= 0) {
    const int off = (tid & ((1 << upr_log2) - 1)) * vec, step = nthreads >> upr_log2;
    for (int r = tid >> upr_log2; r < rows; r += step) {
      CopyUnit(dst + r * dst_rs + off, src + r * src_rs + off, vec);
    }
    return;
  }
  const int upr = row_bytes / vec;
  const int total = rows * upr;
  for (int i = tid; i < total; i += nthreads) {
    const int r = i / upr, k = i - r * upr;
    CopyUnit(dst + r * dst_rs + k * vec, src + r * src_rs + k * vec, vec);
  }
}

// ---------------------------------------------------------------------------------------------
// The prefill kernel. Work outside the recurrence is kept cheap (every thread converts and
// finishes a fixed channel with its constants in registers; the element type is dispatched once
// per chunk; the recurrence loops have no shuffles and no per-token branches: each lane stores its
// partial y to shared memory and the epilogue sums the tpc partials, and boundary states split
// the loop into segments instead of being tested per token).

__device__ __forceinline__ float ToF(float v) { return v; }
__device__ __forceinline__ float ToF(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float ToF(__half v) { return __half2float(v); }
template <typename T>
__device__ __forceinline__ T FromF(float v);
template <>
__device__ __forceinline__ float FromF<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromF<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half FromF<__half>(float v) {
  return __float2half_rn(v);
}

template <Discretization kMode, typename XT>
__device__ __forceinline__ void ConvertChunk(const ScanArgs& a, const char* ru, const char* rd,
                                             float4* s_par, int rows, int cpb, int cc, int rstep,
                                             int x_row, float bias, float spb, int64_t tok0) {
  const XT* u = reinterpret_cast<const XT*>(ru);
  const XT* dl = reinterpret_cast<const XT*>(rd);
#pragma unroll 4
  for (int t = threadIdx.x / cpb; t < rows; t += rstep) {
    const float uu = ToF(u[t * x_row + cc]);
    const float dd = ToF(dl[t * x_row + cc]);
    const float ev = kMode == Discretization::kEventDriven ? a.tau[tok0 + t] * spb : 0.0f;
    const TokenScalars ts = MakeTokenScalars<kMode>(dd, bias, a.softplus, uu, ev);
    s_par[t * cpb + cc] = make_float4(ts.dt_in, ts.dt_decay, ts.xin, ts.u);
  }
}

template <typename XT>
__device__ __forceinline__ void EpilogueChunk(const ScanArgs& a, const char* rz, const float* s_yp,
                                              const float4* s_par, int rows, int cpb, int cc,
                                              int rstep, int x_row, int tpc, float Dd, int64_t tok0,
                                              int64_t d) {
  XT* y = reinterpret_cast<XT*>(a.y);
  const XT* z = reinterpret_cast<const XT*>(rz);
#pragma unroll 4
  for (int t = threadIdx.x / cpb; t < rows; t += rstep) {
    const float* yp = s_yp + (t * cpb + cc) * tpc;
    float yv;
    if (tpc == 4) {
      const float4 v = *reinterpret_cast<const float4*>(yp);
      yv = (v.x + v.y) + (v.z + v.w);
    } else {
      yv = 0.0f;
      for (int k = 0; k < tpc; ++k) yv += yp[k];
    }
    yv = fmaf(Dd, s_par[t * cpb + cc].w, yv);
    if (a.z) yv *= DevSilu(ToF(z[t * x_row + cc]));
    y[(tok0 + t) * a.y_rs + d] = FromF<XT>(yv);
  }
}

// What one lane of the recurrence owns: channel `cl` of the tile (global channel d) and the
// states sub * kNPT + j; where the chunk's converted rows are in shared memory.
struct RecurrenceLane {
  const float4* s_par;  // [K][cpb]: dt_in, dt_decay, xin, u
  const float* s_B;     // [K][npad]
  const float* s_C;
  float* s_yp;  // [K][cpb][tpc]: partial sums of y
  int cpb, cl, sub, tpc, npad;
  bool valid;  // a real channel, and the lane that owns it
  int seq, d, N;
  int64_t prefix;
};

template <int kNPT>
__device__ __forceinline__ void LoadRowBC(const RecurrenceLane& L, int t, float (&Bv)[kNPT],
                                          float (&Cv)[kNPT]) {
#pragma unroll
  for (int j = 0; j < kNPT; j += 4) {
    const float4 b4 = *reinterpret_cast<const float4*>(L.s_B + t * L.npad + L.sub * kNPT + j);
    const float4 c4 = *reinterpret_cast<const float4*>(L.s_C + t * L.npad + L.sub * kNPT + j);
    Bv[j] = b4.x, Bv[j + 1] = b4.y, Bv[j + 2] = b4.z, Bv[j + 3] = b4.w;
    Cv[j] = c4.x, Cv[j + 1] = c4.y, Cv[j + 2] = c4.z, Cv[j + 3] = c4.w;
  }
}

__device__ __forceinline__ TokenScalars LoadRowScalars(const RecurrenceLane& L, int t) {
  const float4 p = L.s_par[t * L.cpb + L.cl];
  return TokenScalars{p.x, p.y, p.z, p.w};
}

__device__ __forceinline__ void StorePartialY(const RecurrenceLane& L, int t, float yp) {
  if (L.valid) L.s_yp[(t * L.cpb + L.cl) * L.tpc + L.sub] = yp;
}

// The first sequence-local token index >= i after which a block boundary falls (the state there
// is cached), or INT64_MAX without boundary states.
__device__ __forceinline__ int64_t NextBoundary(const ScanArgs& a, int64_t prefix, int64_t i) {
  if (a.block_size <= 0) return INT64_MAX;
  const int64_t first = a.block_size - 1 - prefix % a.block_size;
  if (i <= first) return first;
  return first + (i - first + a.block_size - 1) / a.block_size * a.block_size;
}

template <int kNPT>
__device__ __forceinline__ void StoreStates(const ScanArgs& a, const RecurrenceLane& L,
                                            int64_t block, const float (&h)[kNPT]) {
  if (block == 0 || !L.valid) return;
#pragma unroll
  for (int j = 0; j < kNPT; ++j) {
    const int64_t n = L.sub * kNPT + j;
    if (n < L.N) StoreElem(a.pool, a.st_dt, block * a.block_stride + L.d * L.N + n, h[j]);
  }
}

// The state after sequence-local token i (a boundary) goes to its boundary block.
template <int kNPT>
__device__ __forceinline__ void StoreBoundaryState(const ScanArgs& a, const RecurrenceLane& L,
                                                   int64_t i, const float (&h)[kNPT]) {
  const int64_t j = (L.prefix + i + 1) / a.block_size - L.prefix / a.block_size - 1;
  StoreStates<kNPT>(a, L, a.bnd[L.seq * a.bnd_stride + j], h);
}

// Chunk rows [lo, hi) in order from state h: partial y of every row, boundary states on the way.
// `cs` is the chunk's first sequence-local token.
template <Discretization kMode, int kNPT>
__device__ __forceinline__ void ScanRows(const ScanArgs& a, const RecurrenceLane& L,
                                         float (&h)[kNPT], const float (&Ar)[kNPT], int lo, int hi,
                                         int64_t cs) {
  int t = lo;
  while (t < hi) {
    const int64_t nb = NextBoundary(a, L.prefix, cs + t);
    const bool hit = nb < cs + hi;
    const int end = hit ? static_cast<int>(nb - cs) + 1 : hi;
#pragma unroll 4
    for (; t < end; ++t) {
      const TokenScalars ts = LoadRowScalars(L, t);
      float Bv[kNPT], Cv[kNPT];
      LoadRowBC<kNPT>(L, t, Bv, Cv);
      float yp = 0.0f;
#pragma unroll
      for (int j = 0; j < kNPT; ++j) {
        h[j] = StepState<kMode>(h[j], Ar[j], Bv[j], ts);
        yp = fmaf(Cv[j], h[j], yp);
      }
      StorePartialY(L, t, yp);
    }
    if (hit) StoreBoundaryState<kNPT>(a, L, nb, h);
  }
}

// The aggregate of rows [lo, hi) from a zero state: the product of the decays and the end state,
// so that the end state from h_in is decay * h_in + h_end.
template <Discretization kMode, int kNPT>
__device__ __forceinline__ void ScanAggregate(const RecurrenceLane& L, const float (&Ar)[kNPT],
                                              int lo, int hi, float (&decay)[kNPT],
                                              float (&h_end)[kNPT]) {
#pragma unroll
  for (int j = 0; j < kNPT; ++j) decay[j] = 1.0f, h_end[j] = 0.0f;
  for (int t = lo; t < hi; ++t) {
    const TokenScalars ts = LoadRowScalars(L, t);
    float Bv[kNPT], Cv[kNPT];
    LoadRowBC<kNPT>(L, t, Bv, Cv);
#pragma unroll
    for (int j = 0; j < kNPT; ++j) {
      const float2 c = StepCoeffs<kMode>(Ar[j], Bv[j], ts);
      h_end[j] = fmaf(c.x, h_end[j], c.y);
      decay[j] *= c.x;
    }
  }
}

// kT rows from `lo` from a zero state: stores each row's partial y and keeps P[t][j], the product
// of the decays through row lo + t, which the correction for the true starting state needs.
template <Discretization kMode, int kNPT, int kT>
__device__ __forceinline__ void ScanSegmentLocal(const RecurrenceLane& L, const float (&Ar)[kNPT],
                                                 int lo, float (&P)[kT][kNPT],
                                                 float (&h_end)[kNPT]) {
  float prod[kNPT];
#pragma unroll
  for (int j = 0; j < kNPT; ++j) prod[j] = 1.0f, h_end[j] = 0.0f;
#pragma unroll
  for (int t = 0; t < kT; ++t) {
    const TokenScalars ts = LoadRowScalars(L, lo + t);
    float Bv[kNPT], Cv[kNPT];
    LoadRowBC<kNPT>(L, lo + t, Bv, Cv);
    float yp = 0.0f;
#pragma unroll
    for (int j = 0; j < kNPT; ++j) {
      const float2 c = StepCoeffs<kMode>(Ar[j], Bv[j], ts);
      h_end[j] = fmaf(c.x, h_end[j], c.y);
      prod[j] *= c.x;
      P[t][j] = prod[j];
      yp = fmaf(Cv[j], h_end[j], yp);
    }
    StorePartialY(L, lo + t, yp);
  }
}

// The true partial y of those rows, y + sum_j C[t][j] P[t][j] h_in[j]; h_end becomes the true end
// state.
template <int kNPT, int kT>
__device__ __forceinline__ void CorrectSegment(const RecurrenceLane& L, int lo,
                                               const float (&P)[kT][kNPT],
                                               const float (&h_in)[kNPT], float (&h_end)[kNPT]) {
#pragma unroll
  for (int t = 0; t < kT; ++t) {
    float Bv[kNPT], Cv[kNPT];
    LoadRowBC<kNPT>(L, lo + t, Bv, Cv);
    float* yp = L.s_yp + ((lo + t) * L.cpb + L.cl) * L.tpc + L.sub;
    float y = *yp;
#pragma unroll
    for (int j = 0; j < kNPT; ++j) y = fmaf(Cv[j], P[t][j] * h_in[j], y);
    if (L.valid) *yp = y;
  }
#pragma unroll
  for (int j = 0; j < kNPT; ++j) h_end[j] = fmaf(P[kT - 1][j], h_in[j], h_end[j]);
}

template <Discretization kMode, int kNPT>
__global__ void __launch_bounds__(256, 2) SelectiveScanKernel(const ScanArgs a) {
  constexpr int kT = 64 / kNPT;  // rows of a time warp's segment (P takes 64 registers)
  extern __shared__ __align__(16) char smem[];
  const int seq = blockIdx.y;
  const int t0 = a.cu[seq];
  const int len = a.cu[seq + 1] - t0;
  const int cpb = a.cpw * a.cw;
  const int c0 = static_cast<int>(blockIdx.x) * cpb;
  if (c0 >= a.D) return;
  const int valid_ch = static_cast<int>(min(static_cast<int64_t>(cpb), a.D - c0));
  const int tid = threadIdx.x, nthreads = blockDim.x;
  const int warp = tid >> 5, lane = tid & 31;
  const int cwi = warp % a.cw, twi = warp / a.cw;  // channel warp, time warp
  const int tpc = 1 << a.tpc_log2;
  const int slot = lane >> a.tpc_log2;
  const int64_t g = c0 / a.dpg;
  const int N = static_cast<int>(a.N);

  // The chunk's staged rows: written by the copy and convert stages, read by the lanes.
  float4* s_par = reinterpret_cast<float4*>(smem + a.off_par);
  float* s_B = reinterpret_cast<float*>(smem + a.off_B);
  float* s_C = reinterpret_cast<float*>(smem + a.off_C);
  RecurrenceLane L;
  L.s_par = s_par;
  L.s_B = s_B;
  L.s_C = s_C;
  L.s_yp = reinterpret_cast<float*>(smem + a.off_yp);
  L.cpb = cpb;
  L.cl = cwi * a.cpw + min(slot, a.cpw - 1);
  L.sub = lane & (tpc - 1);
  L.tpc = tpc;
  L.npad = a.npad;
  L.valid = slot < a.cpw && L.cl < valid_ch;
  L.seq = seq;
  L.d = c0 + L.cl;
  L.N = N;
  L.prefix = a.block_size > 0 ? a.prefix[seq] : 0;

  // The channel this thread converts and finishes, and its rows t = tid / cpb + k * rstep.
  const int cc = tid % cpb;
  const int rstep = nthreads / cpb;
  const bool cc_valid = cc < valid_ch;
  const float bias = (cc_valid && a.delta_bias) ? a.delta_bias[c0 + cc] : 0.0f;
  const float spb =
      (cc_valid && kMode == Discretization::kEventDriven) ? DevSoftplus(a.bias_A[c0 + cc]) : 0.0f;
  const float Dd = (cc_valid && a.Dv) ? a.Dv[c0 + cc] : 0.0f;

  // Per time warp and state element: (product of the segment's decays, its end state from 0).
  float2* s_agg = reinterpret_cast<float2*>(smem + a.off_agg);
  // The state carried from chunk to chunk (in shared memory rather than registers, which the
  // other time warps' P needs).
  float* s_carry = reinterpret_cast<float*>(smem + a.off_carry);
  const int elem = L.cl * a.npad + L.sub * kNPT;  // this lane's first element in s_agg/s_carry

  float Ar[kNPT];
  const int64_t in_blk = a.init_blk ? a.init_blk[seq] : 0;
#pragma unroll
  for (int j = 0; j < kNPT; ++j) {
    const int64_t n = L.sub * kNPT + j;
    const bool valid = L.valid && n < N;
    Ar[j] = valid ? PrepareA<kMode>(a.A[L.d * N + n]) : 0.0f;
    if (twi == 0 && L.valid) {
      s_carry[elem + j] = (valid && in_blk != 0)
                              ? LoadElem(a.pool, a.st_dt, in_blk * a.block_stride + L.d * N + n)
                              : 0.0f;
    }
  }
  const int K = a.K;
  auto raw_u = [&](int stage) { return smem + stage * a.raw_stage_bytes; };
  auto raw_delta = [&](int stage) { return raw_u(stage) + K * a.seg_x; };
  auto raw_z = [&](int stage) { return raw_u(stage) + 2 * K * a.seg_x; };
  auto raw_B = [&](int stage) { return raw_u(stage) + 3 * K * a.seg_x; };
  auto raw_C = [&](int stage) { return raw_B(stage) + K * a.seg_bc; };

  auto issue = [&](int cs, int stage) {
    const int rows = min(K, len - cs);
    const int64_t row0 = t0 + cs;
    CopyRows(raw_u(stage), a.seg_x, a.u + (row0 * a.u_rs + c0) * a.esx, a.u_rs * a.esx, rows,
             valid_ch * a.esx, a.vec_u, a.upr_log2_x, tid, nthreads);
    CopyRows(raw_delta(stage), a.seg_x, a.delta + (row0 * a.delta_rs + c0) * a.esx,
             a.delta_rs * a.esx, rows, valid_ch * a.esx, a.vec_delta, a.upr_log2_delta, tid,
             nthreads);
    if (a.z) {
      CopyRows(raw_z(stage), a.seg_x, a.z + (row0 * a.z_rs + c0) * a.esx, a.z_rs * a.esx, rows,
               valid_ch * a.esx, a.vec_z, a.upr_log2_z, tid, nthreads);
    }
    CopyRows(raw_B(stage), a.seg_bc, a.B + (row0 * a.B_rs + g * a.B_gs) * a.esbc, a.B_rs * a.esbc,
             rows, static_cast<int>(N) * a.esbc, a.vec_B, a.upr_log2_B, tid, nthreads);
    CopyRows(raw_C(stage), a.seg_bc, a.C + (row0 * a.C_rs + g * a.C_gs) * a.esbc, a.C_rs * a.esbc,
             rows, static_cast<int>(N) * a.esbc, a.vec_C, a.upr_log2_C, tid, nthreads);
  };

  // This time warp's rows of every chunk: warp 0 the first seg0, the others kT each.
  const int seg_lo = twi == 0 ? 0 : a.seg0 + (twi - 1) * kT;
  const int seg_len = twi == 0 ? a.seg0 : kT;

  const int num_chunks = (len + K - 1) / K;
  const int x_row = a.seg_x / a.esx, bc_row = a.seg_bc / a.esbc;
  if (num_chunks > 0) issue(0, 0);
  CpAsyncCommit();
  for (int c = 0; c < num_chunks; ++c) {
    const int cs = c * K;
    const int rows = min(K, len - cs);
    const int stage = static_cast<int>(c & 1);
    if (c + 1 < num_chunks) issue(cs + K, stage ^ 1);
    CpAsyncCommit();
    CpAsyncWait1();
    __syncthreads();
    // Convert.
    if (cc_valid) {
      if (a.x_dt == kBF16) {
        ConvertChunk<kMode, __nv_bfloat16>(a, raw_u(stage), raw_delta(stage), s_par, rows, cpb, cc,
                                           rstep, x_row, bias, spb, t0 + cs);
      } else if (a.x_dt == kF16) {
        ConvertChunk<kMode, __half>(a, raw_u(stage), raw_delta(stage), s_par, rows, cpb, cc, rstep,
                                    x_row, bias, spb, t0 + cs);
      } else {
        ConvertChunk<kMode, float>(a, raw_u(stage), raw_delta(stage), s_par, rows, cpb, cc, rstep,
                                   x_row, bias, spb, t0 + cs);
      }
    }
    {
      const char* rb = raw_B(stage);
      const char* rc = raw_C(stage);
      if (a.bc_vec) {
        const int upr = a.seg_bc / 16;  // 16-byte units per row (N == npad here)
        const int per = 16 / a.esbc;    // values per unit
        const int total = rows * upr;
        for (int i = tid; i < total; i += nthreads) {
          const int t = i / upr, k = i - t * upr;
          const uint4 vb = *reinterpret_cast<const uint4*>(rb + t * a.seg_bc + k * 16);
          const uint4 vc = *reinterpret_cast<const uint4*>(rc + t * a.seg_bc + k * 16);
          float* db = s_B + t * a.npad + k * per;
          float* dc = s_C + t * a.npad + k * per;
          if (a.esbc == 4) {
            *reinterpret_cast<uint4*>(db) = vb;
            *reinterpret_cast<uint4*>(dc) = vc;
          } else {
            const uint32_t wb[4] = {vb.x, vb.y, vb.z, vb.w};
            const uint32_t wc[4] = {vc.x, vc.y, vc.z, vc.w};
            float fb[8], fc[8];
#pragma unroll
            for (int q = 0; q < 4; ++q) {
              if (a.bc_dt == kBF16) {
                fb[2 * q] = __uint_as_float(wb[q] << 16);
                fb[2 * q + 1] = __uint_as_float(wb[q] & 0xffff0000u);
                fc[2 * q] = __uint_as_float(wc[q] << 16);
                fc[2 * q + 1] = __uint_as_float(wc[q] & 0xffff0000u);
              } else {
                const __half2 hb = *reinterpret_cast<const __half2*>(&wb[q]);
                const __half2 hc = *reinterpret_cast<const __half2*>(&wc[q]);
                const float2 b2 = __half22float2(hb), c2 = __half22float2(hc);
                fb[2 * q] = b2.x, fb[2 * q + 1] = b2.y;
                fc[2 * q] = c2.x, fc[2 * q + 1] = c2.y;
              }
            }
            *reinterpret_cast<float4*>(db) = make_float4(fb[0], fb[1], fb[2], fb[3]);
            *reinterpret_cast<float4*>(db + 4) = make_float4(fb[4], fb[5], fb[6], fb[7]);
            *reinterpret_cast<float4*>(dc) = make_float4(fc[0], fc[1], fc[2], fc[3]);
            *reinterpret_cast<float4*>(dc + 4) = make_float4(fc[4], fc[5], fc[6], fc[7]);
          }
        }
      } else {
        for (int i = tid; i < rows * a.npad; i += nthreads) {
          const int t = i / a.npad, n = i - t * a.npad;
          s_B[i] = n < N ? LoadElem(rb, a.bc_dt, t * bc_row + n) : 0.0f;
          s_C[i] = n < N ? LoadElem(rc, a.bc_dt, t * bc_row + n) : 0.0f;
        }
      }
    }
    __syncthreads();
    // The recurrence. Phase 1: warp 0 scans its rows from the carried state; every other time
    // warp scans its segment from zero (a full segment without a boundary keeps P and y_local
    // for the correction; any other only its aggregate).
    const int lo = seg_lo, hi = min(seg_lo + seg_len, rows);
    const int last_warp = rows <= a.seg0 ? 0 : 1 + (rows - a.seg0 - 1) / kT;
    float P[kT][kNPT], decay[kNPT], h_end[kNPT];
    bool full = false;
    if (lo < hi) {
      if (twi == 0) {
#pragma unroll
        for (int j = 0; j < kNPT; ++j) h_end[j] = s_carry[elem + j];
        ScanRows<kMode, kNPT>(a, L, h_end, Ar, lo, hi, cs);
#pragma unroll
        for (int j = 0; j < kNPT; ++j) decay[j] = 0.0f;
        if (last_warp == 0 && L.valid) {
#pragma unroll
          for (int j = 0; j < kNPT; ++j) s_carry[elem + j] = h_end[j];
        }
      } else {
        full = hi - lo == kT && NextBoundary(a, L.prefix, cs + lo) >= cs + hi;
        if (full) {
          ScanSegmentLocal<kMode, kNPT, kT>(L, Ar, lo, P, h_end);
#pragma unroll
          for (int j = 0; j < kNPT; ++j) decay[j] = P[kT - 1][j];
        } else {
          ScanAggregate<kMode, kNPT>(L, Ar, lo, hi, decay, h_end);
        }
      }
      if (L.valid && a.tw > 1) {
#pragma unroll
        for (int j = 0; j < kNPT; ++j) {
          s_agg[twi * cpb * a.npad + elem + j] = make_float2(decay[j], h_end[j]);
        }
      }
    }
    if (a.tw > 1) __syncthreads();
    // Phase 2: the other time warps compose the aggregates before them into their true starting
    // state, then correct their y (or rescan their rows from it).
    if (twi > 0 && lo < hi) {
      float h_in[kNPT];
#pragma unroll
      for (int j = 0; j < kNPT; ++j) h_in[j] = s_agg[elem + j].y;
      for (int w = 1; w < twi; ++w) {
#pragma unroll
        for (int j = 0; j < kNPT; ++j) {
          const float2 ag = s_agg[w * cpb * a.npad + elem + j];
          h_in[j] = fmaf(ag.x, h_in[j], ag.y);
        }
      }
      if (full) {
        CorrectSegment<kNPT, kT>(L, lo, P, h_in, h_end);
      } else {
        ScanRows<kMode, kNPT>(a, L, h_in, Ar, lo, hi, cs);
#pragma unroll
        for (int j = 0; j < kNPT; ++j) h_end[j] = h_in[j];
      }
      if (twi == last_warp && L.valid) {
#pragma unroll
        for (int j = 0; j < kNPT; ++j) s_carry[elem + j] = h_end[j];
      }
    }
    __syncthreads();
    // Epilogue.
    if (cc_valid) {
      if (a.x_dt == kBF16) {
        EpilogueChunk<__nv_bfloat16>(a, raw_z(stage), L.s_yp, s_par, rows, cpb, cc, rstep, x_row,
                                     tpc, Dd, t0 + cs, c0 + cc);
      } else if (a.x_dt == kF16) {
        EpilogueChunk<__half>(a, raw_z(stage), L.s_yp, s_par, rows, cpb, cc, rstep, x_row, tpc, Dd,
                              t0 + cs, c0 + cc);
      } else {
        EpilogueChunk<float>(a, raw_z(stage), L.s_yp, s_par, rows, cpb, cc, rstep, x_row, tpc, Dd,
                             t0 + cs, c0 + cc);
      }
    }
    __syncthreads();
  }
  if (twi == 0) {
    float h[kNPT];
#pragma unroll
    for (int j = 0; j < kNPT; ++j) h[j] = s_carry[elem + j];
    StoreStates<kNPT>(a, L, a.final_blk ? a.final_blk[seq] : 0, h);
  }
}

int PickVec(uintptr_t base, std::initializer_list<int64_t> byte_quantities) {
  for (int v : {16, 8, 4}) {
    bool ok = base % v == 0;
    for (int64_t q : byte_quantities) ok = ok && (q % v == 0);
    if (ok) return v;
  }
  return 2;
}

int RoundUp16(int64_t x) { return static_cast<int>((x + 15) / 16 * 16); }

// CopyRows' upr_log2 for rows of `row_bytes` (and a last tile's rows of `tail_bytes`, 0 if none)
// copied in units of `vec` bytes: -1 unless both are the same power-of-two count <= 32 of units.
int UnitsLog2(int64_t row_bytes, int64_t tail_bytes, int vec) {
  if (tail_bytes != 0 && tail_bytes != row_bytes) return -1;
  const int64_t units = row_bytes / vec;
  for (int log2 = 0; log2 <= 5; ++log2) {
    if (units == (int64_t{1} << log2)) return log2;
  }
  return -1;
}

// Sets the time warps, the rows per chunk and the shared-memory layout for `tw`; returns the
// shared-memory bytes. Everything else in `a` (channel geometry, row segments) is set before.
int LayOutChunk(ScanArgs& a, int tw, int npt) {
  const int kT = 64 / npt, cpb = a.cpw * a.cw, tpc = 1 << a.tpc_log2;
  a.tw = tw;
  if (tw > 1) {
    a.seg0 = kT;
  } else {
    a.seg0 = std::clamp(2048 / a.npad, 8, 64);
    if (a.cw > 1) a.seg0 = std::max(8, a.seg0 / 2);
  }
  const int K = a.seg0 + (tw - 1) * kT;
  a.K = K;
  a.raw_stage_bytes = 3 * K * a.seg_x + 2 * K * a.seg_bc;
  a.off_par = 2 * a.raw_stage_bytes;
  a.off_B = a.off_par + K * cpb * 16;
  a.off_C = a.off_B + K * a.npad * 4;
  a.off_yp = a.off_C + K * a.npad * 4;
  a.off_agg = a.off_yp + RoundUp16(static_cast<int64_t>(K) * cpb * tpc * 4);
  a.off_carry = a.off_agg + tw * cpb * a.npad * 8;
  return a.off_carry + cpb * a.npad * 4;
}

// The most time warps a chunk may have: two blocks fit in an SM's shared memory.
int MaxTimeWarps(ScanArgs a, int npt) {
  int tw = 8;
  while (tw > 1 && LayOutChunk(a, tw, npt) > 100 * 1024) --tw;
  return tw;
}

// Picks the time warps (unless `forced_tw`), lays out shared memory and launches.
template <Discretization kMode, int kNPT>
absl::Status Launch(ScanArgs a, int forced_tw, dim3 grid, cudaStream_t st) {
  auto kernel = SelectiveScanKernel<kMode, kNPT>;
  // Several blocks per SM hide each other's barriers: give shared memory the whole carveout.
  CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                            cudaSharedmemCarveoutMaxShared));
  const int max_tw = std::min(MaxTimeWarps(a, kNPT), 8 / a.cw);
  const int max_smem = std::max(LayOutChunk(a, 1, kNPT), LayOutChunk(a, max_tw, kNPT));
  CUDA_RETURN_IF_ERROR(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, max_smem));
  int tw = std::min(forced_tw, max_tw);
  if (forced_tw == 0) {
    // Time warps for a batch too small to fill the GPU with a warp per (sequence, channels):
    // the most (up to 4) with which every block of the grid is resident at once.
    tw = 1;
    const int64_t blocks = static_cast<int64_t>(grid.x) * grid.y;
    for (int cand = std::min(4, max_tw); a.cw == 1 && cand >= 2; --cand) {
      ASSIGN_OR_RETURN(const int64_t resident,
                       ResidentBlocks(reinterpret_cast<const void*>(kernel), cand * 32,
                                      LayOutChunk(a, cand, kNPT)));
      if (blocks <= resident) {
        tw = cand;
        break;
      }
    }
  }
  const int smem = LayOutChunk(a, tw, kNPT);
  kernel<<<grid, a.cw * tw * 32, smem, st>>>(a);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

template <int kNPT>
absl::Status LaunchMode(Discretization mode, const ScanArgs& a, int forced_tw, dim3 grid,
                        cudaStream_t st) {
  switch (mode) {
    case Discretization::kDefault:
      return Launch<Discretization::kDefault, kNPT>(a, forced_tw, grid, st);
    case Discretization::kZoh:
      return Launch<Discretization::kZoh, kNPT>(a, forced_tw, grid, st);
    case Discretization::kBilinear:
      return Launch<Discretization::kBilinear, kNPT>(a, forced_tw, grid, st);
    case Discretization::kDirac:
      return Launch<Discretization::kDirac, kNPT>(a, forced_tw, grid, st);
    case Discretization::kEventDriven:
      return Launch<Discretization::kEventDriven, kNPT>(a, forced_tw, grid, st);
  }
  return absl::InvalidArgumentError("selective_scan: unknown discretization");
}

}  // namespace

absl::Status RunSelectiveScanCuda(const SelectiveScanParams& p, const Stream& stream) {
  if (p.num_seqs == 0) return absl::OkStatus();
  MS_CHECK_ARG(p.num_seqs <= 65535, "selective_scan (CUDA): at most 65535 sequences per call");
  MS_CHECK_ARG(
      p.state_dtype == DType::kF32 || p.state_dtype == DType::kBF16 || p.state_dtype == DType::kF16,
      "selective_scan: bad state dtype");
  cudaStream_t st = static_cast<cudaStream_t>(stream.handle());
  ScanArgs a{};
  a.D = p.dim;
  a.N = p.d_state;
  a.dpg = p.dim / p.n_groups;
  a.cu = p.cu_seqlens;
  a.x_dt = static_cast<int>(p.x_dtype);
  a.bc_dt = static_cast<int>(p.bc_dtype);
  a.st_dt = static_cast<int>(p.state_dtype);
  a.esx = static_cast<int>(DTypeSize(p.x_dtype));
  a.esbc = static_cast<int>(DTypeSize(p.bc_dtype));
  a.u = static_cast<const char*>(p.u);
  a.u_rs = p.u_row_stride;
  a.delta = static_cast<const char*>(p.delta);
  a.delta_rs = p.delta_row_stride;
  a.delta_bias = p.delta_bias;
  a.softplus = p.delta_softplus;
  a.A = p.A;
  a.B = static_cast<const char*>(p.B);
  a.B_rs = p.B_row_stride;
  a.B_gs = p.B_group_stride;
  a.C = static_cast<const char*>(p.C);
  a.C_rs = p.C_row_stride;
  a.C_gs = p.C_group_stride;
  a.Dv = p.D;
  a.z = static_cast<const char*>(p.z);
  a.z_rs = p.z_row_stride;
  a.y = static_cast<char*>(p.y);
  a.y_rs = p.y_row_stride;
  a.tau = p.tau;
  a.bias_A = p.bias_A;
  a.pool = p.state_pool;
  a.block_stride = p.state_block_stride > 0 ? p.state_block_stride : p.dim * p.d_state;
  a.init_blk = p.initial_state_block;
  a.final_blk = p.final_state_block;
  a.block_size = p.block_size;
  a.prefix = p.prefix_offset;
  a.bnd = p.boundary_state_blocks;
  a.bnd_stride = p.boundary_blocks_stride;

  // Geometry: kNPT states per lane, tpc lanes per channel (a power of two), cpw channels per
  // warp; a block's channels must share one B/C group.
  const int npt = p.d_state <= 128 ? 4 : 8;
  int tpc = 1;
  while (tpc * npt < p.d_state) tpc *= 2;
  int log2 = 0;
  while ((1 << log2) < tpc) ++log2;
  a.tpc_log2 = log2;
  a.npad = tpc * npt;
  int cpw = 32 / tpc;
  if (p.n_groups > 1) {
    while (cpw > 1 && a.dpg % cpw != 0) cpw /= 2;
  }
  a.cpw = cpw;
  int sms = 132;
  {
    int dev = 0;
    CUDA_RETURN_IF_ERROR(cudaGetDevice(&dev));
    CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  }
  // Warps side by side over channels when the (sequence, channel) warp columns alone fill the
  // GPU (~16 warps per SM); otherwise one channel warp, and Launch adds warps along time.
  const int64_t columns = p.num_seqs * ((p.dim + cpw - 1) / cpw);
  int cw = columns >= 16LL * sms ? 4 : 1;
  if (p.cuda_channel_warps > 0) cw = p.cuda_channel_warps;
  while (cw > 1 && a.dpg % (cw * cpw) != 0) cw /= 2;  // a block's channels share one group
  if (p.cuda_time_warps > 0) cw = std::min(cw, 8 / p.cuda_time_warps);  // <= 256 threads
  a.cw = cw;
  const int cpb = cpw * cw;
  a.seg_x = RoundUp16(static_cast<int64_t>(cpb) * a.esx);
  a.seg_bc = RoundUp16(p.d_state * a.esbc);
  const int64_t tail_x = (p.dim % cpb) * a.esx;
  a.vec_u =
      PickVec(reinterpret_cast<uintptr_t>(p.u), {p.u_row_stride * a.esx, cpb * a.esx, tail_x});
  a.vec_delta = PickVec(reinterpret_cast<uintptr_t>(p.delta),
                        {p.delta_row_stride * a.esx, cpb * a.esx, tail_x});
  a.vec_z =
      p.z ? PickVec(reinterpret_cast<uintptr_t>(p.z), {p.z_row_stride * a.esx, cpb * a.esx, tail_x})
          : 16;
  a.vec_B = PickVec(reinterpret_cast<uintptr_t>(p.B),
                    {p.B_row_stride * a.esbc, p.B_group_stride * a.esbc, p.d_state * a.esbc});
  a.vec_C = PickVec(reinterpret_cast<uintptr_t>(p.C),
                    {p.C_row_stride * a.esbc, p.C_group_stride * a.esbc, p.d_state * a.esbc});
  if (a.esx == 4) {  // fp32 rows are always 4-byte aligned
    a.vec_u = std::max(a.vec_u, 4);
    a.vec_delta = std::max(a.vec_delta, 4);
    a.vec_z = std::max(a.vec_z, 4);
  }
  if (a.esbc == 4) {
    a.vec_B = std::max(a.vec_B, 4);
    a.vec_C = std::max(a.vec_C, 4);
  }
  const int64_t x_row_bytes = static_cast<int64_t>(std::min<int64_t>(cpb, p.dim)) * a.esx;
  a.upr_log2_x = UnitsLog2(x_row_bytes, tail_x, a.vec_u);
  a.upr_log2_delta = UnitsLog2(x_row_bytes, tail_x, a.vec_delta);
  a.upr_log2_z = UnitsLog2(x_row_bytes, tail_x, a.vec_z);
  a.upr_log2_B = UnitsLog2(p.d_state * a.esbc, 0, a.vec_B);
  a.upr_log2_C = UnitsLog2(p.d_state * a.esbc, 0, a.vec_C);
  a.bc_vec = p.d_state == a.npad && (p.d_state * a.esbc) % 16 == 0 &&
             ((a.seg_bc / 16) & (a.seg_bc / 16 - 1)) == 0;
  dim3 grid(static_cast<unsigned>((p.dim + cpb - 1) / cpb), static_cast<unsigned>(p.num_seqs));
  if (npt == 4) return LaunchMode<4>(p.mode, a, p.cuda_time_warps, grid, st);
  return LaunchMode<8>(p.mode, a, p.cuda_time_warps, grid, st);
}

}  // namespace mambaserve
