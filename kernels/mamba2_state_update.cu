// CUDA Mamba-2 state update (decode). Memory-bound: every state element is read once and written
// once per call (per token written in speculative mode), so the kernel streams the state with
// 16-byte loads/stores while B and C of the (sequence, token, group) sit in shared memory.
//
// Work split: one thread block (128 threads) per (sequence, head, tile of P rows). Inside the
// block, "row groups" of LANES threads each own ROWS consecutive rows p; lane l of a group holds
// the vectors l, l + LANES, ... (CHUNKS of them, VEC elements each) of every one of its rows in
// registers for all tokens of the call. y[p] = <C, s[p]> is a shuffle reduction over the group.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/cuda_status.h"
#include "core/dependent_launch.cuh"
#include "core/resident_blocks.h"
#include "core/status_macros.h"
#include "kernels/cuda_dtype.cuh"
#include "kernels/mamba2_state_update.h"
#include "kernels/mamba2_state_update_internal.h"
#include "kernels/mamba_math.h"
#include "kernels/state_io.cuh"

namespace mambaserve {
namespace {

constexpr int kThreads = 128;

struct KernelArgs {
  Mamba2StateUpdateParams p;
  int64_t hpg;         // heads per group
  int64_t out_stride;  // state_block_out row stride
  int64_t ptiles;      // tiles of P per head
  int64_t segs;        // vectors per state row (N / VEC)
};

// Rows per row group: 8 x 16 bytes in flight per thread for the common N = 128 fp32 state.
template <int VALS>
constexpr int RowsFor() {
  return VALS <= 4 ? 8 : (VALS <= 8 ? 4 : (VALS <= 16 ? 2 : 1));
}
// Resident blocks per SM asked of the register allocator. Rows of <= 32 floats per thread (the
// default from B = 16 up) take 6 x 128 threads (<= 85 registers): 3-5% faster than 5 at B = 16-256
// on an H100 and the 16-layer model 4% faster at batch 64. The <= 8-float instantiations (the
// small-batch default, rows = 2) keep 5 (<= 102 registers): with 6 the 64-layer model's batch-1
// step was 5% slower (2.88 vs 2.73 ms, bench/RESULTS_mamba2_decode.md). Wide states get fewer.
template <int STATE_FLOATS>
constexpr int MinBlocksFor() {
  return STATE_FLOATS <= 8 ? 5 : (STATE_FLOATS <= 32 ? 6 : (STATE_FLOATS <= 64 ? 3 : 2));
}

template <typename StT, int VEC, int LANES, int CHUNKS, int ROWS>
__global__ void __launch_bounds__(kThreads, MinBlocksFor<ROWS * CHUNKS * VEC>())
    Mamba2StateUpdateKernel(const KernelArgs a) {
  extern __shared__ float smem[];  // B[N], C[N], x and z of the block's rows (current token)
  // Launched as a dependent (LaunchRows): the gated norm after it may launch now.
  AllowNextKernelLaunch();
  if (!a.p.read_state_before_wait) WaitForPreviousKernels();
  const Mamba2StateUpdateParams& p = a.p;
  constexpr int kGroups = kThreads / LANES;
  int64_t bid = blockIdx.x;
  const int64_t tile = bid % a.ptiles;
  bid /= a.ptiles;
  const int64_t h = bid % p.num_heads;
  const int64_t b = bid / p.num_heads;
  const int64_t kin = p.state_block_in[b];
  if (kin == 0) return;  // uniform over the block

  const int lane = threadIdx.x % LANES;
  const int grp = threadIdx.x / LANES;
  const int64_t P = p.head_dim, N = p.d_state;
  const int64_t row0 = (tile * kGroups + grp) * ROWS;
  const int64_t g = (p.first_head + h) / a.hpg - p.first_group;
  const float A = p.A[h];  // per-head constants load before the wait
  const float dt_bias = p.dt_bias != nullptr ? p.dt_bias[h] : 0.0f;
  StT* const state = static_cast<StT*>(p.state);
  const int64_t head_off = h * p.state_head_stride;

  // Token 0's small inputs (this thread's entry of B, C and of the block's x rows, and dt) are
  // outputs of the previous kernels. Without read_state_before_wait (the kernel waited at its
  // start) they are requested before the state, so their latency overlaps the state loads; with
  // it the state loads go first, overlapping the previous kernel, and these follow the wait. (A
  // second wait after the state loads also when it is not needed cost 10% at B = 64-256:
  // griddepcontrol.wait seems to let the loads before it drain.)
  constexpr int kRowsPerBlock = kGroups * ROWS;
  const int64_t block_row0 = tile * kRowsPerBlock;
  const int tid = threadIdx.x;
  float b_pre = 0.0f, c_pre = 0.0f, x_pre = 0.0f, dt_pre = 0.0f;
  auto load_token0_inputs = [&] {
    const int64_t bo0 = b * p.B_batch_stride + g * p.B_group_stride;
    const int64_t co0 = b * p.C_batch_stride + g * p.C_group_stride;
    const int64_t xo0 = b * p.x_batch_stride + h * p.x_head_stride;
    if (tid < N) b_pre = LoadF(p.B, p.dtype, bo0 + tid);
    if (tid < N) c_pre = LoadF(p.C, p.dtype, co0 + tid);
    if (tid < kRowsPerBlock && block_row0 + tid < P) {
      x_pre = LoadF(p.x, p.dtype, xo0 + block_row0 + tid);
    }
    dt_pre = LoadF(p.dt, p.dt_dtype, b * p.dt_batch_stride + h * p.dt_head_stride);
  };
  if (!p.read_state_before_wait) load_token0_inputs();

  float s[ROWS][CHUNKS][VEC];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const int64_t row = row0 + r;
#pragma unroll
    for (int c = 0; c < CHUNKS; ++c) {
      const int64_t seg = static_cast<int64_t>(c) * LANES + lane;
      if (row < P && seg < a.segs) {
        StateIO<StT, VEC>::Load(
            state + kin * p.state_block_stride + head_off + row * p.state_p_stride + seg * VEC,
            s[r][c]);
      } else {
#pragma unroll
        for (int v = 0; v < VEC; ++v) s[r][c][v] = 0.0f;
      }
    }
  }
  if (p.read_state_before_wait) {
    WaitForPreviousKernels();
    load_token0_inputs();
  }

  // Per token: B, C, and x and z of the block's rows, staged so the row loop below issues no
  // global load (loading z[row] after each row's reduction and using it at once was 0.6-1.4%
  // slower on the H100, bench/RESULTS_mamba2_decode.md).
  float* const Bs = smem;
  float* const Cs = smem + N;
  float* const Xs = smem + 2 * N;
  float* const Zs = Xs + kRowsPerBlock;
  for (int64_t t = 0; t < p.tokens_per_seq; ++t) {
    if (t > 0) __syncthreads();  // everyone is done with the previous token's B, C, x, z
    const int64_t bo = b * p.B_batch_stride + t * p.B_token_stride + g * p.B_group_stride;
    const int64_t co = b * p.C_batch_stride + t * p.C_token_stride + g * p.C_group_stride;
    const int64_t xo = b * p.x_batch_stride + t * p.x_token_stride + h * p.x_head_stride;
    for (int64_t i = tid; i < N; i += kThreads) {
      Bs[i] = (t == 0 && i == tid) ? b_pre : LoadF(p.B, p.dtype, bo + i);
      Cs[i] = (t == 0 && i == tid) ? c_pre : LoadF(p.C, p.dtype, co + i);
    }
    const int64_t zo = b * p.z_batch_stride + t * p.z_token_stride + h * p.z_head_stride;
    for (int i = tid; i < kRowsPerBlock; i += kThreads) {
      const bool in_head = block_row0 + i < P;
      Xs[i] = (t == 0 && i == tid) ? x_pre
                                   : (in_head ? LoadF(p.x, p.dtype, xo + block_row0 + i) : 0.0f);
      if (p.z != nullptr) Zs[i] = in_head ? LoadF(p.z, p.dtype, zo + block_row0 + i) : 0.0f;
    }
    __syncthreads();

    float dt = t == 0 ? dt_pre
                      : LoadF(p.dt, p.dt_dtype,
                              b * p.dt_batch_stride + t * p.dt_token_stride + h * p.dt_head_stride);
    dt += dt_bias;
    if (p.dt_softplus) dt = Softplus(dt);
    dt = ClampDt(dt, p.dt_min, p.dt_max);
    const float dA = expf(dt * A);

    int64_t kout = -1;
    if (p.state_block_out != nullptr) {
      kout = p.state_block_out[b * a.out_stride + t];
    } else if (t == p.tokens_per_seq - 1) {
      kout = kin;
    }

#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      const int64_t row = row0 + r;
      const bool row_ok = row < P;
      const float x = Xs[grp * ROWS + r];
      const float dtx = dt * x;
      float acc = 0.0f;
#pragma unroll
      for (int c = 0; c < CHUNKS; ++c) {
        const int64_t seg = static_cast<int64_t>(c) * LANES + lane;
        if (seg < a.segs) {
#pragma unroll
          for (int v = 0; v < VEC; ++v) {
            const int64_t n = seg * VEC + v;
            s[r][c][v] = dA * s[r][c][v] + dtx * Bs[n];
            acc += Cs[n] * s[r][c][v];
          }
        }
      }
#pragma unroll
      for (int off = LANES / 2; off > 0; off /= 2)
        acc += __shfl_xor_sync(0xffffffffu, acc, off, LANES);
      if (row_ok && lane == 0) {
        float y = acc;
        if (p.D != nullptr) y += (p.d_per_channel ? p.D[h * P + row] : p.D[h]) * x;
        if (p.z != nullptr) y *= Silu(Zs[grp * ROWS + r]);
        StoreF(p.y, p.dtype,
               b * p.y_batch_stride + t * p.y_token_stride + h * p.y_head_stride + row, y);
      }
      if (row_ok && kout > 0) {
#pragma unroll
        for (int c = 0; c < CHUNKS; ++c) {
          const int64_t seg = static_cast<int64_t>(c) * LANES + lane;
          if (seg < a.segs) {
            StateIO<StT, VEC>::Store(
                state + kout * p.state_block_stride + head_off + row * p.state_p_stride + seg * VEC,
                s[r][c]);
          }
        }
      }
      if constexpr (sizeof(StT) == 2) {
        // The carried state is rounded like a stored one, so T_s tokens equal T_s calls.
#pragma unroll
        for (int c = 0; c < CHUNKS; ++c)
#pragma unroll
          for (int v = 0; v < VEC; ++v)
            s[r][c][v] = __bfloat162float(__float2bfloat16_rn(s[r][c][v]));
      }
    }
  }
}

template <typename StT, int VEC, int LANES, int CHUNKS, int ROWS>
absl::Status LaunchRows(const KernelArgs& a0, cudaStream_t stream) {
  constexpr int kRowsPerBlock = (kThreads / LANES) * ROWS;
  KernelArgs a = a0;
  a.ptiles = (a.p.head_dim + kRowsPerBlock - 1) / kRowsPerBlock;
  const int64_t blocks = a.p.batch * a.p.num_heads * a.ptiles;
  if (blocks > 0x7fffffffLL)
    return absl::InvalidArgumentError("mamba2_state_update: grid too large");
  const size_t smem = (2 * static_cast<size_t>(a.p.d_state) + 2 * kRowsPerBlock) * sizeof(float);
  auto kernel = Mamba2StateUpdateKernel<StT, VEC, LANES, CHUNKS, ROWS>;
  if (smem > 48 * 1024) {
    CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              static_cast<int>(smem)));
  }
  if (a.p.read_state_before_wait) {
    // Reading the state before the wait pays only where blocks overlap the previous kernel: a
    // grid of one wave. Blocks of later waves start after it anyway, and then requesting the
    // small inputs first is faster.
    ASSIGN_OR_RETURN(const int64_t resident,
                     ResidentBlocks(reinterpret_cast<const void*>(kernel), kThreads, smem));
    a.p.read_state_before_wait = blocks <= resident;
  }
  CUDA_RETURN_IF_ERROR(LaunchDependent(kernel, dim3(static_cast<unsigned>(blocks)), dim3(kThreads),
                                       smem, stream, a));
  return absl::OkStatus();
}

// Rows per thread group: `rows` (2, 4, 8; 16 for rows of <= 4 floats) when the per-thread
// row is small (<= 8 floats),
// else RowsFor. rows == 0: the default policy (see RunMamba2StateUpdateCuda).
template <typename StT, int VEC, int LANES, int CHUNKS>
absl::Status Launch(const KernelArgs& a, cudaStream_t stream, int rows) {
  constexpr int kVals = CHUNKS * VEC;
  if constexpr (kVals <= 8) {
    if (rows == 0) rows = RowsFor<kVals>();
    if (rows <= 2) return LaunchRows<StT, VEC, LANES, CHUNKS, 2>(a, stream);
    if (rows <= 4) return LaunchRows<StT, VEC, LANES, CHUNKS, 4>(a, stream);
    if constexpr (kVals <= 4) {
      if (rows >= 16) return LaunchRows<StT, VEC, LANES, CHUNKS, 16>(a, stream);
    }
    return LaunchRows<StT, VEC, LANES, CHUNKS, 8>(a, stream);
  } else {
    return LaunchRows<StT, VEC, LANES, CHUNKS, RowsFor<kVals>()>(a, stream);
  }
}

// Picks (LANES, CHUNKS) for `segs` vectors per row: LANES lanes cover min(segs, 32) (rounded
// up to a power of two >= 4), CHUNKS = ceil(segs / 32) rounded up to a power of two <= 16.
template <typename StT, int VEC>
absl::Status LaunchForSegs(const KernelArgs& a, cudaStream_t stream, int rows) {
  const int64_t segs = a.segs;
  if (segs <= 4) return Launch<StT, VEC, 4, 1>(a, stream, rows);
  if (segs <= 8) return Launch<StT, VEC, 8, 1>(a, stream, rows);
  if (segs <= 16) return Launch<StT, VEC, 16, 1>(a, stream, rows);
  if (segs <= 32) return Launch<StT, VEC, 32, 1>(a, stream, rows);
  if (segs <= 64) return Launch<StT, VEC, 32, 2>(a, stream, rows);
  if (segs <= 128) return Launch<StT, VEC, 32, 4>(a, stream, rows);
  if (segs <= 256) return Launch<StT, VEC, 32, 8>(a, stream, rows);
  if (segs <= 512) return Launch<StT, VEC, 32, 16>(a, stream, rows);
  return absl::UnimplementedError(
      absl::StrCat("mamba2_state_update: d_state ", a.p.d_state, " too large for the CUDA kernel"));
}

template <typename StT, int VEC>
bool CanVectorize(const Mamba2StateUpdateParams& p) {
  return p.d_state % VEC == 0 && p.state_block_stride % VEC == 0 &&
         p.state_head_stride % VEC == 0 && p.state_p_stride % VEC == 0 &&
         reinterpret_cast<uintptr_t>(p.state) % 16 == 0;
}

absl::Status RunWithRows(const Mamba2StateUpdateParams& p, const Stream& stream, int rows) {
  KernelArgs a;
  a.p = p;
  a.hpg = p.heads_per_group > 0 ? p.heads_per_group : p.num_heads / p.num_groups;
  a.out_stride = p.state_block_out_stride > 0 ? p.state_block_out_stride : p.tokens_per_seq;
  a.ptiles = 0;
  auto s = static_cast<cudaStream_t>(stream.handle());
  if (p.state_dtype == DType::kF32) {
    if (CanVectorize<float, 4>(p)) {
      a.segs = p.d_state / 4;
      return LaunchForSegs<float, 4>(a, s, rows);
    }
    a.segs = p.d_state;
    return LaunchForSegs<float, 1>(a, s, rows);
  }
  if (CanVectorize<uint16_t, 8>(p)) {
    a.segs = p.d_state / 8;
    return LaunchForSegs<uint16_t, 8>(a, s, rows);
  }
  a.segs = p.d_state;
  return LaunchForSegs<uint16_t, 1>(a, s, rows);
}

}  // namespace

absl::Status RunMamba2StateUpdateCuda(const Mamba2StateUpdateParams& p, const Stream& stream) {
  // Few state rows (decode at batch 1-3 of a 2.7B-size layer): two rows per thread group gives
  // the most blocks in flight (H100 sweep in bench/RESULTS_mamba2_decode.md: 9.1 us vs 11.7 us
  // at B=1); from B=16 up the default's wider groups win.
  const int64_t state_rows = p.batch * p.num_heads * p.head_dim;
  return RunWithRows(p, stream, state_rows < 16384 ? 2 : 0);
}

absl::Status RunMamba2StateUpdateCudaRows(const Mamba2StateUpdateParams& p, const Stream& stream,
                                          int rows) {
  if (!stream.is_cuda())
    return absl::InvalidArgumentError("RunMamba2StateUpdateCudaRows: CPU stream");
  RETURN_IF_ERROR(ValidateMamba2StateUpdate(p));
  if (p.batch == 0) return absl::OkStatus();
  return RunWithRows(p, stream, rows);
}

}  // namespace mambaserve
