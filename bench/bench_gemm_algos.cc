// Decode-shape GEMMs (y = x W^T, bf16, fp32 accumulation) as Linear runs them (cublasGemmEx,
// default algorithm) against every algorithm cuBLASLt's heuristics offer for the same product:
// is there a faster one for the skinny decode shapes? Weights rotate over enough copies that
// they never sit in L2 (as in a 64-layer step). Prints, per shape and batch, the time of the
// default, of the best cuBLASLt algorithm, of Linear's own kernel where Linear uses one (the
// one-row GEMV at batch 1, the few-row tensor-core kernel at 2-16 rows and >= 1024 outputs; "-"
// where Linear calls cuBLAS), and the weights' bandwidth time (the roofline).
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_cuda.h"
#include "bench/bench_util.h"
#include "core/stream.h"
#include "layers/linear_gemv.h"
#include "layers/linear_skinny.h"

namespace mambaserve {
namespace {

#define CHECK_BLAS(e)                                                               \
  do {                                                                              \
    int st_ = static_cast<int>(e);                                                  \
    if (st_ != 0) {                                                                 \
      std::fprintf(stderr, "%s: status %d (%s:%d)\n", #e, st_, __FILE__, __LINE__); \
      std::exit(1);                                                                 \
    }                                                                               \
  } while (0)

constexpr int kCopies = 8;  // weight copies: 8 x 26-54 MB never fit the 50 MB L2
constexpr int kIters = 64;

// Median over 5 runs of the mean time of kIters calls (call i uses weight copy i % kCopies).
double TimeUs(cudaStream_t s, const std::function<bool(int)>& call) {
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  for (int i = 0; i < kCopies; ++i) {
    if (!call(i)) return -1;  // warm-up; an algorithm that fails is skipped
  }
  std::vector<double> runs;
  for (int r = 0; r < 5; ++r) {
    CHECK_CUDA(cudaEventRecord(a, s));
    for (int i = 0; i < kIters; ++i) call(i);
    CHECK_CUDA(cudaEventRecord(b, s));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    runs.push_back(ms * 1000.0 / kIters);
  }
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
  return Median(runs);
}

double CopyBandwidthGBs(cudaStream_t s) {
  const size_t bytes = size_t{1} << 30;
  void *x, *y;
  CHECK_CUDA(cudaMalloc(&x, bytes));
  CHECK_CUDA(cudaMalloc(&y, bytes));
  const double us = TimeUs(s, [&](int) {
    return cudaMemcpyAsync(y, x, bytes, cudaMemcpyDeviceToDevice, s) == cudaSuccess;
  });
  CHECK_CUDA(cudaFree(x));
  CHECK_CUDA(cudaFree(y));
  return 2.0 * bytes / us / 1e3;
}

struct Shape {
  const char* name;
  int out, in;
};

int Main() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    std::printf("no CUDA device\n");
    return 0;
  }
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  auto created = Stream::Create(Device::Cuda(0));
  if (!created.ok()) {
    std::fprintf(stderr, "stream: %s\n", std::string(created.status().message()).c_str());
    return 1;
  }
  const Stream& stream = *created;
  auto s = static_cast<cudaStream_t>(stream.handle());
  cublasHandle_t blas;
  CHECK_BLAS(cublasCreate(&blas));
  CHECK_BLAS(cublasSetStream(blas, s));
  cublasLtHandle_t lt;
  CHECK_BLAS(cublasLtCreate(&lt));
  const size_t ws_bytes = 32 << 20;
  void* ws;
  CHECK_CUDA(cudaMalloc(&ws, ws_bytes));
  const double bw = CopyBandwidthGBs(s);
  std::printf("device: %s; copy bandwidth %.0f GB/s\n\n", prop.name, bw);
  std::printf(
      "| GEMM | batch | cublasGemmEx default (us) | best cuBLASLt (us) | algorithms tried | "
      "Linear's kernel (us) | weights at copy BW (us) | default / roofline | best cuBLASLt / "
      "roofline | Linear's kernel / roofline |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");

  const Shape shapes[] = {{"in_proj 10576x2560", 10576, 2560},
                          {"out_proj 2560x5120", 2560, 5120},
                          {"lm_head 50288x2560", 50288, 2560}};
  for (const Shape& sh : shapes) {
    const size_t wbytes = size_t{2} * sh.out * sh.in;
    std::vector<void*> w(kCopies);
    for (auto& p : w) {
      CHECK_CUDA(cudaMalloc(&p, wbytes));
      CHECK_CUDA(cudaMemset(p, 0x3c, wbytes));  // small finite bf16 values
    }
    for (int m : {1, 2, 4, 8, 16, 32, 64}) {
      void *x, *y;
      CHECK_CUDA(cudaMalloc(&x, size_t{2} * m * sh.in));
      CHECK_CUDA(cudaMalloc(&y, size_t{2} * m * sh.out));
      CHECK_CUDA(cudaMemset(x, 0x3c, size_t{2} * m * sh.in));
      const float alpha = 1.0f, beta = 0.0f;
      // As Linear::Forward: column-major Y^T (out x m) = W^T-view (out x in) * X^T (in x m).
      const double def = TimeUs(s, [&](int i) {
        return cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, sh.out, m, sh.in, &alpha,
                            w[i % kCopies], CUDA_R_16BF, sh.in, x, CUDA_R_16BF, sh.in, &beta, y,
                            CUDA_R_16BF, sh.out, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS;
      });

      cublasLtMatmulDesc_t desc;
      CHECK_BLAS(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
      const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
      CHECK_BLAS(
          cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
      CHECK_BLAS(
          cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
      cublasLtMatrixLayout_t la, lb, lc;
      CHECK_BLAS(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, sh.in, sh.out, sh.in));
      CHECK_BLAS(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, sh.in, m, sh.in));
      CHECK_BLAS(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, sh.out, m, sh.out));
      cublasLtMatmulPreference_t pref;
      CHECK_BLAS(cublasLtMatmulPreferenceCreate(&pref));
      CHECK_BLAS(cublasLtMatmulPreferenceSetAttribute(
          pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof(ws_bytes)));
      cublasLtMatmulHeuristicResult_t results[32];
      int found = 0;
      CHECK_BLAS(
          cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, lc, pref, 32, results, &found));
      double best = -1;
      int tried = 0;
      for (int k = 0; k < found; ++k) {
        if (results[k].state != CUBLAS_STATUS_SUCCESS) continue;
        const double us = TimeUs(s, [&](int i) {
          return cublasLtMatmul(lt, desc, &alpha, w[i % kCopies], la, x, lb, &beta, y, lc, y, lc,
                                &results[k].algo, ws, ws_bytes, s) == CUBLAS_STATUS_SUCCESS;
        });
        if (us < 0) continue;
        ++tried;
        if (best < 0 || us < best) best = us;
      }
      // Linear's own kernel, where Linear::Forward would pick one.
      const bool own =
          m == 1 || SkinnyFits(DType::kBF16, sh.out, sh.in, w[0], x, sh.in, m, DType::kBF16);
      const double gemv = !own ? -1.0 : TimeUs(s, [&](int i) {
        if (m == 1) return GemvCuda(w[i % kCopies], sh.out, sh.in, x, y, DType::kBF16, stream).ok();
        return SkinnyCuda(w[i % kCopies], sh.out, sh.in, x, sh.in, m, y, sh.out, DType::kBF16,
                          stream)
            .ok();
      });
      const double roof = wbytes / bw / 1e3;
      std::printf(
          "| %s | %d | %.1f | %.1f | %d | %s | %.1f | %.0f%% | %.0f%% | %s |\n", sh.name, m, def,
          best, tried, gemv > 0 ? std::to_string(gemv).substr(0, 5).c_str() : "-", roof,
          100.0 * roof / def, best > 0 ? 100.0 * roof / best : 0.0,
          gemv > 0 ? (std::to_string(static_cast<int>(100.0 * roof / gemv)) + "%").c_str() : "-");
      CHECK_BLAS(cublasLtMatmulPreferenceDestroy(pref));
      CHECK_BLAS(cublasLtMatrixLayoutDestroy(la));
      CHECK_BLAS(cublasLtMatrixLayoutDestroy(lb));
      CHECK_BLAS(cublasLtMatrixLayoutDestroy(lc));
      CHECK_BLAS(cublasLtMatmulDescDestroy(desc));
      CHECK_CUDA(cudaFree(x));
      CHECK_CUDA(cudaFree(y));
    }
    for (auto& p : w) CHECK_CUDA(cudaFree(p));
  }
  std::printf(
      "\nweights at copy BW: the weight bytes over the measured device-to-device copy bandwidth "
      "(read + write), the time a GEMM that only streams its weights once would take.\n");
  return 0;
}

}  // namespace
}  // namespace mambaserve

int main() { return mambaserve::Main(); }
