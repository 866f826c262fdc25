// Benchmark of the fused SSD chunked scan (prefill) on a Mamba2-2.7B layer: H=80, P=64, G=1,
// N=128, Q=256, bf16 inputs, fp32 state pool (final states written), dt_softplus, D per head,
// no z. Shapes: b=1 L=4096, 16384, 65536 and b=8 L=4096 (packed varlen).
//   bench_ssd_prefill [--anchor_run=ms1,ms2,ms3,ms4] [--iters=N] [--impl=tc|seq] [--profile]
//                     [--segs] [--shape=K]
// --shape=K: only the K-th shape (0-3), e.g. to profile one shape's kernels under ncu.
// --profile: also time with stages left out (MS_SSD_PROFILE_SKIP; wrong output).
// --segs: also time every shape at forced segment counts (calibrates SsdAutoSegments).
// --anchor_run: mamba_ssm Triton times measured in the same run (bench/mamba_ssm_anchor.py),
// printed next to the DESIGN.md anchor numbers.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/bench_cuda.h"
#include "core/stream.h"
#include "kernels/ssd_chunk_scan.h"

namespace {

__device__ __forceinline__ float HashUniform(uint64_t i, uint32_t seed) {
  uint64_t z = i * 0x9E3779B97F4A7C15ull + seed * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (1.0f / 16777216.0f);  // [0, 1)
}

__global__ void FillBf16(__nv_bfloat16* p, int64_t n, float lo, float hi, uint32_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    p[i] = __float2bfloat16_rn(lo + (hi - lo) * HashUniform(i, seed));
  }
}

struct Shape {
  const char* label;
  int b;
  int64_t L;
  double anchor_ms;  // DESIGN.md
};

}  // namespace

int main(int argc, char** argv) {
  using namespace mambaserve;
  std::vector<double> anchor_run;
  int iters = 20;
  bool profile = false;
  bool sweep_segs = false;
  int only_shape = -1;
  SsdCudaImpl impl = SsdCudaImpl::kTensorCore;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--anchor_run=", 0) == 0) {
      std::string v = a.substr(13);
      size_t pos = 0;
      while (pos < v.size()) {
        size_t c = v.find(',', pos);
        if (c == std::string::npos) c = v.size();
        anchor_run.push_back(std::atof(v.substr(pos, c - pos).c_str()));
        pos = c + 1;
      }
    } else if (a.rfind("--iters=", 0) == 0) {
      iters = std::atoi(a.c_str() + 8);
    } else if (a == "--profile") {
      profile = true;
    } else if (a == "--segs") {
      sweep_segs = true;
    } else if (a.rfind("--shape=", 0) == 0) {
      only_shape = std::atoi(a.c_str() + 8);
    } else if (a == "--impl=seq") {
      impl = SsdCudaImpl::kSequential;
    }
  }
  const int64_t H = 80, P = 64, G = 1, N = 128, Q = 256;
  const Shape shapes[] = {{"b=1 L=4096", 1, 4096, 0.22},
                          {"b=1 L=16384", 1, 16384, 0.85},
                          {"b=1 L=65536", 1, 65536, 4.10},
                          {"b=8 L=4096", 8, 4096, 1.98}};
  const int64_t Tmax = 65536;
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  auto stream_or = Stream::Create(Device::Cuda(0));
  if (!stream_or.ok()) {
    std::fprintf(stderr, "%s\n", std::string(stream_or.status().message()).c_str());
    return 1;
  }
  const Stream& stream = *stream_or;
  cudaStream_t st = static_cast<cudaStream_t>(stream.handle());

  // Copy bandwidth: D2D cudaMemcpy of 1 GiB (read + write counted).
  double copy_gbs = 0;
  {
    const size_t n = size_t{1} << 30;
    void *a, *b;
    CHECK_CUDA(cudaMalloc(&a, n));
    CHECK_CUDA(cudaMalloc(&b, n));
    CHECK_CUDA(cudaMemset(a, 1, n));
    cudaEvent_t e0, e1;
    CHECK_CUDA(cudaEventCreate(&e0));
    CHECK_CUDA(cudaEventCreate(&e1));
    std::vector<float> ts;
    for (int i = 0; i < 12; ++i) {
      CHECK_CUDA(cudaEventRecord(e0, st));
      CHECK_CUDA(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, st));
      CHECK_CUDA(cudaEventRecord(e1, st));
      CHECK_CUDA(cudaEventSynchronize(e1));
      float ms;
      CHECK_CUDA(cudaEventElapsedTime(&ms, e0, e1));
      if (i >= 2) ts.push_back(ms);
    }
    std::sort(ts.begin(), ts.end());
    copy_gbs = 2.0 * n / (ts[ts.size() / 2] * 1e-3) / 1e9;
    CHECK_CUDA(cudaFree(a));
    CHECK_CUDA(cudaFree(b));
  }

  // Inputs for the largest shape; smaller shapes use a prefix.
  __nv_bfloat16 *x, *dt, *Bm, *Cm, *y;
  CHECK_CUDA(cudaMalloc(&x, Tmax * H * P * 2));
  CHECK_CUDA(cudaMalloc(&y, Tmax * H * P * 2));
  CHECK_CUDA(cudaMalloc(&dt, Tmax * H * 2));
  CHECK_CUDA(cudaMalloc(&Bm, Tmax * G * N * 2));
  CHECK_CUDA(cudaMalloc(&Cm, Tmax * G * N * 2));
  FillBf16<<<1024, 256, 0, st>>>(x, Tmax * H * P, -1.0f, 1.0f, 1);
  FillBf16<<<1024, 256, 0, st>>>(dt, Tmax * H, -4.0f, -1.0f, 2);
  FillBf16<<<1024, 256, 0, st>>>(Bm, Tmax * G * N, -1.0f, 1.0f, 3);
  FillBf16<<<1024, 256, 0, st>>>(Cm, Tmax * G * N, -1.0f, 1.0f, 4);
  CHECK_CUDA(cudaGetLastError());
  std::vector<float> hA(H), hD(H), hbias(H);
  for (int h = 0; h < H; ++h) {
    hA[h] = -(0.05f + 0.9f * h / H);
    hD[h] = 0.5f + 0.01f * h;
    hbias[h] = -0.5f + 1.0f * h / H;
  }
  float *A, *D, *bias;
  CHECK_CUDA(cudaMalloc(&A, H * 4));
  CHECK_CUDA(cudaMalloc(&D, H * 4));
  CHECK_CUDA(cudaMalloc(&bias, H * 4));
  CHECK_CUDA(cudaMemcpy(A, hA.data(), H * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(D, hD.data(), H * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(bias, hbias.data(), H * 4, cudaMemcpyHostToDevice));
  const int64_t block_elems = H * P * N;
  const int max_seqs = 8;
  float* pool;
  CHECK_CUDA(cudaMalloc(&pool, (max_seqs + 1) * block_elems * 4));
  int32_t *cu, *fin;
  CHECK_CUDA(cudaMalloc(&cu, (max_seqs + 1) * 4));
  CHECK_CUDA(cudaMalloc(&fin, max_seqs * 4));

  std::printf("device: %s (%d SMs)\n", prop.name, prop.multiProcessorCount);
  std::printf("D2D copy bandwidth (1 GiB cudaMemcpy, read+write): %.1f GB/s\n", copy_gbs);
  std::printf("impl: %s, iters %d (median), warmup 3\n",
              impl == SsdCudaImpl::kTensorCore ? "tensor-core fused" : "sequential", iters);
  std::printf(
      "| shape | segments | ms | GB/s | %% copy BW | TFLOP/s | anchor ms (DESIGN) | anchor/ours "
      "|%s\n",
      anchor_run.empty() ? "" : " anchor ms (same run) | anchor/ours (same run) |");
  std::printf("|---|---|---|---|---|---|---|---|%s\n", anchor_run.empty() ? "" : "---|---|");
  int si = 0;
  std::vector<std::string> profile_lines;
  for (const Shape& sh : shapes) {
    if (only_shape >= 0 && si != only_shape) {
      ++si;
      continue;
    }
    const int64_t T = sh.b * sh.L;
    std::vector<int32_t> hcu(sh.b + 1), hfin(sh.b);
    for (int s = 0; s <= sh.b; ++s) hcu[s] = static_cast<int32_t>(s * sh.L);
    for (int s = 0; s < sh.b; ++s) hfin[s] = s + 1;
    CHECK_CUDA(cudaMemcpy(cu, hcu.data(), hcu.size() * 4, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(fin, hfin.data(), hfin.size() * 4, cudaMemcpyHostToDevice));
    SsdChunkScanParams p;
    p.num_tokens = T;
    p.num_seqs = sh.b;
    p.num_heads = H;
    p.head_dim = P;
    p.num_groups = G;
    p.d_state = N;
    p.chunk_size = Q;
    p.dtype = DType::kBF16;
    p.x = x;
    p.x_token_stride = H * P;
    p.x_head_stride = P;
    p.dt = dt;
    p.dt_token_stride = H;
    p.dt_dtype = DType::kBF16;
    p.dt_bias = bias;
    p.A = A;
    p.B = Bm;
    p.B_token_stride = G * N;
    p.B_group_stride = N;
    p.C = Cm;
    p.C_token_stride = G * N;
    p.C_group_stride = N;
    p.D = D;
    p.y = y;
    p.y_token_stride = H * P;
    p.y_head_stride = P;
    p.cu_seqlens = cu;
    p.state = pool;
    p.state_dtype = DType::kF32;
    p.num_blocks = max_seqs + 1;
    p.state_block_stride = block_elems;
    p.final_state_block = fin;
    p.cuda_impl = impl;
    cudaEvent_t e0, e1;
    CHECK_CUDA(cudaEventCreate(&e0));
    CHECK_CUDA(cudaEventCreate(&e1));
    auto time_it = [&]() -> double {
      std::vector<float> ts;
      for (int i = 0; i < iters + 3; ++i) {
        CHECK_CUDA(cudaEventRecord(e0, st));
        absl::Status s = RunSsdChunkScan(p, stream);
        CHECK_CUDA(cudaEventRecord(e1, st));
        CHECK_CUDA(cudaEventSynchronize(e1));
        if (!s.ok()) {
          std::fprintf(stderr, "RunSsdChunkScan: %s\n", std::string(s.message()).c_str());
          std::exit(1);
        }
        float ms;
        CHECK_CUDA(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 3) ts.push_back(ms);
      }
      std::sort(ts.begin(), ts.end());
      return ts[ts.size() / 2];
    };
    const double ms = time_it();
    if (profile) {
      std::string line = std::string("  profile ") + sh.label + ":";
      for (int mask : {2, 4, 8, 16, 32, 2 | 4 | 8, 2 | 4 | 8 | 16 | 32}) {
        setenv("MS_SSD_PROFILE_SKIP", std::to_string(mask).c_str(), 1);
        char buf[64];
        std::snprintf(buf, sizeof buf, " skip%d=%.4f", mask, time_it());
        line += buf;
      }
      unsetenv("MS_SSD_PROFILE_SKIP");
      profile_lines.push_back(line);
    }
    if (sweep_segs) {
      std::string line = std::string("  segments (all / main kernel only, ms) ") + sh.label + ":";
      for (int segs : {1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64}) {
        if (sh.L / segs < 128) break;
        p.cuda_num_segments = segs;
        const double full = time_it();
        setenv("MS_SSD_PROFILE_SKIP", "64", 1);  // the segments' main kernel alone
        const double main_only = time_it();
        unsetenv("MS_SSD_PROFILE_SKIP");
        char buf[64];
        std::snprintf(buf, sizeof buf, " %d=%.4f/%.4f", segs, full, main_only);
        line += buf;
      }
      p.cuda_num_segments = 0;
      profile_lines.push_back(line);
    }
    // Bytes: read x, dt, B, C; write y and the final states (fp32).
    const double bytes =
        T * (H * P * 2.0 * 2 + H * 2.0 + 2.0 * G * N * 2) + sh.b * block_elems * 4.0;
    // FLOPs of the chunked SSD algorithm at chunk Q (dense chunk products, as the anchor's
    // kernels count them): per head and chunk 2 Q^2 N (C B^T) + 2 Q^2 P ((CB o L) X)
    // + 2 Q N P (chunk state) + 2 Q N P (incoming state).
    const double flops =
        static_cast<double>(T) / Q * H * (2.0 * Q * Q * N + 2.0 * Q * Q * P + 4.0 * Q * N * P);
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    const int auto_segs = SsdAutoSegments(sh.b * H, sh.L, prop.multiProcessorCount);
    std::printf("| %s | %d | %.4f | %.0f | %.1f%% | %.1f | %.2f | %.2fx |", sh.label, auto_segs, ms,
                gbs, 100.0 * gbs / copy_gbs, flops / (ms * 1e-3) / 1e12, sh.anchor_ms,
                sh.anchor_ms / ms);
    if (!anchor_run.empty()) {
      const double a = si < static_cast<int>(anchor_run.size()) ? anchor_run[si] : 0.0;
      std::printf(" %.4f | %.2fx |", a, a / ms);
    }
    std::printf("\n");
    ++si;
  }
  for (const std::string& l : profile_lines) std::printf("%s\n", l.c_str());
  return 0;
}
