#include "state_manager/block_allocator.h"

#include <set>

#include "gtest/gtest.h"

namespace mambaserve {
namespace {

TEST(BlockAllocator, NeedsTwoBlocks) {
  EXPECT_FALSE(BlockAllocator::Create(1).ok());
  EXPECT_FALSE(BlockAllocator::Create(0).ok());
  EXPECT_TRUE(BlockAllocator::Create(2).ok());
}

TEST(BlockAllocator, AllocateNeverHandsOutNullBlock) {
  auto a = BlockAllocator::Create(5);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->num_free(), 4);
  std::set<BlockId> got;
  for (int i = 0; i < 4; ++i) {
    auto b = a->Allocate();
    ASSERT_TRUE(b.ok());
    EXPECT_NE(*b, kNullBlock);
    EXPECT_EQ(*a->RefCount(*b), 1);
    got.insert(*b);
  }
  EXPECT_EQ(got, (std::set<BlockId>{1, 2, 3, 4}));
  EXPECT_EQ(a->num_free(), 0);
  auto none = a->Allocate();
  EXPECT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(BlockAllocator, RefCountsAndFifoReuse) {
  auto a = *BlockAllocator::Create(4);
  BlockId b1 = *a.Allocate(), b2 = *a.Allocate();
  ASSERT_TRUE(a.Incref(b1).ok());
  EXPECT_EQ(*a.RefCount(b1), 2);
  EXPECT_EQ(*a.Decref(b1), 1);
  EXPECT_EQ(a.num_free(), 1);
  EXPECT_EQ(*a.Decref(b1), 0);
  EXPECT_EQ(a.num_free(), 2);
  EXPECT_EQ(*a.Decref(b2), 0);
  // FIFO: block 3 was free first, then b1, then b2.
  EXPECT_EQ(*a.Allocate(), 3);
  EXPECT_EQ(*a.Allocate(), b1);
  EXPECT_EQ(*a.Allocate(), b2);
}

TEST(BlockAllocator, RefusesBadIdsAndDoubleFrees) {
  auto a = *BlockAllocator::Create(4);
  BlockId b = *a.Allocate();
  EXPECT_EQ(a.Decref(kNullBlock).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.Incref(kNullBlock).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.Decref(4).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(a.Decref(-1).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(a.Incref(100).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(a.RefCount(7).status().code(), absl::StatusCode::kOutOfRange);
  // Incref / decref of a free block.
  EXPECT_EQ(a.Incref(b + 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.Decref(b + 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*a.Decref(b), 0);
  auto again = a.Decref(b);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(again.status().message().find("double free"), absl::string_view::npos);
  EXPECT_EQ(a.num_free(), 3);  // the refused calls changed nothing
}

}  // namespace
}  // namespace mambaserve
