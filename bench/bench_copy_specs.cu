// bench_copy_specs: one engine step's state copies (every layer, conv + SSM) on the Mamba2-2.7B
// state shape (64 layers, conv (3+num_spec, 5376) bf16, SSM (80, 64, 128) fp32 per block), as
// ONE batched kernel launch (CopyExecutor) versus one cudaMemcpyAsync / cudaMemcpy2DAsync per
// spec. Reports time per step and effective bandwidth (bytes read + written).
//   bench_copy_specs [--layers 64] [--iters 20]
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/cuda_status.h"
#include "core/status_macros.h"
#include "state_manager/copy_spec.h"

namespace mambaserve {
namespace {

absl::Status MemcpyLoop(const std::vector<CopySpec>& specs, cudaStream_t s) {
  for (const CopySpec& c : specs) {
    if (c.num_rows == 1) {
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(reinterpret_cast<void*>(c.dst),
                                           reinterpret_cast<const void*>(c.src), c.nbytes(),
                                           cudaMemcpyDeviceToDevice, s));
    } else {
      CUDA_RETURN_IF_ERROR(
          cudaMemcpy2DAsync(reinterpret_cast<void*>(c.dst), c.dst_row_stride * c.elem_bytes,
                            reinterpret_cast<const void*>(c.src), c.src_row_stride * c.elem_bytes,
                            c.row_elems * c.elem_bytes, c.num_rows, cudaMemcpyDeviceToDevice, s));
    }
  }
  return absl::OkStatus();
}

absl::Status Run(int64_t layers, int iters) {
  if (!CudaAvailable()) return absl::FailedPreconditionError("no CUDA GPU");
  const Device dev = Device::Cuda(0);
  ASSIGN_OR_RETURN(Stream stream, Stream::Create(dev));
  auto cs = static_cast<cudaStream_t>(stream.handle());
  cudaEvent_t e0, e1;
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&e0));
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&e1));
  std::printf("bench_copy_specs: Mamba2-2.7B state, %lld layers, H100 expected ~3 TB/s\n",
              static_cast<long long>(layers));
  for (ConvLayout layout : {ConvLayout::kSD, ConvLayout::kDS}) {
    Mamba2StateArgs a;
    a.num_heads = 80;
    a.head_dim = 64;
    a.n_groups = 1;
    a.d_state = 128;
    a.d_conv = 4;
    a.num_spec = 2;
    ASSIGN_OR_RETURN(LayerStateShapes shapes,
                     Mamba2StateShapes(a, layout, StateDTypes{DType::kBF16, DType::kF32}));
    StatePoolConfig c{layers, shapes, layout, dev};
    const int64_t max_seqs = 16;
    // Per sequence: 3 speculative slots as sources + 1 destination.
    ASSIGN_OR_RETURN(StatePool pool, StatePool::Create(c, 1 + 4 * max_seqs));
    std::printf("  pool %s: %lld blocks, %.1f MiB per block, %.2f GiB\n",
                layout == ConvLayout::kSD ? "SD" : "DS", static_cast<long long>(pool.num_blocks()),
                StatePool::BytesPerBlock(c) / 1048576.0, pool.nbytes() / 1073741824.0);
    ASSIGN_OR_RETURN(CopyExecutor exec, CopyExecutor::Create(dev));
    for (int64_t seqs : {1, 4, 16}) {
      for (int64_t k : {1, 3}) {
        std::vector<BlockCopy> copies;
        for (int64_t i = 0; i < seqs; ++i) {
          const BlockId base = static_cast<BlockId>(1 + 4 * i);
          copies.push_back(
              BlockCopy{{base, static_cast<BlockId>(base + 1), static_cast<BlockId>(base + 2)},
                        0,
                        k,
                        static_cast<BlockId>(base + 3)});
        }
        ASSIGN_OR_RETURN(std::vector<CopySpec> specs, BuildStepCopySpecs(pool, copies));
        int64_t bytes = 0;
        for (const auto& s : specs) bytes += 2 * s.nbytes();
        // Warm up, then time the batched launch (spec building excluded, upload included).
        RETURN_IF_ERROR(exec.Run(specs, stream));
        CUDA_RETURN_IF_ERROR(cudaEventRecord(e0, cs));
        for (int it = 0; it < iters; ++it) RETURN_IF_ERROR(exec.Run(specs, stream));
        CUDA_RETURN_IF_ERROR(cudaEventRecord(e1, cs));
        CUDA_RETURN_IF_ERROR(cudaEventSynchronize(e1));
        float ms_batched = 0;
        CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms_batched, e0, e1));
        ms_batched /= iters;
        RETURN_IF_ERROR(MemcpyLoop(specs, cs));
        CUDA_RETURN_IF_ERROR(cudaEventRecord(e0, cs));
        for (int it = 0; it < iters; ++it) RETURN_IF_ERROR(MemcpyLoop(specs, cs));
        CUDA_RETURN_IF_ERROR(cudaEventRecord(e1, cs));
        CUDA_RETURN_IF_ERROR(cudaEventSynchronize(e1));
        float ms_loop = 0;
        CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms_loop, e0, e1));
        ms_loop /= iters;
        std::printf(
            "  layout=%s seqs=%lld k=%lld specs=%zu moved=%.1f MiB  batched %.3f ms (%.0f GB/s)"
            "  memcpy-per-spec %.3f ms (%.0f GB/s)\n",
            layout == ConvLayout::kSD ? "SD" : "DS", static_cast<long long>(seqs),
            static_cast<long long>(k), specs.size(), bytes / 2 / 1048576.0, ms_batched,
            bytes / (ms_batched * 1e6), ms_loop, bytes / (ms_loop * 1e6));
      }
    }
    std::printf("  launches so far: %lld\n", static_cast<long long>(exec.num_launches()));
  }
  CUDA_RETURN_IF_ERROR(cudaEventDestroy(e0));
  CUDA_RETURN_IF_ERROR(cudaEventDestroy(e1));
  return absl::OkStatus();
}

}  // namespace
}  // namespace mambaserve

int main(int argc, char** argv) {
  int64_t layers = 64;
  int iters = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--layers") == 0) layers = std::atoll(argv[i + 1]);
    if (std::strcmp(argv[i], "--iters") == 0) iters = std::atoi(argv[i + 1]);
  }
  absl::Status st = mambaserve::Run(layers, iters);
  if (!st.ok()) {
    std::fprintf(stderr, "bench_copy_specs: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  return 0;
}
