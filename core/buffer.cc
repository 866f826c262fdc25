#include "core/buffer.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "core/stream.h"
#if MAMBASERVE_HAS_CUDA
#include "core/cuda_status.h"
#endif

namespace mambaserve {
namespace {

constexpr int64_t kCpuAlignment = 64;  // one cache line; also enough for AVX-512 loads

absl::Status NoCuda() { return absl::FailedPreconditionError("this build has no CUDA backend"); }

}  // namespace

bool CudaAvailable() {
#if MAMBASERVE_HAS_CUDA
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
#else
  return false;
#endif
}

absl::StatusOr<int64_t> DeviceFreeMemory(Device device) {
  if (!device.is_cuda()) {
    return absl::FailedPreconditionError("DeviceFreeMemory: only GPUs report free memory");
  }
#if MAMBASERVE_HAS_CUDA
  int current = 0;
  CUDA_RETURN_IF_ERROR(cudaGetDevice(&current));
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device.index));
  size_t free_bytes = 0, total = 0;
  const cudaError_t e = cudaMemGetInfo(&free_bytes, &total);
  cudaSetDevice(current);
  CUDA_RETURN_IF_ERROR(e);
  return static_cast<int64_t>(free_bytes);
#else
  return absl::FailedPreconditionError("DeviceFreeMemory: built without CUDA");
#endif
}

absl::Status KeepFreedStreamMemory(Device device) {
  if (!device.is_cuda()) return absl::InvalidArgumentError("KeepFreedStreamMemory: not a GPU");
#if MAMBASERVE_HAS_CUDA
  constexpr int kMaxDevices = 64;
  static std::atomic<bool> done[kMaxDevices];
  if (device.index < 0 || device.index >= kMaxDevices) {
    return absl::InvalidArgumentError(absl::StrCat("KeepFreedStreamMemory: device ", device.index));
  }
  if (done[device.index].load(std::memory_order_acquire)) return absl::OkStatus();
  cudaMemPool_t pool = nullptr;
  CUDA_RETURN_IF_ERROR(cudaDeviceGetDefaultMemPool(&pool, device.index));
  uint64_t keep = uint64_t{1} << 30;
  CUDA_RETURN_IF_ERROR(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  done[device.index].store(true, std::memory_order_release);
  return absl::OkStatus();
#else
  return NoCuda();
#endif
}

Buffer::~Buffer() { Release(); }

Buffer::Buffer(Buffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      nbytes_(std::exchange(other.nbytes_, 0)),
      device_(other.device_),
      pinned_(std::exchange(other.pinned_, false)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    Release();
    data_ = std::exchange(other.data_, nullptr);
    nbytes_ = std::exchange(other.nbytes_, 0);
    device_ = other.device_;
    pinned_ = std::exchange(other.pinned_, false);
  }
  return *this;
}

void Buffer::Release() {
  if (data_ == nullptr) return;
  if (pinned_) {
#if MAMBASERVE_HAS_CUDA
    cudaFreeHost(data_);
#endif
    pinned_ = false;
  } else if (device_.is_cpu()) {
    std::free(data_);
  } else {
#if MAMBASERVE_HAS_CUDA
    cudaFree(data_);  // a failure here cannot be reported from a destructor
#endif
  }
  data_ = nullptr;
  nbytes_ = 0;
}

absl::StatusOr<Buffer> Buffer::Allocate(Device device, int64_t nbytes) {
  MS_CHECK_ARG(nbytes >= 0, "Buffer::Allocate: negative size ", nbytes);
  Buffer b;
  b.device_ = device;
  b.nbytes_ = nbytes;
  if (nbytes == 0) return b;
  if (device.is_cpu()) {
    const int64_t rounded = (nbytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    b.data_ = std::aligned_alloc(kCpuAlignment, rounded);
    if (b.data_ == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("out of host memory allocating ", nbytes, " bytes"));
    }
    return b;
  }
#if MAMBASERVE_HAS_CUDA
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device.index));
  const cudaError_t e = cudaMalloc(&b.data_, nbytes);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    b.data_ = nullptr;
    return absl::ResourceExhaustedError(
        absl::StrCat("out of GPU memory on ", device.ToString(), " allocating ", nbytes, " bytes"));
  }
  CUDA_RETURN_IF_ERROR(e);
  return b;
#else
  return NoCuda();
#endif
}

absl::StatusOr<Buffer> Buffer::AllocatePinned(int64_t nbytes) {
#if MAMBASERVE_HAS_CUDA
  MS_CHECK_ARG(nbytes >= 0, "Buffer::AllocatePinned: negative size ", nbytes);
  if (!CudaAvailable() || nbytes == 0) return Allocate(Device::Cpu(), nbytes);
  Buffer b;
  b.device_ = Device::Cpu();
  const cudaError_t e = cudaMallocHost(&b.data_, nbytes);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    b.data_ = nullptr;
    return absl::ResourceExhaustedError(
        absl::StrCat("out of page-locked host memory allocating ", nbytes, " bytes"));
  }
  CUDA_RETURN_IF_ERROR(e);
  b.nbytes_ = nbytes;
  b.pinned_ = true;
  return b;
#else
  return Allocate(Device::Cpu(), nbytes);
#endif
}

absl::StatusOr<Buffer> Buffer::ForTensor(Device device, DType dtype,
                                         std::initializer_list<int64_t> shape, TensorView* view) {
  TensorView probe(nullptr, dtype, device, shape);
  ASSIGN_OR_RETURN(Buffer b, Allocate(device, probe.nbytes()));
  *view = TensorView(b.data(), dtype, device, shape);
  return b;
}

absl::Status CopyBytes(void* dst, Device dst_device, const void* src, Device src_device,
                       int64_t nbytes, const Stream* stream) {
  if (nbytes == 0) return absl::OkStatus();
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, nbytes);
    return absl::OkStatus();
  }
#if MAMBASERVE_HAS_CUDA
  if (stream != nullptr && stream->is_cuda()) {
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDefault,
                                         static_cast<cudaStream_t>(stream->handle())));
  } else {
    CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, src, nbytes, cudaMemcpyDefault));
  }
  return absl::OkStatus();
#else
  (void)stream;
  return NoCuda();
#endif
}

absl::Status ZeroBytes(void* dst, Device device, int64_t nbytes, const Stream* stream) {
  if (nbytes == 0) return absl::OkStatus();
  if (device.is_cpu()) {
    std::memset(dst, 0, nbytes);
    return absl::OkStatus();
  }
#if MAMBASERVE_HAS_CUDA
  if (stream != nullptr && stream->is_cuda()) {
    CUDA_RETURN_IF_ERROR(
        cudaMemsetAsync(dst, 0, nbytes, static_cast<cudaStream_t>(stream->handle())));
  } else {
    CUDA_RETURN_IF_ERROR(cudaMemset(dst, 0, nbytes));
  }
  return absl::OkStatus();
#else
  (void)stream;
  return NoCuda();
#endif
}

}  // namespace mambaserve
