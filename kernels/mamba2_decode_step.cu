// CUDA fused Mamba-2 decode step: conv update + state update + gated RMSNorm in one kernel (see
// mamba2_decode_step.h for the semantics and why).
//
// Grid: one 128-thread block per (sequence, head, tile of head rows). The state part is the one
// of mamba2_state_update.cu: "row groups" of LANES threads each own ROWS rows of N states, lane l
// holding vectors l, l + LANES, ... of each row in registers. Before it, the block computes the
// conv outputs it needs into shared memory: x of its rows, and B and C of its group (every head
// of a group recomputes them; that is 2N channels of W taps, cheaper than another launch).
// Blocks write their x channels' conv windows; the B and C windows are read by every head of the
// group, so the last block of the sequence to arrive writes them, after all others have read.
// The same last block normalises the sequence's y row from the blocks' partial sums of squares,
// summed in a fixed order (deterministic).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "absl/status/status.h"
#include "core/cuda_status.h"
#include "core/status_macros.h"
#include "kernels/mamba2_decode_step.h"
#include "kernels/mamba_math.h"
#include "kernels/state_io.cuh"

// Thread-block clusters (sm_90) let the blocks of one group share its B and C conv outputs.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
#define CLUSTERS 1
#include <cooperative_groups.h>
namespace cg = cooperative_groups;
#else
#define CLUSTERS 0
#endif

namespace mambaserve {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxWindow = 3;  // conv width <= 4 (Mamba2DecodeStepFusable)

struct FusedArgs {
  Mamba2DecodeStepParams p;
  int64_t hpg;             // heads per group
  int64_t ptiles;          // row tiles per head
  int64_t partials;        // partial_sums per sequence (row stride)
  int64_t segs;            // state vectors per row
  bool vector_norm;        // y, z, out rows 16-byte aligned: vectorised normalisation
};

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename XT>
__device__ __forceinline__ XT FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// v as it reads back after a store in XT.
template <typename XT>
__device__ __forceinline__ float Round(float v) {
  return ToFloat(FromFloat<XT>(v));
}

// One sequence's conv inputs and its block of the conv state pool, with 32-bit offsets inside
// them (the 64-bit block and row offsets are taken once per thread block).
template <typename XT>
struct ConvView {
  const XT* x;       // the sequence's conv input row
  const XT* weight;  // (dim, ws)
  const XT* bias;    // (dim) or null
  char* win;         // block kin of the pool
  int ws, width, pitch;
  bool sd, win_f32, silu;

  __device__ __forceinline__ ConvView(const CausalConv1dUpdateParams& cv, int64_t b,
                                      int64_t blk) {
    x = static_cast<const XT*>(cv.x) + b * cv.x_seq_stride;
    weight = static_cast<const XT*>(cv.w.weight);
    bias = static_cast<const XT*>(cv.w.bias);
    win_f32 = cv.pool.state_dtype == DType::kF32;
    win = static_cast<char*>(cv.pool.conv_state) +
          blk * cv.pool.state_block_stride * (win_f32 ? 4 : static_cast<int64_t>(sizeof(XT)));
    ws = static_cast<int>(cv.w.weight_row_stride > 0 ? cv.w.weight_row_stride : cv.w.width);
    width = static_cast<int>(cv.w.width);
    pitch = static_cast<int>(cv.pool.state_stride);
    sd = cv.pool.layout == ConvStateLayout::kSD;
    silu = cv.w.silu;
  }
  __device__ __forceinline__ int WinIndex(int c, int r) const {
    return sd ? r * pitch + c : c * pitch + r;
  }
  __device__ __forceinline__ float Win(int c, int r) const {
    const int i = WinIndex(c, r);
    return win_f32 ? reinterpret_cast<const float*>(win)[i]
                   : ToFloat(reinterpret_cast<const XT*>(win)[i]);
  }
  __device__ __forceinline__ void SetWin(int c, int r, float v) const {
    const int i = WinIndex(c, r);
    if (win_f32) {
      reinterpret_cast<float*>(win)[i] = v;
    } else {
      reinterpret_cast<XT*>(win)[i] = FromFloat<XT>(v);
    }
  }
};

// The W-1 window values of channel c (oldest first) and the channel's new input.
struct ConvTaps {
  float win[kMaxWindow];
  float xn;
};

template <typename XT>
__device__ __forceinline__ ConvTaps LoadTaps(const ConvView<XT>& v, int c) {
  ConvTaps t;
#pragma unroll
  for (int r = 0; r < kMaxWindow; ++r) t.win[r] = r < v.width - 1 ? v.Win(c, r) : 0.0f;
  t.xn = ToFloat(v.x[c]);
  return t;
}

// act(bias + sum_k weight[c, k] * window), rounded like the conv's stored output.
template <typename XT>
__device__ __forceinline__ float ConvOut(const ConvView<XT>& v, int c, const ConvTaps& t) {
  const XT* w = v.weight + c * v.ws;
  float acc = v.bias != nullptr ? ToFloat(v.bias[c]) : 0.0f;
#pragma unroll
  for (int k = 0; k < kMaxWindow; ++k) {
    if (k < v.width - 1) acc = fmaf(ToFloat(w[k]), t.win[k], acc);
  }
  acc = fmaf(ToFloat(w[v.width - 1]), t.xn, acc);
  return Round<XT>(v.silu ? Silu(acc) : acc);
}

// The window after this token: drop the oldest row, append the new input.
template <typename XT>
__device__ __forceinline__ void StoreShiftedWindow(const ConvView<XT>& v, int c,
                                                   const ConvTaps& t) {
#pragma unroll
  for (int r = 0; r < kMaxWindow; ++r) {
    if (r < v.width - 1) v.SetWin(c, r, r + 1 < v.width - 1 ? t.win[r + 1] : t.xn);
  }
}

// L2 loads (bypassing L1) of values other blocks wrote during this kernel.
__device__ __forceinline__ float LoadCg(const float* p) { return __ldcg(p); }
__device__ __forceinline__ float LoadCg(const __nv_bfloat16* p) { return ToFloat(__ldcg(p)); }

// The last block's normalisation of sequence b's y row: out = v * inv[group] * w (gated after
// the norm when norm_before_gate). inv[] holds the local groups' rsqrt(S / group_size + eps).
// Vectors of 16 bytes when aligned, every load of a batch issued before its stores.
template <typename XT>
__device__ void NormaliseRow(const FusedArgs& a, int64_t b, const float* inv) {
  const GatedRmsNormParams& n = a.p.norm;
  const int64_t dim = n.dim;
  const XT* y = static_cast<const XT*>(n.y) + b * n.y_row_stride;
  const XT* z = n.z != nullptr ? static_cast<const XT*>(n.z) + b * n.z_row_stride : nullptr;
  XT* out = static_cast<XT*>(n.out) + b * n.out_row_stride;
  const float* w = static_cast<const float*>(n.weight);
  constexpr int V = 16 / sizeof(XT);
  constexpr int kBatch = 2;  // vectors per thread in flight
  const int64_t vecs = a.vector_norm ? dim / V : 0;
  for (int64_t v0 = 0; v0 < vecs; v0 += kBatch * kThreads) {
    float yv[kBatch][V], zv[kBatch][V], wv[kBatch][V];
#pragma unroll
    for (int k = 0; k < kBatch; ++k) {
      const int64_t v = v0 + k * kThreads + threadIdx.x;
      if (v >= vecs) continue;
      const uint4 yq = __ldcg(reinterpret_cast<const uint4*>(y + v * V));
      const uint4 zq = z != nullptr ? __ldg(reinterpret_cast<const uint4*>(z + v * V)) : uint4{};
      const XT* ye = reinterpret_cast<const XT*>(&yq);
      const XT* ze = reinterpret_cast<const XT*>(&zq);
#pragma unroll
      for (int e = 0; e < V; ++e) {
        yv[k][e] = ToFloat(ye[e]);
        zv[k][e] = z != nullptr ? Silu(ToFloat(ze[e])) : 1.0f;
        wv[k][e] = __ldg(w + v * V + e);
      }
    }
#pragma unroll
    for (int k = 0; k < kBatch; ++k) {
      const int64_t v = v0 + k * kThreads + threadIdx.x;
      if (v >= vecs) continue;
      const float g = inv[v * V / n.group_size];
      uint4 oq;
      XT* oe = reinterpret_cast<XT*>(&oq);
#pragma unroll
      for (int e = 0; e < V; ++e) {
        oe[e] = FromFloat<XT>(n.norm_before_gate ? yv[k][e] * g * wv[k][e] * zv[k][e]
                                                 : yv[k][e] * zv[k][e] * g * wv[k][e]);
      }
      *reinterpret_cast<uint4*>(out + v * V) = oq;
    }
  }
  // Unaligned rows: one channel at a time.
  for (int64_t c = vecs * V + threadIdx.x; c < dim; c += kThreads) {
    const float yy = LoadCg(y + c);
    const float zz = z != nullptr ? Silu(LoadCg(z + c)) : 1.0f;
    const float g = inv[c / n.group_size];
    out[c] = FromFloat<XT>(n.norm_before_gate ? yy * g * w[c] * zz : yy * zz * g * w[c]);
  }
}

template <typename XT, typename StT, int VEC, int LANES, int CHUNKS, int ROWS>
__global__ void __launch_bounds__(kThreads, 4) Mamba2DecodeStepKernel(const FusedArgs a) {
  constexpr int kGroups = kThreads / LANES;
  constexpr int kRows = kGroups * ROWS;  // state rows per block
  static_assert(kRows >= kMamba2DecodeStepMinRows, "partial_sums is sized for >= 8 rows");
  static_assert(kRows <= kThreads, "one x row per thread");
  // [x of the block's rows | B | C | silu(z) (or 1) of the block's rows]; in the last block,
  // the inverse norms of the local groups.
  extern __shared__ float smem[];
  __shared__ float warp_sums[kThreads / 32];
  __shared__ bool is_last;

  const Mamba2StateUpdateParams& p = a.p.ssm;
  const GatedRmsNormParams& nm = a.p.norm;
  int64_t bid = blockIdx.x;
  const int64_t tile = bid % a.ptiles;
  bid /= a.ptiles;
  const int h = static_cast<int>(bid % p.num_heads);
  const int64_t b = bid / p.num_heads;
  const int64_t kin = p.state_block_in[b];
  if (kin == 0) return;  // the whole sequence is skipped, uniformly over its blocks

  const int tid = threadIdx.x, lane = tid % LANES, grp = tid / LANES;
  const int H = static_cast<int>(p.num_heads), P = static_cast<int>(p.head_dim);
  const int G = static_cast<int>(p.num_groups), N = static_cast<int>(p.d_state);
  const int g = static_cast<int>((p.first_head + h) / a.hpg - p.first_group);
  const int block_row0 = static_cast<int>(tile) * kRows;
  const int row0 = block_row0 + grp * ROWS;
  StT* const state = static_cast<StT*>(p.state) + kin * p.state_block_stride +
                     h * p.state_head_stride;
  const int64_t sp = p.state_p_stride;

  // The state rows, first: they are the bulk of the traffic.
  float s[ROWS][CHUNKS][VEC];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
#pragma unroll
    for (int c = 0; c < CHUNKS; ++c) {
      const int seg = c * LANES + lane;
      if (row0 + r < P && seg < a.segs) {
        StateIO<StT, VEC>::Load(state + (row0 + r) * sp + seg * VEC, s[r][c]);
      } else {
#pragma unroll
        for (int v = 0; v < VEC; ++v) s[r][c][v] = 0.0f;
      }
    }
  }
  float dt = ToFloat(static_cast<const XT*>(p.dt)[b * p.dt_batch_stride + h * p.dt_head_stride]);

  // Conv outputs of the group's B and C. The blocks of a thread-block cluster (consecutive
  // blocks of one sequence whose heads share group g, see ClusterSize) each compute a share and
  // read the others' from distributed shared memory; then x of the block's rows and z. No
  // global store in between, so all these loads overlap; this block's x windows are written
  // at the end.
  const ConvView<XT> cv(a.p.conv, b, kin);
  float* const Xs = smem;
  float* const Bs = smem + kRows;  // then C at Bs + N
  float* const Zs = Bs + 2 * N;
  float* const share = Zs + kRows;
  const int bc_first = H * P + g * N;  // B of group g; C is G*N channels further
  auto bc_channel = [&](int i) { return i < N ? bc_first + i : bc_first + G * N + (i - N); };
#if CLUSTERS
  cg::cluster_group cluster = cg::this_cluster();
  const int crank = static_cast<int>(cluster.block_rank());
  const int csize = static_cast<int>(cluster.num_blocks());
#else
  const int crank = 0, csize = 1;
#endif
  const int per = (2 * N + csize - 1) / csize;  // channels per block of the cluster
  for (int i0 = 0; i0 < per; i0 += 2 * kThreads) {
    const int i1 = i0 + tid, i2 = i0 + kThreads + tid;
    const int j1 = crank * per + i1, j2 = crank * per + i2;
    const bool ok1 = i1 < per && j1 < 2 * N, ok2 = i2 < per && j2 < 2 * N;
    ConvTaps t1{}, t2{};
    if (ok1) t1 = LoadTaps(cv, bc_channel(j1));
    if (ok2) t2 = LoadTaps(cv, bc_channel(j2));
    if (ok1) share[i1] = ConvOut(cv, bc_channel(j1), t1);
    if (ok2) share[i2] = ConvOut(cv, bc_channel(j2), t2);
  }
  const int x_row = block_row0 + tid;
  const bool has_x_row = tid < kRows && x_row < P;
  const XT* z_row =
      nm.z != nullptr ? static_cast<const XT*>(nm.z) + b * nm.z_row_stride + h * P : nullptr;
  ConvTaps xt{};
  if (has_x_row) {
    xt = LoadTaps(cv, h * P + x_row);
    const float zr = z_row != nullptr ? ToFloat(z_row[x_row]) : 0.0f;
    Xs[tid] = ConvOut(cv, h * P + x_row, xt);
    Zs[tid] = z_row != nullptr ? Silu(zr) : 1.0f;
  } else if (tid < kRows) {
    Xs[tid] = 0.0f;
    Zs[tid] = 0.0f;
  }
#if CLUSTERS
  cluster.sync();  // every share is written
  for (int j = tid; j < 2 * N; j += kThreads) {
    Bs[j] = cluster.map_shared_rank(share, j / per)[j % per];
  }
  cluster.sync();  // no block leaves (freeing its share) before all have read it
#else
  __syncthreads();
  for (int j = tid; j < 2 * N; j += kThreads) Bs[j] = share[j];
  __syncthreads();
#endif

  if (p.dt_bias != nullptr) dt += p.dt_bias[h];
  if (p.dt_softplus) dt = Softplus(dt);
  dt = ClampDt(dt, p.dt_min, p.dt_max);
  const float dA = expf(dt * p.A[h]);
  XT* const y_row = static_cast<XT*>(p.y) + b * p.y_batch_stride + h * P;

  float sumsq = 0.0f;
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const int row = row0 + r;
    const float x = Xs[grp * ROWS + r];
    const float dtx = dt * x;
    float acc = 0.0f;
#pragma unroll
    for (int c = 0; c < CHUNKS; ++c) {
      const int seg = c * LANES + lane;
      if (seg < a.segs) {
#pragma unroll
        for (int v = 0; v < VEC; ++v) {
          const int n = seg * VEC + v;
          s[r][c][v] = dA * s[r][c][v] + dtx * Bs[n];
          acc += Bs[N + n] * s[r][c][v];
        }
      }
    }
#pragma unroll
    for (int off = LANES / 2; off > 0; off /= 2)
      acc += __shfl_xor_sync(0xffffffffu, acc, off, LANES);
    if (row < P) {
      if (lane == 0) {
        float y = acc;
        if (p.D != nullptr) y += (p.d_per_channel ? p.D[h * P + row] : p.D[h]) * x;
        y = Round<XT>(y);
        y_row[row] = FromFloat<XT>(y);
        const float v = nm.norm_before_gate ? y : y * Zs[grp * ROWS + r];
        sumsq = fmaf(v, v, sumsq);
      }
#pragma unroll
      for (int c = 0; c < CHUNKS; ++c) {
        const int seg = c * LANES + lane;
        if (seg < a.segs) StateIO<StT, VEC>::Store(state + row * sp + seg * VEC, s[r][c]);
      }
    }
  }

  if (has_x_row) StoreShiftedWindow(cv, h * P + x_row, xt);

  // The block's sum of squares (fixed order), then arrive.
#pragma unroll
  for (int off = 16; off > 0; off /= 2) sumsq += __shfl_xor_sync(0xffffffffu, sumsq, off);
  if (tid % 32 == 0) warp_sums[tid / 32] = sumsq;
  if (lane == 0) __threadfence();  // this thread's y is visible device-wide before arriving
  __syncthreads();
  if (tid == 0) {
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < kThreads / 32; ++w) total += warp_sums[w];
    a.p.partial_sums[b * a.partials + h * a.ptiles + tile] = total;
    __threadfence();
    const int blocks = static_cast<int>(H * a.ptiles);
    is_last = atomicAdd(&a.p.arrivals[b], 1) == blocks - 1;
  }
  __syncthreads();
  if (!is_last) return;
  __threadfence();

  // Last block of the sequence. The B and C windows of every local group: every block that
  // reads them has arrived. Two channels per thread in flight.
  for (int i0 = 0; i0 < 2 * G * N; i0 += 2 * kThreads) {
    const int i1 = i0 + tid, i2 = i0 + kThreads + tid;
    ConvTaps t1{}, t2{};
    if (i1 < 2 * G * N) t1 = LoadTaps(cv, H * P + i1);
    if (i2 < 2 * G * N) t2 = LoadTaps(cv, H * P + i2);
    if (i1 < 2 * G * N) StoreShiftedWindow(cv, H * P + i1, t1);
    if (i2 < 2 * G * N) StoreShiftedWindow(cv, H * P + i2, t2);
  }

  // Sums of squares per local norm group (its blocks' partials are contiguous): the whole block
  // sums each group, every thread a fixed strided share, then a fixed-order reduction.
  float* const inv = smem;
  const int64_t blocks_per_norm = nm.group_size / P * a.ptiles;
  const int64_t norm_groups = nm.dim / nm.group_size;
  const float* partial = a.p.partial_sums + b * a.partials;
  for (int64_t k = 0; k < norm_groups; ++k) {
    const float* part = partial + k * blocks_per_norm;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t i0 = 0; i0 < blocks_per_norm; i0 += 4 * kThreads) {
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int64_t i = i0 + u * kThreads + tid;
        if (i < blocks_per_norm) acc[u] += __ldcg(part + i);
      }
    }
    float sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
#pragma unroll
    for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    __syncthreads();  // warp_sums is free again
    if (tid % 32 == 0) warp_sums[tid / 32] = sum;
    __syncthreads();
    if (tid == 0) {
      float total = 0.0f;
#pragma unroll
      for (int w = 0; w < kThreads / 32; ++w) total += warp_sums[w];
      inv[k] = rsqrtf(total / static_cast<float>(nm.group_size) + nm.eps);
    }
  }
  __syncthreads();
  NormaliseRow<XT>(a, b, inv);
  if (tid == 0) a.p.arrivals[b] = 0;  // ready for the next call
}

// Blocks per cluster: the largest of 8, 4, 2 such that clusters (consecutive blocks) never
// straddle two sequences or two groups, on a GPU with clusters (compute capability 9+); else 1.
int ClusterSize(const FusedArgs& a) {
  static const bool has_clusters = [] {
    int dev = 0, major = 0;
    return cudaGetDevice(&dev) == cudaSuccess &&
           cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
           major >= 9;
  }();
  if (!has_clusters) return 1;
  const Mamba2StateUpdateParams& p = a.p.ssm;
  const int64_t per_seq = p.num_heads * a.ptiles;
  auto group_of_block = [&](int64_t i) { return (p.first_head + i / a.ptiles) / a.hpg; };
  for (int c = 8; c > 1; c /= 2) {
    if (per_seq % c != 0) continue;
    bool one_group = true;
    for (int64_t i = 0; i < per_seq && one_group; i += c) {
      one_group = group_of_block(i) == group_of_block(i + c - 1);
    }
    if (one_group) return c;
  }
  return 1;
}

template <typename XT, typename StT, int VEC, int LANES, int CHUNKS, int ROWS>
absl::Status LaunchRows(FusedArgs a, cudaStream_t stream) {
  constexpr int kRows = (kThreads / LANES) * ROWS;
  a.ptiles = (a.p.ssm.head_dim + kRows - 1) / kRows;
  const int64_t blocks = a.p.ssm.batch * a.p.ssm.num_heads * a.ptiles;
  if (blocks > 0x7fffffffLL) return absl::InvalidArgumentError("mamba2_decode_step: grid too large");
  const int64_t norm_groups = a.p.norm.dim / a.p.norm.group_size;
  // [x | B, C | z | this block's share of B, C] (at most 2N with a cluster of one).
  const int64_t smem_floats = std::max<int64_t>(2 * kRows + 4 * a.p.ssm.d_state, norm_groups);
  const size_t smem = static_cast<size_t>(smem_floats) * sizeof(float);
  auto* kernel = Mamba2DecodeStepKernel<XT, StT, VEC, LANES, CHUNKS, ROWS>;
  if (smem > 48 * 1024) {
    CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(blocks));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  const int cluster = ClusterSize(a);
  if (cluster > 1) {
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = static_cast<unsigned>(cluster);
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
  }
  CUDA_RETURN_IF_ERROR(cudaLaunchKernelEx(&cfg, kernel, a));
  return absl::OkStatus();
}

// Few state rows (batch 1-3 of a 2.7B-size layer): two rows per thread group puts the most
// blocks in flight; more rows per group from there on (as in mamba2_state_update.cu).
template <typename XT, typename StT, int VEC, int LANES, int CHUNKS>
absl::Status LaunchLanes(const FusedArgs& a, cudaStream_t stream) {
  // At most LANES rows per group, so that a block has at most one x row per thread.
  constexpr int kManyRows = std::min(CHUNKS * VEC <= 4 ? 8 : 4, LANES);
  const int64_t state_rows = a.p.ssm.batch * a.p.ssm.num_heads * a.p.ssm.head_dim;
  if (state_rows < 16384 || CHUNKS * VEC > 8) {
    return LaunchRows<XT, StT, VEC, LANES, CHUNKS, 2>(a, stream);
  }
  return LaunchRows<XT, StT, VEC, LANES, CHUNKS, kManyRows>(a, stream);
}

template <typename XT, typename StT, int VEC>
absl::Status LaunchForSegs(const FusedArgs& a, cudaStream_t stream) {
  switch (a.segs) {  // a power of two from 8 (Mamba2DecodeStepFusable)
    case 8:
      return LaunchLanes<XT, StT, VEC, 8, 1>(a, stream);
    case 16:
      return LaunchLanes<XT, StT, VEC, 16, 1>(a, stream);
    case 32:
      return LaunchLanes<XT, StT, VEC, 32, 1>(a, stream);
    case 64:
      return LaunchLanes<XT, StT, VEC, 32, 2>(a, stream);
    default:
      return absl::InvalidArgumentError("mamba2_decode_step: unsupported d_state");
  }
}

template <typename XT>
absl::Status LaunchForState(FusedArgs& a, cudaStream_t stream) {
  if (a.p.ssm.state_dtype == DType::kF32) {
    a.segs = a.p.ssm.d_state / 4;
    return LaunchForSegs<XT, float, 4>(a, stream);
  }
  a.segs = a.p.ssm.d_state / 8;
  return LaunchForSegs<XT, uint16_t, 8>(a, stream);
}

}  // namespace

absl::Status RunMamba2DecodeStepFusedCuda(const Mamba2DecodeStepParams& p, const Stream& stream) {
  FusedArgs a;
  a.p = p;
  const Mamba2StateUpdateParams& s = p.ssm;
  a.hpg = s.heads_per_group > 0 ? s.heads_per_group : s.num_heads / s.num_groups;
  a.ptiles = 0;
  a.partials = Mamba2DecodeStepPartials(s);
  const GatedRmsNormParams& n = p.norm;
  const int64_t es = DTypeSize(n.dtype), vec = 16 / es;
  auto aligned = [&](const void* ptr, int64_t stride) {
    return ptr == nullptr ||
           (reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && (s.batch == 1 || stride % vec == 0));
  };
  a.vector_norm = n.dim % vec == 0 && n.group_size % vec == 0 && aligned(n.y, n.y_row_stride) &&
                  aligned(n.z, n.z_row_stride) && aligned(n.out, n.out_row_stride) &&
                  reinterpret_cast<uintptr_t>(n.weight) % 16 == 0;
  auto st = static_cast<cudaStream_t>(stream.handle());
  if (s.dtype == DType::kF32) return LaunchForState<float>(a, st);
  return LaunchForState<__nv_bfloat16>(a, st);
}

}  // namespace mambaserve
