#include "core/cuda_graph.h"

#include <utility>

#include "core/status_macros.h"
#if MAMBASERVE_HAS_CUDA
#include "core/cuda_status.h"
#endif

namespace mambaserve {

CudaGraph::~CudaGraph() {
#if MAMBASERVE_HAS_CUDA
  if (exec_ != nullptr) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
#endif
}

CudaGraph::CudaGraph(CudaGraph&& other) noexcept : exec_(std::exchange(other.exec_, nullptr)) {}

CudaGraph& CudaGraph::operator=(CudaGraph&& other) noexcept {
  if (this != &other) {
    this->~CudaGraph();
    exec_ = std::exchange(other.exec_, nullptr);
  }
  return *this;
}

absl::StatusOr<CudaGraph> CudaGraph::Capture(const Stream& stream,
                                             const std::function<absl::Status()>& enqueue) {
  MS_CHECK_ARG(stream.is_cuda(), "CUDA graphs need a CUDA stream");
#if MAMBASERVE_HAS_CUDA
  auto s = static_cast<cudaStream_t>(stream.handle());
  CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  const absl::Status body = enqueue();
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(s, &graph);
  if (!body.ok()) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    return body;
  }
  CUDA_RETURN_IF_ERROR(end);
  cudaGraphExec_t exec = nullptr;
  const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  CUDA_RETURN_IF_ERROR(inst);
  CudaGraph g;
  g.exec_ = exec;
  return g;
#else
  (void)enqueue;
  return absl::UnimplementedError("CUDA graphs need a CUDA build");
#endif
}

absl::Status CudaGraph::Launch(const Stream& stream) const {
  MS_CHECK_ARG(exec_ != nullptr, "launching an empty CUDA graph");
#if MAMBASERVE_HAS_CUDA
  CUDA_RETURN_IF_ERROR(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_),
                                       static_cast<cudaStream_t>(stream.handle())));
  return absl::OkStatus();
#else
  (void)stream;
  return absl::UnimplementedError("CUDA graphs need a CUDA build");
#endif
}

}  // namespace mambaserve
