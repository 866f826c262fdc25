// An ordered queue of work on a device. On the CPU backend work runs at once on the caller's
// thread, so a CPU stream carries nothing.
#ifndef MAMBASERVE_CORE_STREAM_H_
#define MAMBASERVE_CORE_STREAM_H_

#include "absl/status/statusor.h"
#include "core/device.h"

namespace mambaserve {

class Stream {
 public:
  // The CPU stream.
  Stream() = default;
  ~Stream();
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // A new non-blocking stream on `device` (a CPU device gives the CPU stream).
  static absl::StatusOr<Stream> Create(Device device);

  Device device() const { return device_; }
  bool is_cuda() const { return device_.is_cuda(); }
  // The cudaStream_t, as void* so CPU code needs no CUDA headers.
  void* handle() const { return handle_; }
  absl::Status Synchronize() const;

 private:
  Device device_;
  void* handle_ = nullptr;
  bool owned_ = false;
};

}  // namespace mambaserve

#endif  // MAMBASERVE_CORE_STREAM_H_
