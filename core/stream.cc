#include "core/stream.h"

#include <utility>

#include "core/status_macros.h"
#if MAMBASERVE_HAS_CUDA
#include "core/cuda_status.h"
#endif

namespace mambaserve {

Stream::~Stream() {
#if MAMBASERVE_HAS_CUDA
  if (owned_ && handle_ != nullptr) cudaStreamDestroy(static_cast<cudaStream_t>(handle_));
#endif
}

Stream::Stream(Stream&& other) noexcept
    : device_(other.device_),
      handle_(std::exchange(other.handle_, nullptr)),
      owned_(std::exchange(other.owned_, false)) {}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    this->~Stream();
    device_ = other.device_;
    handle_ = std::exchange(other.handle_, nullptr);
    owned_ = std::exchange(other.owned_, false);
  }
  return *this;
}

absl::StatusOr<Stream> Stream::Create(Device device) {
  Stream s;
  s.device_ = device;
  if (device.is_cpu()) return s;
#if MAMBASERVE_HAS_CUDA
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device.index));
  cudaStream_t h = nullptr;
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&h, cudaStreamNonBlocking));
  s.handle_ = h;
  s.owned_ = true;
  return s;
#else
  return absl::FailedPreconditionError("this build has no CUDA backend");
#endif
}

absl::Status Stream::Synchronize() const {
#if MAMBASERVE_HAS_CUDA
  if (is_cuda()) CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(static_cast<cudaStream_t>(handle_)));
#endif
  return absl::OkStatus();
}

}  // namespace mambaserve
