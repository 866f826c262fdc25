// A CUDA graph captured from the work one function enqueues on a stream, replayed later with
// the same kernels, arguments and pointers (only the contents of the buffers may change).
// Capture uses cudaStreamCaptureModeThreadLocal, so other threads' CUDA calls (the NCCL watchdog
// polls events) neither break the capture nor are captured. CPU builds refuse to capture.
#ifndef MAMBASERVE_CORE_CUDA_GRAPH_H_
#define MAMBASERVE_CORE_CUDA_GRAPH_H_

#include <functional>

#include "absl/status/statusor.h"
#include "core/stream.h"

namespace mambaserve {

class CudaGraph {
 public:
  CudaGraph() = default;
  ~CudaGraph();
  CudaGraph(CudaGraph&& other) noexcept;
  CudaGraph& operator=(CudaGraph&& other) noexcept;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Runs `enqueue` with `stream` capturing; nothing it enqueues executes now. An error from
  // `enqueue` or from the capture ends the capture and is returned.
  static absl::StatusOr<CudaGraph> Capture(const Stream& stream,
                                           const std::function<absl::Status()>& enqueue);

  // Enqueues the captured work on `stream`.
  absl::Status Launch(const Stream& stream) const;

 private:
  void* exec_ = nullptr;  // cudaGraphExec_t
};

}  // namespace mambaserve

#endif  // MAMBASERVE_CORE_CUDA_GRAPH_H_
