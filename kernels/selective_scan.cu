// CUDA Mamba-1 selective scan (prefill).
//
// Design: one thread block per (sequence, channel tile). A channel's N states are spread over a
// group of `tpc` lanes (kNPT states each, in registers); a warp holds 32 / tpc channels and a
// block 1 or 4 warps. The block walks its sequence in chunks of K tokens: the raw rows of u,
// delta, z, B and C for chunk c + 1 are copied into shared memory with cp.async while chunk c is
// computed (double buffering), then converted once per (token, channel) into fp32 scalars (dt,
// dt_decay, dt * u, u) and once per (token, n) into fp32 B and C shared by every channel of the
// tile. The recurrence runs sequentially over the chunk's tokens; each lane updates its kNPT
// states (one ex2 each for the exponential-decay modes), y is reduced across the lane group with
// shuffles, and the epilogue adds D u, applies the silu(z) gate and stores y coalesced.
// Boundary states (prefix caching) are stored from registers at the tokens that complete a
// block; the final state at the end.
#include <algorithm>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/cuda_status.h"
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
  // Geometry.
  int tpc_log2, cpw, warps, K, npad;
  bool bc_vec;  // v2: B/C rows convert in 16-byte units (N == npad, N * esbc % 16 == 0)
  int off_yp;   // v2: per-lane partial sums of y, [K][cpb * tpc]
  int vec_u, vec_delta, vec_z, vec_B, vec_C;
  int seg_x, seg_bc;  // bytes of one raw row in shared memory (multiples of 16)
  int raw_stage_bytes, off_par, off_B, off_C, off_y, off_spb;
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

__device__ __forceinline__ void CopyRows(char* dst, int dst_rs, const char* src, int64_t src_rs,
                                         int rows, int row_bytes, int vec, int tid, int nthreads) {
  const int upr = row_bytes / vec;
  if (upr > 0 && upr <= nthreads && nthreads % upr == 0) {
    // Fixed (row, unit) pattern per thread: one division per call.
    const int k = tid % upr, step = nthreads / upr;
    for (int r = tid / upr; r < rows; r += step) {
      CopyUnit(dst + r * dst_rs + k * vec, src + r * src_rs + k * vec, vec);
    }
    return;
  }
  const int total = rows * upr;
  for (int i = tid; i < total; i += nthreads) {
    const int r = i / upr, k = i - r * upr;
    CopyUnit(dst + r * dst_rs + k * vec, src + r * src_rs + k * vec, vec);
  }
}

// ---------------------------------------------------------------------------------------------
// The prefill kernel (its second version; the first, with per-token branches and shuffles in the
// recurrence, measured 2x slower and was removed, see bench/RESULTS_mamba1.md). The work outside
// the recurrence is made cheap, since at one warp per SM sub-partition the kernel is bound by
// instruction issue and latency rather than by the exponentials:
//   - every thread converts and finishes a fixed channel (no divisions, per-channel constants in
//     registers), the element type is dispatched once per chunk;
//   - the recurrence loop has no branches or shuffles: each lane stores its partial y to shared
//     memory and the epilogue sums the tpc partials; boundary states split the loop into
//     segments instead of being tested per token;
//   - B and C are converted in 16-byte units.

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
__device__ __forceinline__ void ConvertChunkV2(const ScanArgs& a, const char* ru, const char* rd,
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
__device__ __forceinline__ void EpilogueChunkV2(const ScanArgs& a, const char* rz,
                                                const float* s_yp, const float4* s_par, int rows,
                                                int cpb, int cc, int rstep, int x_row, int tpc,
                                                float Dd, int64_t tok0, int64_t d) {
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

template <Discretization kMode, int kNPT>
__global__ void __launch_bounds__(128) SelectiveScanKernelV2(const ScanArgs a) {
  extern __shared__ __align__(16) char smem[];
  const int seq = blockIdx.y;
  const int64_t t0 = a.cu[seq];
  const int64_t len = a.cu[seq + 1] - t0;
  const int cpb = a.cpw * a.warps;
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * cpb;
  if (c0 >= a.D) return;
  const int valid_ch = static_cast<int>(min(static_cast<int64_t>(cpb), a.D - c0));
  const int tid = threadIdx.x, nthreads = blockDim.x;
  const int warp = tid >> 5, lane = tid & 31;
  const int tpc = 1 << a.tpc_log2;
  const int slot = lane >> a.tpc_log2;
  const int sub = lane & (tpc - 1);
  const int cl = warp * a.cpw + min(slot, a.cpw - 1);
  const int64_t d = c0 + cl;
  const bool ch_valid = slot < a.cpw && cl < valid_ch;
  const int64_t g = c0 / a.dpg;
  const int64_t N = a.N;
  // The channel this thread converts and finishes, and its rows t = tid / cpb + k * rstep.
  const int cc = tid % cpb;
  const int rstep = nthreads / cpb;
  const bool cc_valid = cc < valid_ch;
  const float bias = (cc_valid && a.delta_bias) ? a.delta_bias[c0 + cc] : 0.0f;
  const float spb =
      (cc_valid && kMode == Discretization::kEventDriven) ? DevSoftplus(a.bias_A[c0 + cc]) : 0.0f;
  const float Dd = (cc_valid && a.Dv) ? a.Dv[c0 + cc] : 0.0f;

  float h[kNPT], Ar[kNPT];
  const int64_t in_blk = a.init_blk ? a.init_blk[seq] : 0;
#pragma unroll
  for (int j = 0; j < kNPT; ++j) {
    const int64_t n = sub * kNPT + j;
    const bool valid = ch_valid && n < N;
    Ar[j] = valid ? PrepareA<kMode>(a.A[d * N + n]) : 0.0f;
    h[j] = (valid && in_blk != 0) ? LoadElem(a.pool, a.st_dt, in_blk * a.block_stride + d * N + n)
                                  : 0.0f;
  }

  float4* s_par = reinterpret_cast<float4*>(smem + a.off_par);
  float* s_B = reinterpret_cast<float*>(smem + a.off_B);
  float* s_C = reinterpret_cast<float*>(smem + a.off_C);
  float* s_yp = reinterpret_cast<float*>(smem + a.off_yp);
  const int K = a.K;
  auto raw_u = [&](int stage) { return smem + stage * a.raw_stage_bytes; };
  auto raw_delta = [&](int stage) { return raw_u(stage) + K * a.seg_x; };
  auto raw_z = [&](int stage) { return raw_u(stage) + 2 * K * a.seg_x; };
  auto raw_B = [&](int stage) { return raw_u(stage) + 3 * K * a.seg_x; };
  auto raw_C = [&](int stage) { return raw_B(stage) + K * a.seg_bc; };

  auto issue = [&](int64_t cs, int stage) {
    const int rows = static_cast<int>(min(static_cast<int64_t>(K), len - cs));
    const int64_t row0 = t0 + cs;
    CopyRows(raw_u(stage), a.seg_x, a.u + (row0 * a.u_rs + c0) * a.esx, a.u_rs * a.esx, rows,
             valid_ch * a.esx, a.vec_u, tid, nthreads);
    CopyRows(raw_delta(stage), a.seg_x, a.delta + (row0 * a.delta_rs + c0) * a.esx,
             a.delta_rs * a.esx, rows, valid_ch * a.esx, a.vec_delta, tid, nthreads);
    if (a.z) {
      CopyRows(raw_z(stage), a.seg_x, a.z + (row0 * a.z_rs + c0) * a.esx, a.z_rs * a.esx, rows,
               valid_ch * a.esx, a.vec_z, tid, nthreads);
    }
    CopyRows(raw_B(stage), a.seg_bc, a.B + (row0 * a.B_rs + g * a.B_gs) * a.esbc, a.B_rs * a.esbc,
             rows, static_cast<int>(N) * a.esbc, a.vec_B, tid, nthreads);
    CopyRows(raw_C(stage), a.seg_bc, a.C + (row0 * a.C_rs + g * a.C_gs) * a.esbc, a.C_rs * a.esbc,
             rows, static_cast<int>(N) * a.esbc, a.vec_C, tid, nthreads);
  };

  int64_t next_b = -1, bj = 0;
  if (a.block_size > 0) next_b = a.block_size - a.prefix[seq] % a.block_size - 1;

  const int64_t num_chunks = (len + K - 1) / K;
  const int x_row = a.seg_x / a.esx, bc_row = a.seg_bc / a.esbc;
  if (num_chunks > 0) issue(0, 0);
  CpAsyncCommit();
  for (int64_t c = 0; c < num_chunks; ++c) {
    const int64_t cs = c * K;
    const int rows = static_cast<int>(min(static_cast<int64_t>(K), len - cs));
    const int stage = static_cast<int>(c & 1);
    if (c + 1 < num_chunks) issue(cs + K, stage ^ 1);
    CpAsyncCommit();
    CpAsyncWait1();
    __syncthreads();
    // Convert.
    if (cc_valid) {
      if (a.x_dt == kBF16) {
        ConvertChunkV2<kMode, __nv_bfloat16>(a, raw_u(stage), raw_delta(stage), s_par, rows, cpb,
                                             cc, rstep, x_row, bias, spb, t0 + cs);
      } else if (a.x_dt == kF16) {
        ConvertChunkV2<kMode, __half>(a, raw_u(stage), raw_delta(stage), s_par, rows, cpb, cc,
                                      rstep, x_row, bias, spb, t0 + cs);
      } else {
        ConvertChunkV2<kMode, float>(a, raw_u(stage), raw_delta(stage), s_par, rows, cpb, cc, rstep,
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
    // The recurrence, in segments that end at block boundaries.
    int t = 0;
    while (t < rows) {
      int end = rows;
      bool hit = false;
      if (next_b >= cs && next_b < cs + rows) {
        end = static_cast<int>(next_b - cs) + 1;
        hit = true;
      }
#pragma unroll 4
      for (; t < end; ++t) {
        const float4 p = s_par[t * cpb + cl];
        const TokenScalars ts{p.x, p.y, p.z, p.w};
        float Bv[kNPT], Cv[kNPT];
#pragma unroll
        for (int j = 0; j < kNPT; j += 4) {
          const float4 b4 = *reinterpret_cast<const float4*>(s_B + t * a.npad + sub * kNPT + j);
          const float4 c4 = *reinterpret_cast<const float4*>(s_C + t * a.npad + sub * kNPT + j);
          Bv[j] = b4.x, Bv[j + 1] = b4.y, Bv[j + 2] = b4.z, Bv[j + 3] = b4.w;
          Cv[j] = c4.x, Cv[j + 1] = c4.y, Cv[j + 2] = c4.z, Cv[j + 3] = c4.w;
        }
        float yp = 0.0f;
#pragma unroll
        for (int j = 0; j < kNPT; ++j) {
          h[j] = StepState<kMode>(h[j], Ar[j], Bv[j], ts);
          yp = fmaf(Cv[j], h[j], yp);
        }
        if (ch_valid) s_yp[(t * cpb + cl) * tpc + sub] = yp;
      }
      if (hit) {
        const int64_t dst = a.bnd[seq * a.bnd_stride + bj];
        if (dst != 0 && ch_valid) {
#pragma unroll
          for (int j = 0; j < kNPT; ++j) {
            const int64_t n = sub * kNPT + j;
            if (n < N) StoreElem(a.pool, a.st_dt, dst * a.block_stride + d * N + n, h[j]);
          }
        }
        ++bj;
        next_b += a.block_size;
      }
    }
    __syncthreads();
    // Epilogue.
    if (cc_valid) {
      if (a.x_dt == kBF16) {
        EpilogueChunkV2<__nv_bfloat16>(a, raw_z(stage), s_yp, s_par, rows, cpb, cc, rstep, x_row,
                                       tpc, Dd, t0 + cs, c0 + cc);
      } else if (a.x_dt == kF16) {
        EpilogueChunkV2<__half>(a, raw_z(stage), s_yp, s_par, rows, cpb, cc, rstep, x_row, tpc, Dd,
                                t0 + cs, c0 + cc);
      } else {
        EpilogueChunkV2<float>(a, raw_z(stage), s_yp, s_par, rows, cpb, cc, rstep, x_row, tpc, Dd,
                               t0 + cs, c0 + cc);
      }
    }
    __syncthreads();
  }
  const int64_t out_blk = a.final_blk ? a.final_blk[seq] : 0;
  if (out_blk != 0 && ch_valid) {
#pragma unroll
    for (int j = 0; j < kNPT; ++j) {
      const int64_t n = sub * kNPT + j;
      if (n < N) StoreElem(a.pool, a.st_dt, out_blk * a.block_stride + d * N + n, h[j]);
    }
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

template <Discretization kMode, int kNPT>
absl::Status Launch(const ScanArgs& a, dim3 grid, int smem_bytes, cudaStream_t st) {
  auto kernel = SelectiveScanKernelV2<kMode, kNPT>;
  CUDA_RETURN_IF_ERROR(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes));
  kernel<<<grid, a.warps * 32, smem_bytes, st>>>(a);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

template <int kNPT>
absl::Status LaunchMode(Discretization mode, const ScanArgs& a, dim3 grid, int smem,
                        cudaStream_t st) {
  switch (mode) {
    case Discretization::kDefault:
      return Launch<Discretization::kDefault, kNPT>(a, grid, smem, st);
    case Discretization::kZoh:
      return Launch<Discretization::kZoh, kNPT>(a, grid, smem, st);
    case Discretization::kBilinear:
      return Launch<Discretization::kBilinear, kNPT>(a, grid, smem, st);
    case Discretization::kDirac:
      return Launch<Discretization::kDirac, kNPT>(a, grid, smem, st);
    case Discretization::kEventDriven:
      return Launch<Discretization::kEventDriven, kNPT>(a, grid, smem, st);
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
  const int64_t warps_needed = p.num_seqs * ((p.dim + cpw - 1) / cpw);
  int warps = warps_needed >= 16LL * sms ? 4 : 1;
  if (p.n_groups > 1) {
    while (warps > 1 && a.dpg % (warps * cpw) != 0) warps /= 2;
  }
  if (const char* w = std::getenv("MS_MAMBA1_SCAN_WARPS")) {  // tuning knob (benchmarks)
    const int forced = std::atoi(w);
    if (forced >= 1 && forced <= 4 && (p.n_groups == 1 || a.dpg % (forced * cpw) == 0)) {
      warps = forced;
    }
  }
  a.warps = warps;
  const int cpb = cpw * warps;
  int K = std::clamp(2048 / a.npad, 8, 64);
  if (warps > 1) K = std::max(8, K / 2);
  a.K = K;
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
  a.raw_stage_bytes = 3 * K * a.seg_x + 2 * K * a.seg_bc;
  a.off_par = 2 * a.raw_stage_bytes;
  a.off_B = a.off_par + K * cpb * 16;
  a.off_C = a.off_B + K * a.npad * 4;
  a.off_y = a.off_C + K * a.npad * 4;
  a.off_spb = a.off_y + K * cpb * 4;
  a.off_yp = a.off_spb + RoundUp16(cpb * 4);
  const int smem = a.off_yp + K * cpb * tpc * 4;
  a.bc_vec = p.d_state == a.npad && (p.d_state * a.esbc) % 16 == 0 &&
             ((a.seg_bc / 16) & (a.seg_bc / 16 - 1)) == 0;
  dim3 grid(static_cast<unsigned>((p.dim + cpb - 1) / cpb), static_cast<unsigned>(p.num_seqs));
  if (npt == 4) return LaunchMode<4>(p.mode, a, grid, smem, st);
  return LaunchMode<8>(p.mode, a, grid, smem, st);
}

}  // namespace mambaserve
