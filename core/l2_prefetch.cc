#include "core/l2_prefetch.h"

#include <atomic>
#include <cstdint>

#include "core/dependent_launch.h"

namespace mambaserve {
namespace {

std::atomic<int> g_mode{1};

}  // namespace

int L2PrefetchMode() { return g_mode.load(); }
void SetL2PrefetchMode(int mode) { g_mode.store(mode); }

L2PrefetchRange L2PrefetchOf(const void* ptr, int64_t bytes) {
  const int mode = L2PrefetchMode();
  // The bulk prefetch (cp.async.bulk.prefetch.L2) needs sm_90.
  if (mode == 0 || !CurrentDeviceIsSm90OrNewer() || ptr == nullptr ||
      reinterpret_cast<uintptr_t>(ptr) % 16 != 0) {
    return {};
  }
  return {ptr, bytes / 16 * 16, mode == 2};
}

}  // namespace mambaserve
