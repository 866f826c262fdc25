#include "state_manager/block_allocator.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace mambaserve {

absl::StatusOr<BlockAllocator> BlockAllocator::Create(int64_t num_blocks) {
  MS_CHECK_ARG(num_blocks >= 2,
               "BlockAllocator needs at least 2 blocks (the null block and one "
               "more), got ",
               num_blocks);
  MS_CHECK_ARG(num_blocks <= std::numeric_limits<BlockId>::max(), "too many blocks: ", num_blocks);
  BlockAllocator a;
  a.refcount_.assign(static_cast<size_t>(num_blocks), 0);
  a.free_ring_.resize(static_cast<size_t>(num_blocks - 1));
  for (int64_t i = 0; i < num_blocks - 1; ++i) a.free_ring_[i] = static_cast<BlockId>(i + 1);
  a.free_head_ = 0;
  a.num_free_ = num_blocks - 1;
  return a;
}

absl::Status BlockAllocator::Check(BlockId id) const {
  if (id == kNullBlock) {
    return absl::InvalidArgumentError("block 0 is the null block and is never allocated");
  }
  if (id < 0 || id >= num_blocks()) {
    return absl::OutOfRangeError(
        absl::StrCat("block id ", id, " out of range [1, ", num_blocks(), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<BlockId> BlockAllocator::Allocate() {
  if (num_free_ == 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("no free state block (", num_allocatable(), " allocatable)"));
  }
  const int64_t cap = static_cast<int64_t>(free_ring_.size());
  BlockId id = free_ring_[free_head_];
  free_head_ = (free_head_ + 1) % cap;
  --num_free_;
  refcount_[id] = 1;
  return id;
}

absl::Status BlockAllocator::Incref(BlockId id) {
  RETURN_IF_ERROR(Check(id));
  if (refcount_[id] == 0) {
    return absl::InvalidArgumentError(absl::StrCat("incref of free block ", id));
  }
  ++refcount_[id];
  return absl::OkStatus();
}

absl::StatusOr<int32_t> BlockAllocator::Decref(BlockId id) {
  RETURN_IF_ERROR(Check(id));
  if (refcount_[id] == 0) {
    return absl::InvalidArgumentError(absl::StrCat("double free of block ", id));
  }
  if (--refcount_[id] == 0) {
    const int64_t cap = static_cast<int64_t>(free_ring_.size());
    free_ring_[(free_head_ + num_free_) % cap] = id;
    ++num_free_;
  }
  return refcount_[id];
}

absl::StatusOr<int32_t> BlockAllocator::RefCount(BlockId id) const {
  RETURN_IF_ERROR(Check(id));
  return refcount_[id];
}

}  // namespace mambaserve
