// Reference-counted allocation of state-pool block ids. Block 0 is the null block: it is never
// handed out, and every operation on it is refused. A block is free exactly when its reference
// count is 0. Not thread-safe (the scheduler on rank 0 owns it).
#ifndef MAMBASERVE_STATE_MANAGER_BLOCK_ALLOCATOR_H_
#define MAMBASERVE_STATE_MANAGER_BLOCK_ALLOCATOR_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace mambaserve {

using BlockId = int32_t;
inline constexpr BlockId kNullBlock = 0;

class BlockAllocator {
 public:
  // `num_blocks` counts the null block, so num_blocks - 1 blocks are allocatable (>= 1 needed).
  static absl::StatusOr<BlockAllocator> Create(int64_t num_blocks);

  // A free block with reference count 1; ResourceExhausted when none is free. Blocks are handed
  // out lowest id first after a fresh start, then in the order they were freed (FIFO), which
  // spreads reuse.
  absl::StatusOr<BlockId> Allocate();
  // Adds a reference to an allocated block.
  absl::Status Incref(BlockId id);
  // Drops a reference; at 0 the block is free again. Returns the new count. Freeing a free block
  // (double free), block 0 and out-of-range ids are InvalidArgument / OutOfRange errors.
  absl::StatusOr<int32_t> Decref(BlockId id);
  // Reference count of a block (0 = free); error for block 0 and out-of-range ids.
  absl::StatusOr<int32_t> RefCount(BlockId id) const;

  int64_t num_blocks() const { return static_cast<int64_t>(refcount_.size()); }
  int64_t num_allocatable() const { return num_blocks() - 1; }
  int64_t num_free() const { return num_free_; }

 private:
  BlockAllocator() = default;
  absl::Status Check(BlockId id) const;

  std::vector<int32_t> refcount_;
  std::vector<BlockId> free_ring_;  // FIFO ring of free ids
  int64_t free_head_ = 0;           // index of the next id to hand out
  int64_t num_free_ = 0;
};

}  // namespace mambaserve

#endif  // MAMBASERVE_STATE_MANAGER_BLOCK_ALLOCATOR_H_
