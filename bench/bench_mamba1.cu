// bench_mamba1: the Mamba-1 selective scan (prefill) and decode update on a Mamba-2.8B layer
// (d_inner 5120, N 16, bf16 activations, fp32 state), CUDA only.
//
// Prints, per case: median time (CUDA events, after warmup), achieved GB/s over the bytes the op
// must move (prefill: u, delta, B, C, z read and y written; decode: the same plus the state read
// and written), the D2D cudaMemcpy bandwidth measured in this program (1 GiB, counted as read +
// write bytes / time) and the percentage of it, and the exponential bound: d_inner * N
// exponentials per token over the special-function unit's throughput, taken as
// SMs x 16 MUFU ops/clk/SM x the clock cudaDeviceProp reports (the sm_90 rate; the boost clock
// the GPU actually runs at may differ).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/bench_cuda.h"
#include "bench/bench_util.h"
#include "core/dtype.h"
#include "core/stream.h"
#include "kernels/mamba1_state_update.h"
#include "kernels/selective_scan.h"

namespace mambaserve {
namespace {

#define CKS(x)                                                         \
  do {                                                                 \
    absl::Status s_ = (x);                                             \
    if (!s_.ok()) {                                                    \
      std::fprintf(stderr, "error at %s:%d: %s\n", __FILE__, __LINE__, \
                   std::string(s_.message()).c_str());                 \
      std::exit(1);                                                    \
    }                                                                  \
  } while (0)

__device__ __forceinline__ float HashUniform(uint64_t i, uint32_t seed) {
  uint64_t x = i * 0x9E3779B97F4A7C15ull + seed * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 31;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 29;
  return static_cast<float>(x >> 40) * (1.0f / 16777216.0f);
}

__global__ void FillBf16(uint16_t* p, int64_t n, float lo, float hi, uint32_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = lo + (hi - lo) * HashUniform(i, seed);
    uint32_t u = __float_as_uint(v);
    u += 0x7fffu + ((u >> 16) & 1u);
    p[i] = static_cast<uint16_t>(u >> 16);
  }
}

__global__ void FillF32(float* p, int64_t n, float lo, float hi, uint32_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    p[i] = lo + (hi - lo) * HashUniform(i, seed);
  }
}

__global__ void NegExpF32(float* p, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    p[i] = -expf(p[i]);
  }
}

template <typename T>
T* DevAlloc(int64_t n) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, std::max<int64_t>(n, 1) * sizeof(T)));
  return static_cast<T*>(p);
}

void Bf16Rand(uint16_t* p, int64_t n, float lo, float hi, uint32_t seed) {
  FillBf16<<<1024, 256>>>(p, n, lo, hi, seed);
  CHECK_CUDA(cudaGetLastError());
}
void F32Rand(float* p, int64_t n, float lo, float hi, uint32_t seed) {
  FillF32<<<1024, 256>>>(p, n, lo, hi, seed);
  CHECK_CUDA(cudaGetLastError());
}

// Median over `reps` samples of the mean time of `inner` back-to-back calls, in seconds.
template <typename F>
double TimeIt(F&& f, cudaStream_t st, int warmup, int reps, int inner) {
  for (int i = 0; i < warmup; ++i) f();
  CHECK_CUDA(cudaStreamSynchronize(st));
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  std::vector<double> samples;
  for (int r = 0; r < reps; ++r) {
    CHECK_CUDA(cudaEventRecord(a, st));
    for (int i = 0; i < inner; ++i) f();
    CHECK_CUDA(cudaEventRecord(b, st));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    samples.push_back(ms * 1e-3 / inner);
  }
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
  return Median(samples);
}

constexpr int64_t kDim = 5120, kN = 16, kDtRank = 160;

}  // namespace
}  // namespace mambaserve

int main(int argc, char** argv) {
  using namespace mambaserve;
  // --quick: two prefill cases; --sweep: every prefill case also at forced launch geometries;
  // --decode: the decode table only.
  bool quick = false, sweep = false, decode_only = false;
  for (int i = 1; i < argc; ++i) {
    quick = quick || std::string(argv[i]) == "--quick";
    sweep = sweep || std::string(argv[i]) == "--sweep";
    decode_only = decode_only || std::string(argv[i]) == "--decode";
  }
  int dev = 0;
  CHECK_CUDA(cudaSetDevice(dev));
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, dev));
  int clock_khz = 0, sms = 0;
  CHECK_CUDA(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, dev));
  CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const double sfu_rate = static_cast<double>(sms) * 16.0 * clock_khz * 1e3;  // exps / s
  auto stream_or = Stream::Create(Device::Cuda(dev));
  if (!stream_or.ok()) {
    std::fprintf(stderr, "stream: %s\n", std::string(stream_or.status().message()).c_str());
    return 1;
  }
  Stream stream = std::move(stream_or).value();
  cudaStream_t st = static_cast<cudaStream_t>(stream.handle());

  // Copy bandwidth: D2D cudaMemcpy of 1 GiB, read + write bytes / time.
  const int64_t copy_bytes = 1LL << 30;
  char* c0 = DevAlloc<char>(copy_bytes);
  char* c1 = DevAlloc<char>(copy_bytes);
  CHECK_CUDA(cudaMemsetAsync(c0, 1, copy_bytes, st));
  const double t_copy =
      TimeIt([&] { CHECK_CUDA(cudaMemcpyAsync(c1, c0, copy_bytes, cudaMemcpyDeviceToDevice, st)); },
             st, 2, 9, 1);
  const double copy_bw = 2.0 * copy_bytes / t_copy;
  CHECK_CUDA(cudaFree(c0));
  CHECK_CUDA(cudaFree(c1));
  std::printf(
      "# bench_mamba1 on %s: %d SMs, clock %.0f MHz (cudaDevAttrClockRate), HBM bus %d bit\n",
      prop.name, sms, clock_khz / 1e3, prop.memoryBusWidth);
  std::printf("# D2D cudaMemcpy 1 GiB: %.3f ms -> %.0f GB/s (read + write)\n", t_copy * 1e3,
              copy_bw / 1e9);
  std::printf("# SFU exp throughput assumed: %d SMs x 16/clk x %.0f MHz = %.2f Texp/s\n", sms,
              clock_khz / 1e3, sfu_rate / 1e12);
  std::printf(
      "# Mamba-2.8B layer: d_inner %lld, N %lld, bf16 u/delta/z/B/C/y, fp32 A/D/state, "
      "mode default, delta_softplus, z gate, D skip\n",
      static_cast<long long>(kDim), static_cast<long long>(kN));

  // Shared weights.
  float* A = DevAlloc<float>(kDim * kN);
  F32Rand(A, kDim * kN, std::log(0.5f), std::log(16.0f), 11);
  NegExpF32<<<256, 256>>>(A, kDim * kN);
  CHECK_CUDA(cudaGetLastError());
  float* Dv = DevAlloc<float>(kDim);
  F32Rand(Dv, kDim, -1.0f, 1.0f, 12);
  float* dbias = DevAlloc<float>(kDim);
  F32Rand(dbias, kDim, -4.0f, -1.0f, 13);

  std::printf("\n## Prefill (selective scan)\n\n");
  std::printf(
      "| batch x L | geometry | tokens | time (us) | GB/s | %% of copy BW | "
      "exp bound (us) | time / exp bound |\n|---|---|---|---|---|---|---|---|\n");
  struct Case {
    int64_t b, L;
  };
  std::vector<Case> cases = {{1, 4096}, {1, 16384}, {1, 65536}, {8, 4096}};
  if (quick) cases = {{1, 4096}, {8, 4096}};
  if (decode_only) cases.clear();
  for (const Case& cs : cases) {
    const int64_t T = cs.b * cs.L;
    // in_proj output [x | z] rows of 2 d_inner, x_proj output [dt_low | B | C].
    uint16_t* xz = DevAlloc<uint16_t>(T * 2 * kDim);
    uint16_t* delta = DevAlloc<uint16_t>(T * kDim);
    uint16_t* xdbl = DevAlloc<uint16_t>(T * (kDtRank + 2 * kN));
    uint16_t* y = DevAlloc<uint16_t>(T * kDim);
    Bf16Rand(xz, T * 2 * kDim, -1.0f, 1.0f, 21);
    Bf16Rand(delta, T * kDim, -3.0f, 0.0f, 22);
    Bf16Rand(xdbl, T * (kDtRank + 2 * kN), -1.0f, 1.0f, 23);
    const int64_t blocks = 2 * cs.b + 1;
    float* pool = DevAlloc<float>(blocks * kDim * kN);
    CHECK_CUDA(cudaMemset(pool, 0, blocks * kDim * kN * sizeof(float)));
    std::vector<int32_t> cu(cs.b + 1), init(cs.b), fin(cs.b);
    for (int64_t s = 0; s <= cs.b; ++s) cu[s] = static_cast<int32_t>(s * cs.L);
    for (int64_t s = 0; s < cs.b; ++s) {
      init[s] = static_cast<int32_t>(1 + s);
      fin[s] = static_cast<int32_t>(1 + cs.b + s);
    }
    int32_t* dcu = DevAlloc<int32_t>(cs.b + 1);
    int32_t* dinit = DevAlloc<int32_t>(cs.b);
    int32_t* dfin = DevAlloc<int32_t>(cs.b);
    CHECK_CUDA(cudaMemcpy(dcu, cu.data(), cu.size() * 4, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(dinit, init.data(), init.size() * 4, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(dfin, fin.data(), fin.size() * 4, cudaMemcpyHostToDevice));
    SelectiveScanParams p;
    p.num_tokens = T;
    p.num_seqs = cs.b;
    p.dim = kDim;
    p.d_state = kN;
    p.cu_seqlens = dcu;
    p.x_dtype = DType::kBF16;
    p.bc_dtype = DType::kBF16;
    p.u = xz;
    p.u_row_stride = 2 * kDim;
    p.z = xz + kDim;
    p.z_row_stride = 2 * kDim;
    p.delta = delta;
    p.delta_row_stride = kDim;
    p.delta_bias = dbias;
    p.delta_softplus = true;
    p.A = A;
    p.B = xdbl + kDtRank;
    p.B_row_stride = kDtRank + 2 * kN;
    p.C = xdbl + kDtRank + kN;
    p.C_row_stride = kDtRank + 2 * kN;
    p.D = Dv;
    p.y = y;
    p.y_row_stride = kDim;
    p.state_pool = pool;
    p.state_dtype = DType::kF32;
    p.num_state_blocks = blocks;
    p.initial_state_block = dinit;
    p.final_state_block = dfin;
    std::vector<int> geometries = {0};  // automatic
    if (sweep && cs.L == 4096) geometries.insert(geometries.end(), {1, 2, 4, 6, 8, 10, 12, 16});
    for (int segments : geometries) {
      p.cuda_time_segments = segments;
      const double t = TimeIt([&] { CKS(RunSelectiveScan(p, stream)); }, st, 2, quick ? 5 : 9, 1);
      const double bytes =
          static_cast<double>(T) * kDim * 2 * 4 + static_cast<double>(T) * kN * 2 * 2;
      const double t_exp = static_cast<double>(T) * kDim * kN / sfu_rate;
      const std::string geometry = segments == 0 ? "auto" : std::to_string(segments) + " segments";
      std::printf("| %lld x %lld | %s | %lld | %.1f | %.0f | %.1f | %.1f | %.2f |\n",
                  static_cast<long long>(cs.b), static_cast<long long>(cs.L), geometry.c_str(),
                  static_cast<long long>(T), t * 1e6, bytes / t / 1e9, 100.0 * bytes / t / copy_bw,
                  t_exp * 1e6, t / t_exp);
      std::fflush(stdout);
    }
    CHECK_CUDA(cudaFree(xz));
    CHECK_CUDA(cudaFree(delta));
    CHECK_CUDA(cudaFree(xdbl));
    CHECK_CUDA(cudaFree(y));
    CHECK_CUDA(cudaFree(pool));
    CHECK_CUDA(cudaFree(dcu));
    CHECK_CUDA(cudaFree(dinit));
    CHECK_CUDA(cudaFree(dfin));
  }

  std::printf("\n## Decode (state update, in place, 1 token per sequence)\n\n");
  std::printf(
      "Each call updates another set of the batch's blocks (sets rotate over >= 256 MiB of "
      "state, as 64 layers would), so the state comes from HBM, not L2. The last columns: a "
      "cudaMemcpy of exactly the state bytes, for scale.\n\n");
  std::printf(
      "| batch | time (us) | bytes (MB) | GB/s | %% of copy BW | cudaMemcpy of the state (us) | "
      "its %% of copy BW |\n|---|---|---|---|---|---|---|\n");
  for (int64_t b : {1, 16, 64, 256}) {
    uint16_t* xz = DevAlloc<uint16_t>(b * 2 * kDim);
    uint16_t* delta = DevAlloc<uint16_t>(b * kDim);
    uint16_t* xdbl = DevAlloc<uint16_t>(b * (kDtRank + 2 * kN));
    uint16_t* y = DevAlloc<uint16_t>(b * kDim);
    Bf16Rand(xz, b * 2 * kDim, -1.0f, 1.0f, 31);
    Bf16Rand(delta, b * kDim, -3.0f, 0.0f, 32);
    Bf16Rand(xdbl, b * (kDtRank + 2 * kN), -1.0f, 1.0f, 33);
    const int64_t state_bytes = b * kDim * kN * 4;
    const int64_t sets = std::max<int64_t>(2, ((256LL << 20) + state_bytes - 1) / state_bytes);
    // Set i holds blocks 1 + i b .. (i + 1) b, visited in a scattered order.
    const int64_t blocks = sets * b + 1;
    float* pool = DevAlloc<float>(blocks * kDim * kN);
    F32Rand(pool, blocks * kDim * kN, -1.0f, 1.0f, 34);
    std::vector<int32_t> idx(sets * b);
    for (int64_t i = 0; i < sets; ++i)
      for (int64_t j = 0; j < b; ++j)
        idx[i * b + j] = static_cast<int32_t>(1 + i * b + (j * 7919) % b);
    int32_t* didx = DevAlloc<int32_t>(sets * b);
    CHECK_CUDA(cudaMemcpy(didx, idx.data(), sets * b * 4, cudaMemcpyHostToDevice));
    Mamba1StateUpdateParams p;
    p.batch = b;
    p.dim = kDim;
    p.d_state = kN;
    p.x_dtype = DType::kBF16;
    p.bc_dtype = DType::kBF16;
    p.u = xz;
    p.u_row_stride = 2 * kDim;
    p.z = xz + kDim;
    p.z_row_stride = 2 * kDim;
    p.delta = delta;
    p.delta_row_stride = kDim;
    p.delta_bias = dbias;
    p.A = A;
    p.B = xdbl + kDtRank;
    p.B_row_stride = kDtRank + 2 * kN;
    p.C = xdbl + kDtRank + kN;
    p.C_row_stride = kDtRank + 2 * kN;
    p.D = Dv;
    p.y = y;
    p.y_row_stride = kDim;
    p.state_pool = pool;
    p.state_dtype = DType::kF32;
    p.num_state_blocks = blocks;
    int64_t call = 0;
    const double t = TimeIt(
        [&] {
          p.state_block_in = didx + (call++ % sets) * b;
          CKS(RunMamba1StateUpdate(p, stream));
        },
        st, 5, 9, 50);
    float* dst = DevAlloc<float>(b * kDim * kN);
    int64_t copy_call = 0;
    const double t_copy_state = TimeIt(
        [&] {
          const float* src = pool + (1 + (copy_call++ % sets) * b) * kDim * kN;
          CHECK_CUDA(cudaMemcpyAsync(dst, src, state_bytes, cudaMemcpyDeviceToDevice, st));
        },
        st, 5, 9, 50);
    const double bytes = static_cast<double>(b) * kDim * kN * 4 * 2 +
                         static_cast<double>(b) * kDim * 2 * 4 +
                         static_cast<double>(b) * kN * 2 * 2;
    std::printf("| %lld | %.2f | %.2f | %.0f | %.1f | %.2f | %.1f |\n", static_cast<long long>(b),
                t * 1e6, bytes / 1e6, bytes / t / 1e9, 100.0 * bytes / t / copy_bw,
                t_copy_state * 1e6, 100.0 * 2.0 * state_bytes / t_copy_state / copy_bw);
    std::fflush(stdout);
    CHECK_CUDA(cudaFree(xz));
    CHECK_CUDA(cudaFree(delta));
    CHECK_CUDA(cudaFree(xdbl));
    CHECK_CUDA(cudaFree(y));
    CHECK_CUDA(cudaFree(pool));
    CHECK_CUDA(cudaFree(didx));
    CHECK_CUDA(cudaFree(dst));
  }
  return 0;
}
