#include "kernels/ssd_chunk_scan.h"
namespace mambaserve {
absl::Status RunSsdChunkScanCuda(const SsdChunkScanParams& p, const Stream& stream) {
  return absl::UnimplementedError("ssd cuda");
}
}  // namespace mambaserve
