// Owning memory on the CPU (64-byte aligned) or on a GPU (cudaMalloc).
#ifndef MAMBASERVE_CORE_BUFFER_H_
#define MAMBASERVE_CORE_BUFFER_H_

#include <cstdint>
#include <initializer_list>

#include "absl/status/statusor.h"
#include "core/device.h"
#include "core/tensor.h"

namespace mambaserve {

class Stream;

class Buffer {
 public:
  Buffer() = default;
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  static absl::StatusOr<Buffer> Allocate(Device device, int64_t nbytes);
  // Page-locked host memory (cudaMallocHost), which GPU copies reach at full PCIe speed and
  // asynchronously; plain host memory where there is no GPU or no CUDA.
  static absl::StatusOr<Buffer> AllocatePinned(int64_t nbytes);
  // Allocates a tensor-sized buffer and returns a contiguous view of it through `view`.
  static absl::StatusOr<Buffer> ForTensor(Device device, DType dtype,
                                          std::initializer_list<int64_t> shape, TensorView* view);

  void* data() const { return data_; }
  int64_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  TensorView View(DType dtype, std::initializer_list<int64_t> shape) const {
    return TensorView(data_, dtype, device_, shape);
  }

 private:
  void Release();

  void* data_ = nullptr;
  int64_t nbytes_ = 0;
  Device device_;
  bool pinned_ = false;
};

// Copies bytes between any two devices (host<->device copies are synchronous on `stream`'s
// device when stream is null, asynchronous on it otherwise).
absl::Status CopyBytes(void* dst, Device dst_device, const void* src, Device src_device,
                       int64_t nbytes, const Stream* stream = nullptr);
// Free bytes of a GPU's memory now (cudaMemGetInfo on that device); FailedPrecondition for
// the CPU or in a build without CUDA.
absl::StatusOr<int64_t> DeviceFreeMemory(Device device);

// Makes `device`'s default stream-ordered pool (cudaMallocAsync) keep up to 1 GiB of freed
// memory across synchronisations. Its default releases everything at each one, so a kernel's
// per-call workspace was mapped afresh after every step's sync (about 0.1 ms for 20-40 MB on an
// H100; the Mamba-1 scan at b = 1 L = 4K went from 425 to 365 us: bench/RESULTS_mamba1.md).
// Idempotent and cheap after the first call per device; kernels that cudaMallocAsync a workspace
// call it first. FailedPrecondition without CUDA.
absl::Status KeepFreedStreamMemory(Device device);

// Sets nbytes to zero.
absl::Status ZeroBytes(void* dst, Device device, int64_t nbytes, const Stream* stream = nullptr);

}  // namespace mambaserve

#endif  // MAMBASERVE_CORE_BUFFER_H_
