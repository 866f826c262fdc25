// Splitting a token range into chunks and merging per-chunk results back.
#ifndef MAMBASERVE_CORE_CHUNKING_H_
#define MAMBASERVE_CORE_CHUNKING_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace mambaserve {

struct ChunkRange {
  int64_t begin = 0;  // first token, inclusive
  int64_t end = 0;    // last token, exclusive
  int64_t size() const { return end - begin; }
  bool operator==(const ChunkRange&) const = default;
};

// Splits [0, length) into consecutive chunks of `chunk_size` tokens; the last may be shorter.
// An empty sequence has no chunks. chunk_size must be positive.
std::vector<ChunkRange> SplitIntoChunks(int64_t length, int64_t chunk_size);

// Like SplitIntoChunks, but the first chunk ends at the first multiple of chunk_size after
// `offset` (for a sequence whose first `offset` tokens were already processed, so chunk
// boundaries stay aligned to absolute positions, as block-aligned prefix caching needs).
std::vector<ChunkRange> SplitIntoAlignedChunks(int64_t offset, int64_t length, int64_t chunk_size);

// Concatenates per-chunk rows (each chunk's rows, `row_width` values each) back into one array
// in chunk order. The chunks must tile [0, total) without gaps.
template <typename T>
std::vector<T> MergeChunks(const std::vector<ChunkRange>& chunks,
                           const std::vector<std::vector<T>>& parts, int64_t row_width) {
  int64_t total = chunks.empty() ? 0 : chunks.back().end;
  std::vector<T> out(static_cast<size_t>(total * row_width));
  for (size_t i = 0; i < chunks.size(); ++i) {
    for (int64_t j = 0; j < chunks[i].size() * row_width; ++j) {
      out[static_cast<size_t>(chunks[i].begin * row_width + j)] = parts[i][static_cast<size_t>(j)];
    }
  }
  return out;
}

}  // namespace mambaserve

#endif  // MAMBASERVE_CORE_CHUNKING_H_
