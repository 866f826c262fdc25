#include "core/dependent_launch.h"

#include <atomic>

#if MAMBASERVE_HAS_CUDA
#include <cuda_runtime.h>
#endif

namespace mambaserve {
namespace {

std::atomic<bool> g_switched_off{false};

bool Supported() {
#if MAMBASERVE_HAS_CUDA
  static const bool ok = [] {
    int dev = 0, major = 0;
    return cudaGetDevice(&dev) == cudaSuccess &&
           cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
           major >= 9;
  }();
  return ok;
#else
  return false;
#endif
}

}  // namespace

bool DependentLaunchEnabled() { return !g_switched_off.load() && Supported(); }
void SetDependentLaunch(bool on) { g_switched_off.store(!on); }

}  // namespace mambaserve
