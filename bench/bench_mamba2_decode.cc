// Benchmark of the Mamba-2 decode-path kernels on one GPU: the selective state update at
// B = 1, 16, 64, 256 (H=80, P=64, G=1, N=128, bf16 inputs, fp32 state: the Mamba2-2.7B layer),
// the causal conv prefill (8 x 4096 tokens, dim 5376, W=4, bf16) and the gated RMSNorm, against
// the device-to-device copy bandwidth of a 1 GiB cudaMemcpy measured in the same run.
//
// Timing: CUDA events around every launch, 10 warmup launches, median of 100 (state update)
// or 50 (others). The state update rotates over enough pool blocks that the state touched by
// consecutive launches (>= 256 MiB) cannot stay in the 50 MB L2, so the numbers are HBM numbers.
// Bytes: state read + written, plus every input read and output written once.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_cuda.h"
#include "core/buffer.h"
#include "core/dependent_launch.h"
#include "core/device.h"
#include "core/dtype.h"
#include "core/random.h"
#include "core/stream.h"
#include "kernels/causal_conv1d.h"
#include "kernels/gated_rmsnorm.h"
#include "kernels/mamba2_state_update.h"
#include "kernels/mamba2_state_update_internal.h"

namespace mambaserve {
namespace {

#define CHECK_OK(e)                                                                    \
  do {                                                                                 \
    absl::Status st_ = (e);                                                            \
    if (!st_.ok()) {                                                                   \
      std::fprintf(stderr, "%s failed: %s\n", #e, std::string(st_.message()).c_str()); \
      std::exit(1);                                                                    \
    }                                                                                  \
  } while (0)

Buffer Alloc(int64_t n) {
  auto b = Buffer::Allocate(Device::Cuda(0), n);
  if (!b.ok()) {
    std::fprintf(stderr, "alloc %lld: %s\n", static_cast<long long>(n),
                 std::string(b.status().message()).c_str());
    std::exit(1);
  }
  return std::move(*b);
}

// Fills a device buffer with random values of dtype t (scaled normal).
void Fill(const Buffer& b, DType t, int64_t n, float stddev, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v = rng.NormalVector(n, stddev);
  std::vector<uint8_t> h(n * DTypeSize(t));
  for (int64_t i = 0; i < n; ++i) StoreFromFloat(h.data(), t, i, v[i]);
  CHECK_OK(CopyBytes(b.data(), Device::Cuda(0), h.data(), Device::Cpu(), h.size()));
}

// Median time in microseconds of `iters` launches of f(i), each bracketed by events. For kernels
// shorter than the host's launch overhead (B = 1) an interval can include some launch latency.
// (Holding the stream with a spinning cudaLaunchHostFunc gate until every launch is queued hung
// on the H100 machine, so it is not used.)
double MedianUs(cudaStream_t s, int warmup, int iters, const std::function<void(int)>& f) {
  for (int i = 0; i < warmup; ++i) f(i);
  std::vector<cudaEvent_t> ev(2 * iters);
  for (auto& e : ev) CHECK_CUDA(cudaEventCreate(&e));
  for (int i = 0; i < iters; ++i) {
    CHECK_CUDA(cudaEventRecord(ev[2 * i], s));
    f(warmup + i);
    CHECK_CUDA(cudaEventRecord(ev[2 * i + 1], s));
  }
  CHECK_CUDA(cudaStreamSynchronize(s));
  std::vector<double> t(iters);
  for (int i = 0; i < iters; ++i) {
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, ev[2 * i], ev[2 * i + 1]));
    t[i] = ms * 1e3;
  }
  for (auto& e : ev) CHECK_CUDA(cudaEventDestroy(e));
  std::sort(t.begin(), t.end());
  return t[iters / 2];
}

// Microseconds per call of f(0) .. f(calls - 1) captured in one CUDA graph and replayed (median
// of `iters` replays / calls): the GPU time without the host's launch cost or the events between
// calls, as a model step's graph runs it and as bench/mamba_ssm_anchor.py times the anchor.
double GraphUs(cudaStream_t s, int calls, int iters, const std::function<void(int)>& f) {
  cudaGraph_t graph;
  CHECK_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < calls; ++i) f(i);
  CHECK_CUDA(cudaStreamEndCapture(s, &graph));
  cudaGraphExec_t exec;
  CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  const double us = MedianUs(s, 2, iters, [&](int) { CHECK_CUDA(cudaGraphLaunch(exec, s)); });
  CHECK_CUDA(cudaGraphExecDestroy(exec));
  CHECK_CUDA(cudaGraphDestroy(graph));
  return us / calls;
}

int Main(int argc, char** argv) {
  // --dependent_launch 0: every kernel launched plainly (programmatic dependent launch off).
  // --batch B: the state update at batch B only (e.g. under a profiler; 0 = all four).
  int64_t only_batch = 0;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--dependent_launch")
      SetDependentLaunch(std::atoi(argv[i + 1]) != 0);
    if (std::string(argv[i]) == "--batch") only_batch = std::atoll(argv[i + 1]);
  }
  std::printf("dependent launch: %s\n", DependentLaunchEnabled() ? "on" : "off");
  if (!CudaAvailable()) {
    std::printf("no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  auto so = Stream::Create(Device::Cuda(0));
  CHECK_OK(so.status());
  Stream stream = std::move(*so);
  cudaStream_t s = static_cast<cudaStream_t>(stream.handle());

  // Copy bandwidth: 1 GiB device-to-device, counted as read + write.
  const int64_t kCopy = int64_t{1} << 30;
  double copy_gbs;
  {
    Buffer a = Alloc(kCopy), b = Alloc(kCopy);
    CHECK_CUDA(cudaMemsetAsync(a.data(), 1, kCopy, s));
    const double us = MedianUs(s, 3, 20, [&](int) {
      CHECK_CUDA(cudaMemcpyAsync(b.data(), a.data(), kCopy, cudaMemcpyDeviceToDevice, s));
    });
    copy_gbs = 2.0 * kCopy / (us * 1e-6) / 1e9;
  }
  std::printf("device: %s\n", prop.name);
  std::printf("copy bandwidth (cudaMemcpy D2D, 1 GiB, read+write): %.1f GB/s\n\n", copy_gbs);
  std::printf(
      "| kernel | shape | time (us) | GB/s | %% of copy BW | in a graph (us) | %% of copy BW |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|\n");

  // Mamba-2 state update.
  std::vector<std::string> sweep;
  const int64_t H = 80, P = 64, G = 1, N = 128;
  const DType in_t = DType::kBF16;
  for (int64_t B : {1, 16, 64, 256}) {
    if (only_batch > 0 && B != only_batch) continue;
    const int64_t state_elems = H * P * N;  // per block
    const int64_t set_bytes = B * state_elems * 4;
    const int64_t sets = std::max<int64_t>(1, ((int64_t{256} << 20) + set_bytes - 1) / set_bytes);
    const int64_t nb = 1 + sets * B;
    Buffer state = Alloc(nb * state_elems * 4);
    CHECK_CUDA(cudaMemsetAsync(state.data(), 0, nb * state_elems * 4, s));
    Buffer x = Alloc(B * H * P * 2), z = Alloc(B * H * P * 2), y = Alloc(B * H * P * 2);
    Buffer Bm = Alloc(B * G * N * 2), Cm = Alloc(B * G * N * 2), dt = Alloc(B * H * 2);
    Buffer dt_bias = Alloc(H * 4), A = Alloc(H * 4), D = Alloc(H * 4);
    Fill(x, in_t, B * H * P, 1.0f, 1);
    Fill(z, in_t, B * H * P, 1.0f, 2);
    Fill(Bm, in_t, B * G * N, 1.0f, 3);
    Fill(Cm, in_t, B * G * N, 1.0f, 4);
    Fill(dt, in_t, B * H, 1.0f, 5);
    Fill(dt_bias, DType::kF32, H, 0.5f, 6);
    {
      Rng rng(7);
      std::vector<float> a = rng.UniformVector(H, -4.0f, -0.2f);  // A = -exp(A_log) < 0
      CHECK_OK(CopyBytes(A.data(), Device::Cuda(0), a.data(), Device::Cpu(), H * 4));
    }
    Fill(D, DType::kF32, H, 1.0f, 8);
    std::vector<int32_t> blocks(sets * B);
    for (int64_t i = 0; i < sets * B; ++i) blocks[i] = static_cast<int32_t>(1 + i);
    Buffer dblocks = Alloc(sets * B * 4);
    CHECK_OK(
        CopyBytes(dblocks.data(), Device::Cuda(0), blocks.data(), Device::Cpu(), sets * B * 4));
    Mamba2StateUpdateParams p;
    p.batch = B;
    p.num_heads = H, p.head_dim = P, p.num_groups = G, p.d_state = N;
    p.dtype = in_t;
    p.x = x.data(), p.x_batch_stride = H * P, p.x_head_stride = P;
    p.z = z.data(), p.z_batch_stride = H * P, p.z_head_stride = P;
    p.y = y.data(), p.y_batch_stride = H * P, p.y_head_stride = P;
    p.B = Bm.data(), p.B_batch_stride = G * N, p.B_group_stride = N;
    p.C = Cm.data(), p.C_batch_stride = G * N, p.C_group_stride = N;
    p.dt_dtype = in_t;
    p.dt = dt.data(), p.dt_batch_stride = H, p.dt_head_stride = 1;
    p.dt_bias = static_cast<const float*>(dt_bias.data());
    p.A = static_cast<const float*>(A.data());
    p.D = static_cast<const float*>(D.data());
    p.state = state.data();
    p.state_dtype = DType::kF32;
    p.num_blocks = nb;
    p.state_block_stride = state_elems, p.state_head_stride = P * N, p.state_p_stride = N;
    const double bytes = 2.0 * B * state_elems * 4 + 2.0 * (3 * B * H * P + 2 * B * G * N + B * H) +
                         3.0 * H * 4 + B * 4;
    {
      // The same state bytes moved by cudaMemcpy (every element read and written once, the
      // source rotated like the kernel's): what a plain copy of this size reaches, for scale.
      Buffer dst = Alloc(set_bytes);
      auto copy = [&](int i) {
        const char* src =
            static_cast<const char*>(state.data()) + (1 + (i % sets) * B) * state_elems * 4;
        CHECK_CUDA(cudaMemcpyAsync(dst.data(), src, set_bytes, cudaMemcpyDeviceToDevice, s));
      };
      const double us = MedianUs(s, 10, 100, copy);
      const double gus = GraphUs(s, static_cast<int>(sets), 20, copy);
      sweep.push_back(std::to_string(B) + " cudaMemcpy of the state (" +
                      std::to_string(set_bytes >> 20) + " MiB): " + std::to_string(us) + " us, " +
                      std::to_string(100.0 * 2.0 * set_bytes / (us * 1e-6) / 1e9 / copy_gbs) +
                      "% of copy; in a graph " + std::to_string(gus) + " us");
    }
    // rows = 0: the default policy (the table); 2, 4, 8, 16: tuning variants (sweep lines).
    for (int rows : {0, 2, 4, 8, 16}) {
      auto call = [&](int i) {
        Mamba2StateUpdateParams q = p;
        q.state_block_in = static_cast<const int32_t*>(dblocks.data()) + (i % sets) * B;
        CHECK_OK(rows == 0 ? RunMamba2StateUpdate(q, stream)
                           : RunMamba2StateUpdateCudaRows(q, stream, rows));
      };
      const double us = MedianUs(s, 10, 100, call);
      const double gbs = bytes / (us * 1e-6) / 1e9;
      const double gus = GraphUs(s, static_cast<int>(sets), 20, call);
      const double ggbs = bytes / (gus * 1e-6) / 1e9;
      if (rows == 0) {
        std::printf(
            "| mamba2_state_update | B=%lld H=80 P=64 G=1 N=128, bf16 in, f32 state | "
            "%.2f | %.0f | %.1f%% | %.2f | %.1f%% |\n",
            static_cast<long long>(B), us, gbs, 100.0 * gbs / copy_gbs, gus,
            100.0 * ggbs / copy_gbs);
      } else {
        sweep.push_back(std::to_string(B) + " rows=" + std::to_string(rows) + ": " +
                        std::to_string(us) + " us, " + std::to_string(100.0 * gbs / copy_gbs) +
                        "% of copy; in a graph " + std::to_string(gus) + " us, " +
                        std::to_string(100.0 * ggbs / copy_gbs) + "%");
      }
    }
  }

  // Causal conv prefill: 8 sequences of 4096 tokens, dim 5376, W = 4, bf16, SD state.
  {
    const int64_t S = 8, L = 4096, T = S * L, dim = 5376, W = 4;
    Buffer x = Alloc(T * dim * 2), out = Alloc(T * dim * 2), w = Alloc(dim * W * 2),
           bias = Alloc(dim * 2), pool = Alloc((S + 1) * (W - 1) * dim * 2);
    Fill(x, in_t, T * dim, 1.0f, 11);
    Fill(w, in_t, dim * W, 0.5f, 12);
    Fill(bias, in_t, dim, 0.5f, 13);
    std::vector<int32_t> cu(S + 1), fb(S);
    for (int64_t i = 0; i <= S; ++i) cu[i] = static_cast<int32_t>(i * L);
    for (int64_t i = 0; i < S; ++i) fb[i] = static_cast<int32_t>(1 + i);
    Buffer dcu = Alloc((S + 1) * 4), dfb = Alloc(S * 4);
    CHECK_OK(CopyBytes(dcu.data(), Device::Cuda(0), cu.data(), Device::Cpu(), (S + 1) * 4));
    CHECK_OK(CopyBytes(dfb.data(), Device::Cuda(0), fb.data(), Device::Cpu(), S * 4));
    CausalConv1dParams p;
    p.w.dim = dim, p.w.width = W, p.w.weight = w.data(), p.w.weight_dtype = in_t;
    p.w.bias = bias.data(), p.w.silu = true;
    p.pool.conv_state = pool.data(), p.pool.state_dtype = in_t, p.pool.num_blocks = S + 1;
    p.pool.state_len = W - 1, p.pool.state_block_stride = (W - 1) * dim, p.pool.state_stride = dim;
    p.num_tokens = T, p.num_seqs = S;
    p.x = x.data(), p.x_row_stride = dim, p.dtype = in_t;
    p.out = out.data(), p.out_row_stride = dim;
    p.cu_seqlens = static_cast<const int32_t*>(dcu.data());
    p.final_state_block = static_cast<const int32_t*>(dfb.data());
    const double us = MedianUs(s, 10, 50, [&](int) { CHECK_OK(RunCausalConv1d(p, stream)); });
    const double bytes = 2.0 * T * dim * 2 + S * (W - 1) * dim * 2;
    const double gbs = bytes / (us * 1e-6) / 1e9;
    std::printf(
        "| causal_conv1d prefill | T=8x4096 dim=5376 W=4 bf16 | %.2f | %.0f | %.1f%% | - | - |\n",
        us, gbs, 100.0 * gbs / copy_gbs);
  }

  // Gated RMSNorm, fused: T = 8 x 4096, I = 5120, G = 1 (per-rank size of the 2.7B layer).
  {
    const int64_t T = 8 * 4096, I = 5120;
    Buffer yb = Alloc(T * I * 2), zb = Alloc(T * I * 2), ob = Alloc(T * I * 2), wb = Alloc(I * 2);
    Fill(yb, in_t, T * I, 1.0f, 21);
    Fill(zb, in_t, T * I, 1.0f, 22);
    Fill(wb, in_t, I, 1.0f, 23);
    GatedRmsNormParams p;
    p.num_tokens = T, p.dim = I, p.dtype = in_t;
    p.y = yb.data(), p.y_row_stride = I, p.z = zb.data(), p.z_row_stride = I;
    p.weight = wb.data(), p.weight_dtype = in_t, p.out = ob.data(), p.out_row_stride = I;
    p.group_size = I;
    const double us = MedianUs(s, 10, 50, [&](int) { CHECK_OK(RunGatedRmsNorm(p, stream)); });
    const double bytes = 3.0 * T * I * 2;
    const double gbs = bytes / (us * 1e-6) / 1e9;
    std::printf(
        "| gated_rmsnorm fused | T=8x4096 I=5120 G=1 bf16 | %.2f | %.0f | %.1f%% | - | - |\n", us,
        gbs, 100.0 * gbs / copy_gbs);
  }
  CHECK_CUDA(cudaDeviceSynchronize());
  std::printf(
      "\nstate update tuning sweep (rows of state per thread group; the table uses the "
      "default):\n");
  for (const auto& l : sweep) std::printf("  B=%s\n", l.c_str());
  return 0;
}

}  // namespace
}  // namespace mambaserve

int main(int argc, char** argv) { return mambaserve::Main(argc, argv); }
