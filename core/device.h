// Where memory lives and kernels run.
#ifndef MAMBASERVE_CORE_DEVICE_H_
#define MAMBASERVE_CORE_DEVICE_H_

#include <cstdint>
#include <string>

namespace mambaserve {

enum class DeviceType : uint8_t { kCpu = 0, kCuda = 1 };

struct Device {
  DeviceType type = DeviceType::kCpu;
  int index = 0;  // GPU ordinal for kCuda

  static Device Cpu() { return Device{}; }
  static Device Cuda(int index) { return Device{DeviceType::kCuda, index}; }
  bool is_cpu() const { return type == DeviceType::kCpu; }
  bool is_cuda() const { return type == DeviceType::kCuda; }
  bool operator==(const Device&) const = default;
  std::string ToString() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
};

// True when this binary has the CUDA backend and at least one GPU is visible.
bool CudaAvailable();

}  // namespace mambaserve

#endif  // MAMBASERVE_CORE_DEVICE_H_
