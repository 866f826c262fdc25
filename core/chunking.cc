#include "core/chunking.h"

#include <algorithm>

namespace mambaserve {

std::vector<ChunkRange> SplitIntoChunks(int64_t length, int64_t chunk_size) {
  return SplitIntoAlignedChunks(0, length, chunk_size);
}

std::vector<ChunkRange> SplitIntoAlignedChunks(int64_t offset, int64_t length, int64_t chunk_size) {
  std::vector<ChunkRange> chunks;
  if (chunk_size <= 0) return chunks;
  int64_t pos = 0;
  while (pos < length) {
    const int64_t absolute = offset + pos;
    const int64_t next_boundary = (absolute / chunk_size + 1) * chunk_size;
    const int64_t end = std::min(length, next_boundary - offset);
    chunks.push_back({pos, end});
    pos = end;
  }
  return chunks;
}

}  // namespace mambaserve
