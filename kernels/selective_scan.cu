// CUDA Mamba-1 selective scan (prefill).
//
// Design: a thread owns kNPT = 16 states of one channel in registers (a channel with more states
// takes tpc = N / 16 lanes, rounded up to a power of two, and reduces y with shuffles). The
// per-(token, channel) work - softplus of dt, dt * u, and the finish D u, silu(z) - is shared by
// the states and y needs no shared memory, so the recurrence, at one exponential per element, is
// most of the instructions. One thread block (128 threads) per (sequence, tile of channels inside
// one B/C group, time segment).
//
// When N <= 16 and the batch fills the GPU without time segments, lanes own kNPT = 8 states
// instead (two lanes per channel for N = 9..16, Mamba-1's usual 16): each lane computes the
// per-token work of every other token and the pair swaps it, so nothing is computed twice,
// while the halved state registers let twice the warps hide the recurrence's latency.
//
// A block walks its rows in chunks of K: the raw rows of u, delta, z, B and C of chunk c + 1 are
// copied into shared memory with cp.async while chunk c is computed (double buffering); B and C
// are converted once per chunk into fp32 rows shared by the tile; each thread reads its
// channel's u, delta and z from the raw rows and stores y straight to global memory.
//
// Time segments give a small batch of long sequences enough blocks. With S > 1 segments a first
// launch scans every segment but the last from a zero state and keeps its aggregate - the
// product of its decays and its end state - in a workspace; a small kernel carries each
// sequence's initial state through the aggregates in order, leaving every segment its true
// starting state; the last launch scans each segment again from that state, with y. So the
// elements of all segments but the last are advanced twice; a batch that fills the GPU by itself
// runs with S = 1, the last launch alone.
#include <algorithm>
#include <type_traits>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/buffer.h"
#include "core/cuda_status.h"
#include "core/status_macros.h"
#include "kernels/cp_async.cuh"
#include "kernels/selective_scan.h"
#include "kernels/selective_scan_cuda.h"

namespace mambaserve {
namespace {

using namespace scan_cuda;

constexpr int kThreads = 128;

struct ScanArgs {
  int64_t D, N, dpg, num_seqs;
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
  // Geometry: lanes per channel (log2), channels per block, channel tiles per B/C group, rows per
  // chunk, states per channel padded to the lanes (and its log2), time segments.
  int tpc_log2, cpb, tiles_per_group, K, npad, npad_log2, segments;
  // Segment aggregates (product of the decays, end state from zero) of segments 0..S-2:
  // [S - 1][num_seqs][D][N]; null when S = 1.
  float2* agg;
  int vec_u, vec_delta, vec_z, vec_B, vec_C;
  int seg_x, seg_bc;  // bytes of one raw row in shared memory (multiples of 16)
  // Shared memory: two stages of raw rows (u, delta, z, B, C), then fp32 B and C rows.
  int raw_stage_bytes, off_B, off_C;
  // Per copied array: log2 of the units per row when that is a power of two <= 32, else -1.
  int upr_log2_x, upr_log2_delta, upr_log2_z, upr_log2_B, upr_log2_C;
};

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
// Copies `rows` rows of `row_bytes` bytes (src rows `src_rs` bytes apart, dst rows `dst_rs`
// apart) from global to shared memory in units of `vec` bytes: 16/8/4 asynchronously, 2
// synchronously.
// A row of 2^upr_log2 units (upr_log2 >= 0, at most 32 units) gives every thread a fixed unit of
// every (nthreads >> upr_log2)-th row, found with shifts; other rows take the general loop. The
// copy is issued once per chunk for each array, so its index arithmetic matters.
__device__ __forceinline__ void CopyRows(char* dst, int64_t dst_rs, const char* src, int64_t src_rs,
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
// The recurrence.

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

// Rows of each time segment of a sequence of `len` tokens: a multiple of K, at least K.
__device__ __forceinline__ int SegmentRows(int len, int segments, int K) {
  const int per = (len + segments - 1) / segments;
  return max(K, (per + K - 1) / K * K);
}

// The first sequence-local token index >= i after which a block boundary falls (the state there
// is cached), or INT64_MAX without boundary states.
__device__ __forceinline__ int64_t NextBoundary(const ScanArgs& a, int64_t prefix, int64_t i) {
  if (a.block_size <= 0) return INT64_MAX;
  const int64_t first = a.block_size - 1 - prefix % a.block_size;
  if (i <= first) return first;
  return first + (i - first + a.block_size - 1) / a.block_size * a.block_size;
}

// What one thread owns: channel `cl` of the tile (global channel d), states sub * kNPT + j, and
// the channel's per-(token, channel) constants.
struct Channel {
  int cl, sub, tpc, npad, x_row, seq, N;
  bool valid;  // a real channel
  int64_t d, prefix;
  float bias, spb, Dd;
};

template <int kNPT>
__device__ __forceinline__ void StoreStates(const ScanArgs& a, const Channel& c, int64_t block,
                                            const float (&h)[kNPT]) {
  if (block == 0 || !c.valid) return;
#pragma unroll
  for (int j = 0; j < kNPT; ++j) {
    const int64_t n = c.sub * kNPT + j;
    if (n < c.N) StoreElem(a.pool, a.st_dt, block * a.block_stride + c.d * c.N + n, h[j]);
  }
}

// Advances the thread's kNPT states by one token (B and C rows at the thread's first state).
// Returns the token's sum of C h over these states (0 for an aggregate, which instead keeps the
// decay product P of the modes that need it).
template <Discretization kMode, bool kAggregate, int kNPT>
__device__ __forceinline__ float AdvanceStates(const TokenScalars& ts, const float* Bt,
                                               const float* Ct, const float (&Ar)[kNPT],
                                               float (&h)[kNPT], float (&P)[kNPT]) {
  constexpr int kChains = kNPT / 4;  // independent chains for the sum over the states
  float acc[kChains] = {};
#pragma unroll
  for (int j = 0; j < kNPT; j += 4) {
    const float4 b4 = *reinterpret_cast<const float4*>(Bt + j);
    const float bv[4] = {b4.x, b4.y, b4.z, b4.w};
    float cv[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (!kAggregate) {
      const float4 c4 = *reinterpret_cast<const float4*>(Ct + j);
      cv[0] = c4.x, cv[1] = c4.y, cv[2] = c4.z, cv[3] = c4.w;
    }
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const float2 k = StepCoeffs<kMode>(Ar[j + q], bv[q], ts);
      h[j + q] = fmaf(k.x, h[j + q], k.y);
      if (!kAggregate) {
        acc[q % kChains] = fmaf(cv[q], h[j + q], acc[q % kChains]);
      } else if (!kExpDecayMode<kMode>) {
        P[j + q] *= k.x;
      }
    }
  }
  float sum = acc[0] + acc[1];
#pragma unroll
  for (int i = 2; i < kChains; i += 2) sum += acc[i] + acc[i + 1];
  return sum;
}

// The rows of one chunk for one thread. kAggregate (the first launch): advance the states from
// zero and keep what the segment's decay product needs - the sum of dt_decay for the modes whose
// decay is exp(dt_decay A) (one exponential per state at the end), the running product P for
// the others - and no y. Otherwise: advance the true states, finish y straight to global memory
// (a warp's 32 channels are 64 contiguous bytes), and store the state after each block boundary
// (sequence-local token nb, then the next). `first` is the sequence-local index of row 0 and
// `tok0` its packed index.
template <Discretization kMode, bool kAggregate, int kNPT, typename XT>
__device__ __forceinline__ void ScanChunk(const ScanArgs& a, const Channel& c, float (&h)[kNPT],
                                          float (&P)[kNPT], float& dsum, const float (&Ar)[kNPT],
                                          const char* raw_u, const char* raw_delta,
                                          const char* raw_z, const float* s_B, const float* s_C,
                                          int rows, int64_t first, int64_t tok0, int64_t& nb) {
  const XT* u = reinterpret_cast<const XT*>(raw_u) + c.cl;
  const XT* dl = reinterpret_cast<const XT*>(raw_delta) + c.cl;
  const XT* z = reinterpret_cast<const XT*>(raw_z) + c.cl;
  XT* y = reinterpret_cast<XT*>(a.y) + tok0 * a.y_rs + c.d;
  const bool writes_y = c.sub == 0 && c.valid;
  auto step = [&](int t, XT* yt) {
    const float uu = ToF(u[t * c.x_row]);
    const float ev = kMode == Discretization::kEventDriven ? a.tau[tok0 + t] * c.spb : 0.0f;
    const TokenScalars ts =
        MakeTokenScalars<kMode>(ToF(dl[t * c.x_row]), c.bias, a.softplus, uu, ev);
    const float* Bt = s_B + t * c.npad + c.sub * kNPT;
    const float* Ct = s_C + t * c.npad + c.sub * kNPT;
    if (kAggregate && kExpDecayMode<kMode>) dsum += ts.dt_decay;
    float yv = AdvanceStates<kMode, kAggregate>(ts, Bt, Ct, Ar, h, P);
    if (!kAggregate) {
      for (int off = c.tpc / 2; off > 0; off /= 2) {
        yv += __shfl_xor_sync(0xffffffffu, yv, off, c.tpc);
      }
      yv = fmaf(c.Dd, uu, yv);
      if (a.z) yv *= DevSilu(ToF(z[t * c.x_row]));
      if (writes_y) *yt = FromF<XT>(yv);
    }
  };
  // Tokens t and t + 1 on a channel's two lanes (kNPT = 8, tpc = 2; never an aggregate, see
  // LaunchPairs): lane `sub` computes the
  // scalars of token t + sub and takes the other token's from its partner; both lanes advance
  // their 8 states through both tokens; each lane gets its token's sum over the partner's states
  // with one shuffle and finishes that token's y. `yt` is y's row t + sub.
  auto step_pair = [&](int t, XT* yt) {
    const int mine = t + c.sub;
    const float uu = ToF(u[mine * c.x_row]);
    const float ev = kMode == Discretization::kEventDriven ? a.tau[tok0 + mine] * c.spb : 0.0f;
    const TokenScalars own =
        MakeTokenScalars<kMode>(ToF(dl[mine * c.x_row]), c.bias, a.softplus, uu, ev);
    TokenScalars partner;
    partner.dt_in = __shfl_xor_sync(0xffffffffu, own.dt_in, 1);
    partner.dt_decay = __shfl_xor_sync(0xffffffffu, own.dt_decay, 1);
    partner.xin = __shfl_xor_sync(0xffffffffu, own.xin, 1);
    partner.u = __shfl_xor_sync(0xffffffffu, own.u, 1);
    const TokenScalars ts[2] = {c.sub ? partner : own, c.sub ? own : partner};
    float sums[2];
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      sums[k] = AdvanceStates<kMode, false>(ts[k], s_B + (t + k) * c.npad + c.sub * kNPT,
                                            s_C + (t + k) * c.npad + c.sub * kNPT, Ar, h, P);
    }
    const float given = __shfl_xor_sync(0xffffffffu, c.sub ? sums[0] : sums[1], 1);
    float yv = (c.sub ? sums[1] : sums[0]) + given;
    yv = fmaf(c.Dd, uu, yv);
    if (a.z) yv *= DevSilu(ToF(z[mine * c.x_row]));
    if (c.valid) *yt = FromF<XT>(yv);
  };
  // Rows up to the next block boundary in one loop, then that boundary's state.
  int t = 0;
  while (t < rows) {
    const bool hit = !kAggregate && nb < first + rows;
    const int end = hit ? static_cast<int>(nb - first) + 1 : rows;
    // y's row pointer advances with t (a 64-bit multiply per token otherwise).
    if constexpr (kNPT == 8 && !kAggregate) {
      if (c.tpc == 2) {
        XT* yp = y + (t + c.sub) * a.y_rs;
#pragma unroll 1
        for (; t + 1 < end; t += 2, yp += 2 * a.y_rs) step_pair(t, yp);
      }
    }
    XT* yt = y + t * a.y_rs;
#pragma unroll 2
    for (; t < end; ++t, yt += a.y_rs) step(t, yt);
    if (hit) {
      const int64_t j = (c.prefix + nb + 1) / a.block_size - c.prefix / a.block_size - 1;
      StoreStates(a, c, a.bnd[c.seq * a.bnd_stride + j], h);
      nb = NextBoundary(a, c.prefix, nb + 1);
    }
  }
}

// kMinBlocks blocks of 128 threads per SM (MinBlocks below).
template <Discretization kMode, bool kAggregate, int kNPT, int kMinBlocks>
__global__ void __launch_bounds__(kThreads, kMinBlocks) SelectiveScanKernel(const ScanArgs a) {
  extern __shared__ __align__(16) char smem[];
  const int seq = blockIdx.y, segment = blockIdx.z;
  const int t0 = a.cu[seq];
  const int len = a.cu[seq + 1] - t0;
  const int K = a.K;
  const int seg_rows = SegmentRows(len, a.segments, K);
  const int lo = min(len, segment * seg_rows), hi = min(len, lo + seg_rows);
  const int last_segment = len == 0 ? 0 : (len - 1) / seg_rows;
  if (!kAggregate && segment > last_segment) return;  // uniform over the block

  const int cpb = a.cpb;
  const int64_t g = blockIdx.x / a.tiles_per_group;
  const int cg0 = static_cast<int>(blockIdx.x - g * a.tiles_per_group) * cpb;
  const int64_t c0 = g * a.dpg + cg0;  // the tile's first channel
  const int valid_ch = static_cast<int>(min(static_cast<int64_t>(cpb), a.dpg - cg0));
  const int tid = threadIdx.x;
  const int N = static_cast<int>(a.N);

  Channel c;
  c.tpc = 1 << a.tpc_log2;
  c.cl = tid >> a.tpc_log2;
  c.sub = tid & (c.tpc - 1);
  c.npad = a.npad;
  c.x_row = a.seg_x / a.esx;
  c.seq = seq;
  c.N = N;
  c.valid = c.cl < valid_ch;
  c.d = c0 + c.cl;
  c.prefix = a.block_size > 0 ? a.prefix[seq] : 0;
  c.bias = (c.valid && a.delta_bias) ? a.delta_bias[c.d] : 0.0f;
  c.spb = (c.valid && kMode == Discretization::kEventDriven) ? DevSoftplus(a.bias_A[c.d]) : 0.0f;
  c.Dd = (c.valid && a.Dv) ? a.Dv[c.d] : 0.0f;

  // Decay coefficients, and the starting state: zero for an aggregate; otherwise the sequence's
  // initial state, or for a later segment the state ComposeSegmentStates left for it.
  float Ar[kNPT], h[kNPT], P[kNPT];
  float dsum = 0.0f;
  const int64_t in_blk = a.init_blk ? a.init_blk[seq] : 0;
#pragma unroll
  for (int j = 0; j < kNPT; ++j) {
    const int64_t n = c.sub * kNPT + j;
    const bool ok = c.valid && n < N;
    Ar[j] = ok ? PrepareA<kMode>(a.A[c.d * N + n]) : 0.0f;
    h[j] = 0.0f;
    P[j] = 1.0f;
    if (!kAggregate && ok) {
      if (a.segments > 1) {  // left by ComposeSegmentStates
        const float2 ag = a.agg[((max(segment - 1, 0) * a.num_seqs + seq) * a.D + c.d) * N + n];
        h[j] = segment > 0 ? ag.y : ag.x;
      } else if (in_blk != 0) {
        h[j] = LoadElem(a.pool, a.st_dt, in_blk * a.block_stride + c.d * N + n);
      }
    }
  }

  auto raw_u = [&](int stage) { return smem + stage * a.raw_stage_bytes; };
  auto raw_delta = [&](int stage) { return raw_u(stage) + K * a.seg_x; };
  auto raw_z = [&](int stage) { return raw_u(stage) + 2 * K * a.seg_x; };
  auto raw_B = [&](int stage) { return raw_u(stage) + 3 * K * a.seg_x; };
  auto raw_C = [&](int stage) { return raw_B(stage) + K * a.seg_bc; };
  auto issue = [&](int cs, int stage) {
    const int rows = min(K, hi - cs);
    const int64_t row0 = t0 + cs;
    CopyRows(raw_u(stage), a.seg_x, a.u + (row0 * a.u_rs + c0) * a.esx, a.u_rs * a.esx, rows,
             valid_ch * a.esx, a.vec_u, a.upr_log2_x, tid, kThreads);
    CopyRows(raw_delta(stage), a.seg_x, a.delta + (row0 * a.delta_rs + c0) * a.esx,
             a.delta_rs * a.esx, rows, valid_ch * a.esx, a.vec_delta, a.upr_log2_delta, tid,
             kThreads);
    CopyRows(raw_B(stage), a.seg_bc, a.B + (row0 * a.B_rs + g * a.B_gs) * a.esbc, a.B_rs * a.esbc,
             rows, N * a.esbc, a.vec_B, a.upr_log2_B, tid, kThreads);
    if (kAggregate) return;
    if (a.z) {
      CopyRows(raw_z(stage), a.seg_x, a.z + (row0 * a.z_rs + c0) * a.esx, a.z_rs * a.esx, rows,
               valid_ch * a.esx, a.vec_z, a.upr_log2_z, tid, kThreads);
    }
    CopyRows(raw_C(stage), a.seg_bc, a.C + (row0 * a.C_rs + g * a.C_gs) * a.esbc, a.C_rs * a.esbc,
             rows, N * a.esbc, a.vec_C, a.upr_log2_C, tid, kThreads);
  };

  float* s_B = reinterpret_cast<float*>(smem + a.off_B);
  float* s_C = reinterpret_cast<float*>(smem + a.off_C);
  const int bc_row = a.seg_bc / a.esbc;
  int64_t nb = kAggregate ? INT64_MAX : NextBoundary(a, c.prefix, lo);
  if (lo < hi) issue(lo, 0);
  CpAsyncCommit();
  for (int cs = lo, stage = 0; cs < hi; cs += K, stage ^= 1) {
    const int rows = min(K, hi - cs);
    if (cs + K < hi) issue(cs + K, stage ^ 1);
    CpAsyncCommit();
    CpAsyncWait<1>();
    __syncthreads();
    for (int i = tid; i < (rows << a.npad_log2); i += kThreads) {
      const int t = i >> a.npad_log2, n = i & (a.npad - 1);
      s_B[i] = n < N ? LoadElem(raw_B(stage), a.bc_dt, t * bc_row + n) : 0.0f;
      if (!kAggregate) s_C[i] = n < N ? LoadElem(raw_C(stage), a.bc_dt, t * bc_row + n) : 0.0f;
    }
    __syncthreads();
    const int64_t tok0 = t0 + cs;
    if (a.x_dt == kBF16) {
      ScanChunk<kMode, kAggregate, kNPT, __nv_bfloat16>(a, c, h, P, dsum, Ar, raw_u(stage),
                                                        raw_delta(stage), raw_z(stage), s_B, s_C,
                                                        rows, cs, tok0, nb);
    } else if (a.x_dt == kF16) {
      ScanChunk<kMode, kAggregate, kNPT, __half>(a, c, h, P, dsum, Ar, raw_u(stage),
                                                 raw_delta(stage), raw_z(stage), s_B, s_C, rows, cs,
                                                 tok0, nb);
    } else {
      ScanChunk<kMode, kAggregate, kNPT, float>(a, c, h, P, dsum, Ar, raw_u(stage),
                                                raw_delta(stage), raw_z(stage), s_B, s_C, rows, cs,
                                                tok0, nb);
    }
    __syncthreads();
  }
  if (kAggregate) {
#pragma unroll
    for (int j = 0; j < kNPT; ++j) {
      const int64_t n = c.sub * kNPT + j;
      if (c.valid && n < N) {
        const float decay = kExpDecayMode<kMode> ? FastExp2(Ar[j] * dsum) : P[j];
        a.agg[((segment * a.num_seqs + seq) * a.D + c.d) * N + n] = make_float2(decay, h[j]);
      }
    }
  } else if (segment == last_segment) {
    StoreStates(a, c, a.final_blk ? a.final_blk[seq] : 0, h);
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

// Between the two launches: for every (sequence, channel, state), carries the initial state
// through the segments' aggregates in order and leaves the starting state of segment s + 1 in
// aggregate s's second half, so that a segment's scan reads one value per state instead of
// composing all the aggregates before it (which re-read them S / 2 times over). The initial state
// itself goes to aggregate 0's first half (its decay is used up): segment 0 must not read the
// pool, because the last segment, running beside it, may already be writing the final state
// into the same block (in-place update).
__global__ void ComposeSegmentStates(const ScanArgs a) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t per_seq = a.D * a.N;
  if (i >= a.num_seqs * per_seq) return;
  const int64_t seq = i / per_seq, dn = i - seq * per_seq;
  const int64_t in_blk = a.init_blk ? a.init_blk[seq] : 0;
  float h = in_blk != 0 ? LoadElem(a.pool, a.st_dt, in_blk * a.block_stride + dn) : 0.0f;
  const int64_t stride = a.num_seqs * per_seq;
  for (int s = 0; s + 1 < a.segments; ++s) {
    float2* ag = a.agg + s * stride + i;
    const float2 v = *ag;
    const float next = fmaf(v.x, h, v.y);
    *ag = make_float2(s == 0 ? h : v.x, next);
    h = next;
  }
}

// Lays out shared memory for K rows per chunk; returns its bytes. The channel geometry and the
// raw row sizes are set before.
int LayOutChunk(ScanArgs& a, int K) {
  a.K = K;
  a.raw_stage_bytes = 3 * K * a.seg_x + 2 * K * a.seg_bc;
  a.off_B = 2 * a.raw_stage_bytes;
  a.off_C = a.off_B + K * a.npad * 4;
  return a.off_C + K * a.npad * 4;
}

// Blocks of 128 threads per SM each launch is compiled for. One lane per channel (kNPT = 16):
// 5 (<= 102 registers, 8 bytes spilled) for time segments, so that 16 segments of a 5120-channel
// sequence (640 blocks) are resident at once on 132 SMs; 4 (<= 128 registers, no spill) without
// (b = 8 L = 4K on an H100: 1900 vs 1980 us, bench/RESULTS_mamba1.md). Two lanes (kNPT = 8): 6
// (<= 80 registers, no spill; b = 8 L = 4K: 1557-1561 us against 1581-1603 for 8 blocks).
constexpr int kSegmentedMinBlocks = 5, kSingleMinBlocks = 4, kPairMinBlocks = 6;

// Sets a kernel's shared-memory attributes for `smem` bytes per block.
template <typename Kernel>
absl::Status SetSmem(Kernel kernel, int smem) {
  // Several blocks per SM hide each other's barriers: give shared memory the whole carveout.
  CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                            cudaSharedmemCarveoutMaxShared));
  CUDA_RETURN_IF_ERROR(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  return absl::OkStatus();
}

// SetSmem, then how many of the kernel's blocks the GPU holds at once.
template <typename Kernel>
absl::StatusOr<int64_t> PrepareKernel(Kernel kernel, int smem) {
  RETURN_IF_ERROR(SetSmem(kernel, smem));
  int per_sm = 0, sms = 0, dev = 0;
  CUDA_RETURN_IF_ERROR(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem));
  CUDA_RETURN_IF_ERROR(cudaGetDevice(&dev));
  CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  return static_cast<int64_t>(per_sm) * sms;
}

// Time segments for `blocks` (sequence, tile) blocks of sequences of `mean_len` tokens: as many
// as the segmented launch keeps resident at once (up to 16) when the blocks alone fill fewer
// than two thirds of it, each segment keeping >= 4 chunks; otherwise 1.
int PickSegments(int64_t blocks, int64_t resident, int64_t mean_len, int K) {
  if (3 * blocks >= 2 * resident) return 1;
  const int64_t by_grid = resident / blocks, by_len = mean_len / (4LL * K);
  return static_cast<int>(std::clamp<int64_t>(std::min(by_grid, by_len), 1, 16));
}

// S = 1: the scan with y alone. S > 1: the segment aggregates and their composition, then the
// scan with y; the aggregates live in stream-ordered memory for the two launches.
template <Discretization kMode>
absl::Status Launch(ScanArgs a, int smem, dim3 grid, int64_t mean_len, int forced_segments,
                    cudaStream_t st) {
  auto single = SelectiveScanKernel<kMode, false, 16, kSingleMinBlocks>;
  auto aggregate = SelectiveScanKernel<kMode, true, 16, kSegmentedMinBlocks>;
  auto segmented = SelectiveScanKernel<kMode, false, 16, kSegmentedMinBlocks>;
  ASSIGN_OR_RETURN(const int64_t resident, PrepareKernel(segmented, smem));
  a.segments = forced_segments > 0
                   ? forced_segments
                   : PickSegments(static_cast<int64_t>(grid.x) * grid.y, resident, mean_len, a.K);
  const dim3 scan_grid(grid.x, grid.y, static_cast<unsigned>(a.segments));
  if (a.segments == 1) {
    RETURN_IF_ERROR(SetSmem(single, smem));
    single<<<scan_grid, kThreads, smem, st>>>(a);
    CUDA_RETURN_IF_LAUNCH_ERROR();
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(SetSmem(aggregate, smem));
  const size_t agg_bytes =
      sizeof(float2) * static_cast<size_t>(a.segments - 1) * a.num_seqs * a.D * a.N;
  CUDA_RETURN_IF_ERROR(cudaMallocAsync(reinterpret_cast<void**>(&a.agg), agg_bytes, st));
  aggregate<<<dim3(grid.x, grid.y, static_cast<unsigned>(a.segments - 1)), kThreads, smem, st>>>(a);
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) {
    const int64_t n = a.num_seqs * a.D * a.N;
    ComposeSegmentStates<<<static_cast<unsigned>((n + 255) / 256), 256, 0, st>>>(a);
    err = cudaGetLastError();
  }
  if (err == cudaSuccess) {
    segmented<<<scan_grid, kThreads, smem, st>>>(a);
    err = cudaGetLastError();
  }
  CUDA_RETURN_IF_ERROR(cudaFreeAsync(a.agg, st));
  CUDA_RETURN_IF_ERROR(err);
  return absl::OkStatus();
}

// Two lanes of 8 states per channel (N <= 16), only where its blocks fill the GPU without time
// segments: there it wins (b = 8 L = 4K: 1542 against 1776 us), while with segments it lost (b = 1
// L = 64K: 5248 against 4711 us; its aggregate pass costs more per channel, and one lane per
// channel already had ~5 warps per scheduler there). Returns whether it launched.
template <Discretization kMode>
absl::StatusOr<bool> LaunchPairs(ScanArgs a, int smem, dim3 grid, int64_t mean_len,
                                 int forced_segments, cudaStream_t st) {
  if (forced_segments > 1) return false;
  auto kernel = SelectiveScanKernel<kMode, false, 8, kPairMinBlocks>;
  ASSIGN_OR_RETURN(const int64_t resident, PrepareKernel(kernel, smem));
  if (forced_segments == 0 &&
      PickSegments(static_cast<int64_t>(grid.x) * grid.y, resident, mean_len, a.K) > 1) {
    return false;
  }
  a.segments = 1;
  kernel<<<grid, kThreads, smem, st>>>(a);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return true;
}

// Calls f with the discretisation as a compile-time constant.
template <typename F>
auto WithMode(Discretization mode, F&& f)
    -> decltype(f(std::integral_constant<Discretization, Discretization::kDefault>{})) {
  using D = Discretization;
  switch (mode) {
    case D::kDefault:
      return f(std::integral_constant<D, D::kDefault>{});
    case D::kZoh:
      return f(std::integral_constant<D, D::kZoh>{});
    case D::kBilinear:
      return f(std::integral_constant<D, D::kBilinear>{});
    case D::kDirac:
      return f(std::integral_constant<D, D::kDirac>{});
    case D::kEventDriven:
      return f(std::integral_constant<D, D::kEventDriven>{});
  }
  return absl::InvalidArgumentError("selective_scan: unknown discretization");
}

// Channel geometry for npt = 2^npt_log2 states per lane: tpc lanes per channel (a power of two),
// a block's channels inside one B/C group; the raw rows' copy units and the shared-memory layout.
// Returns the shared memory a block needs.
int SetGeometry(ScanArgs& a, const SelectiveScanParams& p, int npt_log2) {
  const int npt = 1 << npt_log2;
  a.tpc_log2 = 0;
  while ((npt << a.tpc_log2) < p.d_state) ++a.tpc_log2;
  a.npad = npt << a.tpc_log2;
  a.npad_log2 = npt_log2 + a.tpc_log2;
  a.cpb = kThreads >> a.tpc_log2;
  a.tiles_per_group = static_cast<int>((a.dpg + a.cpb - 1) / a.cpb);

  // Raw rows and their copy units. A tile's first channel is g * dpg + k * cpb, so the units
  // must divide those offsets too.
  const int cpb = a.cpb;
  a.seg_x = RoundUp16(static_cast<int64_t>(cpb) * a.esx);
  a.seg_bc = RoundUp16(p.d_state * a.esbc);
  const int64_t tail_x = (a.dpg % cpb) * a.esx;
  auto x_vec = [&](const void* ptr, int64_t row_stride) {
    if (ptr == nullptr) return 16;
    const int v = PickVec(reinterpret_cast<uintptr_t>(ptr),
                          {row_stride * a.esx, cpb * a.esx, a.dpg * a.esx, tail_x});
    return a.esx == 4 ? std::max(v, 4) : v;  // fp32 rows are always 4-byte aligned
  };
  a.vec_u = x_vec(p.u, p.u_row_stride);
  a.vec_delta = x_vec(p.delta, p.delta_row_stride);
  a.vec_z = x_vec(p.z, p.z_row_stride);
  auto bc_vec = [&](const void* ptr, int64_t row_stride, int64_t group_stride) {
    const int v = PickVec(reinterpret_cast<uintptr_t>(ptr),
                          {row_stride * a.esbc, group_stride * a.esbc, p.d_state * a.esbc});
    return a.esbc == 4 ? std::max(v, 4) : v;
  };
  a.vec_B = bc_vec(p.B, p.B_row_stride, p.B_group_stride);
  a.vec_C = bc_vec(p.C, p.C_row_stride, p.C_group_stride);
  const int64_t x_row_bytes = std::min<int64_t>(cpb, a.dpg) * a.esx;
  a.upr_log2_x = UnitsLog2(x_row_bytes, tail_x, a.vec_u);
  a.upr_log2_delta = UnitsLog2(x_row_bytes, tail_x, a.vec_delta);
  a.upr_log2_z = UnitsLog2(x_row_bytes, tail_x, a.vec_z);
  a.upr_log2_B = UnitsLog2(p.d_state * a.esbc, 0, a.vec_B);
  a.upr_log2_C = UnitsLog2(p.d_state * a.esbc, 0, a.vec_C);
  // 24 rows per chunk keep a block's shared memory at 42 KB (one lane per channel, bf16, N = 16;
  // 25 KB with two lanes), so that five (six) blocks fit an SM as the registers allow; wide
  // states take fewer.
  const int smem = LayOutChunk(a, 24);
  return smem > 96 * 1024 ? LayOutChunk(a, 8) : smem;
}

}  // namespace

absl::Status RunSelectiveScanCuda(const SelectiveScanParams& p, const Stream& stream) {
  if (p.num_seqs == 0) return absl::OkStatus();
  MS_CHECK_ARG(p.num_seqs <= 65535, "selective_scan (CUDA): at most 65535 sequences per call");
  MS_CHECK_ARG(
      p.state_dtype == DType::kF32 || p.state_dtype == DType::kBF16 || p.state_dtype == DType::kF16,
      "selective_scan: bad state dtype");
  cudaStream_t st = static_cast<cudaStream_t>(stream.handle());
  RETURN_IF_ERROR(KeepFreedStreamMemory(stream.device()));  // time segments' workspace
  ScanArgs a{};
  a.D = p.dim;
  a.N = p.d_state;
  a.dpg = p.dim / p.n_groups;
  a.num_seqs = p.num_seqs;
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

  const int64_t mean_len = p.num_tokens / p.num_seqs;
  auto grid_of = [&](const ScanArgs& g) {
    return dim3(static_cast<unsigned>(p.n_groups * g.tiles_per_group),
                static_cast<unsigned>(p.num_seqs));
  };
  if (p.d_state <= 16) {
    ScanArgs pa = a;
    const int smem = SetGeometry(pa, p, 3);
    ASSIGN_OR_RETURN(const bool launched, WithMode(p.mode, [&](auto m) {
                       return LaunchPairs<decltype(m)::value>(pa, smem, grid_of(pa), mean_len,
                                                              p.cuda_time_segments, st);
                     }));
    if (launched) return absl::OkStatus();
  }
  const int smem = SetGeometry(a, p, 4);
  return WithMode(p.mode, [&](auto m) {
    return Launch<decltype(m)::value>(a, smem, grid_of(a), mean_len, p.cuda_time_segments, st);
  });
}

}  // namespace mambaserve
