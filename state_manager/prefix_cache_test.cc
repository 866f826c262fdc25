#include "state_manager/prefix_cache.h"

#include <numeric>

#include "gtest/gtest.h"
#include "state_manager/sequence_states.h"

namespace mambaserve {
namespace {

std::vector<TokenId> Iota(int n, int start = 100) {
  std::vector<TokenId> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

TEST(PrefixHash, DeterministicAndChained) {
  const std::vector<TokenId> t = Iota(8);
  const PrefixHash h = HashBlock(kRootPrefixHash, t);
  // Pinned value: the hash must not change between runs, builds or machines.
  EXPECT_EQ(h, HashBlock(kRootPrefixHash, Iota(8)));
  auto chain = ChainHashes(Iota(20), 8);
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_EQ(chain[0], h);
  EXPECT_EQ(chain[1], HashBlock(h, Iota(8, 108)));
  // Different parent or tokens: different hashes.
  EXPECT_FALSE(HashBlock(chain[0], t) == h);
  auto t2 = t;
  t2[7] += 1;
  EXPECT_FALSE(HashBlock(kRootPrefixHash, t2) == h);
  EXPECT_FALSE(HashBlock(kRootPrefixHash, std::span<const TokenId>(t).first(7)) == h);
}

TEST(PrefixHash, GoldenValue) {
  // Pinned: the hash must be the same in every run, build and machine (a persisted or
  // cross-process cache relies on it). Changing HashBlock must update this value on purpose.
  const PrefixHash h = HashBlock(kRootPrefixHash, std::vector<TokenId>{1, 2, 3});
  EXPECT_EQ(h.hi, 0xf2503bb2ea3fd38dull);
  EXPECT_EQ(h.lo, 0x4863d54a3b549139ull);
}

TEST(PrefixCache, BlockSizeMustBeChunkMultiple) {
  auto a = *BlockAllocator::Create(8);
  EXPECT_FALSE(PrefixCache::Create(&a, {12, 8}).ok());
  EXPECT_FALSE(PrefixCache::Create(&a, {0, 8}).ok());
  EXPECT_FALSE(PrefixCache::Create(nullptr, {16, 8}).ok());
  EXPECT_TRUE(PrefixCache::Create(&a, {16, 8}).ok());
}

class PrefixCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    alloc_ = std::make_unique<BlockAllocator>(*BlockAllocator::Create(6));
    cache_ = std::make_unique<PrefixCache>(*PrefixCache::Create(alloc_.get(), {4, 2}));
  }
  // Caches `tokens`' prefix of (index+1)*4 tokens in a fresh block; returns it with the
  // caller's reference dropped (so it is held by the cache only).
  BlockId Put(const std::vector<TokenId>& tokens, int index) {
    auto hashes = ChainHashes(tokens, 4);
    BlockId b = *cache_->AllocateBlock();
    auto ok = cache_->Insert(hashes[index], index == 0 ? kRootPrefixHash : hashes[index - 1],
                             std::span<const TokenId>(tokens).subspan(index * 4, 4), b);
    EXPECT_TRUE(ok.ok() && *ok);
    EXPECT_EQ(*alloc_->Decref(b), 1);
    return b;
  }
  std::unique_ptr<BlockAllocator> alloc_;
  std::unique_ptr<PrefixCache> cache_;
};

TEST_F(PrefixCacheTest, PendingUntilNextStepThenLongestPrefixCappedAtNMinus1) {
  const auto p = Iota(12);
  BlockId b0 = Put(p, 0);
  BlockId b1 = Put(p, 1);
  // Not served in the step it was cached in.
  auto miss = *cache_->Lookup(p);
  EXPECT_EQ(miss.hit_tokens, 0);
  EXPECT_EQ(miss.block, kNullBlock);
  cache_->BeginStep();
  // n = 12: at most 11 tokens -> 8 (two blocks).
  auto hit = *cache_->Lookup(p);
  EXPECT_EQ(hit.hit_tokens, 8);
  EXPECT_EQ(hit.block, b1);
  EXPECT_EQ(hit.blocks, (std::vector<BlockId>{b0, b1}));
  EXPECT_EQ(*alloc_->RefCount(b1), 2);  // the caller's reference
  EXPECT_EQ(*alloc_->Decref(b1), 1);
  // n = 8: at most 7 tokens -> one block (the last token is always recomputed).
  auto capped = *cache_->Lookup(std::span<const TokenId>(p).first(8));
  EXPECT_EQ(capped.hit_tokens, 4);
  EXPECT_EQ(capped.block, b0);
  ASSERT_TRUE(alloc_->Decref(b0).ok());
  // A prompt that diverges inside block 1 hits block 0 only.
  auto q = p;
  q[6] = 1;
  auto part = *cache_->Lookup(q);
  EXPECT_EQ(part.hit_tokens, 4);
  ASSERT_TRUE(alloc_->Decref(part.block).ok());
  // A one-token prompt never hits.
  EXPECT_EQ(cache_->Lookup(std::span<const TokenId>(p).first(1))->hit_tokens, 0);
  auto st = cache_->stats();
  EXPECT_EQ(st.lookups, 5);
  EXPECT_EQ(st.hits, 3);
  EXPECT_EQ(st.hit_tokens, 16);
  EXPECT_EQ(st.inserts, 2);
  EXPECT_EQ(st.cached_blocks, 2);
  EXPECT_EQ(st.evictable_blocks, 2);
  EXPECT_EQ(st.free_blocks, 3);
}

TEST_F(PrefixCacheTest, LongestPrefixNeedNotBeContiguous) {
  // Mamba needs only the state at the hit point: block 1 cached without block 0.
  const auto p = Iota(10);
  BlockId b1 = Put(p, 1);
  cache_->BeginStep();
  auto hit = *cache_->Lookup(p);
  EXPECT_EQ(hit.hit_tokens, 8);
  EXPECT_EQ(hit.blocks, (std::vector<BlockId>{kNullBlock, b1}));
  ASSERT_TRUE(alloc_->Decref(b1).ok());
}

TEST_F(PrefixCacheTest, CollisionsAreMisses) {
  // An entry stored under prefix p's hash but holding other tokens (what a hash collision
  // would look like) is never served.
  const auto p = Iota(9);
  const auto other = Iota(9, 500);
  auto hashes = ChainHashes(p, 4);
  BlockId b = *cache_->AllocateBlock();
  ASSERT_TRUE(
      *cache_->Insert(hashes[0], kRootPrefixHash, std::span<const TokenId>(other).first(4), b));
  ASSERT_TRUE(alloc_->Decref(b).ok());
  cache_->BeginStep();
  EXPECT_EQ(cache_->Lookup(p)->hit_tokens, 0);
  // Duplicate inserts are refused without taking a reference.
  BlockId b2 = *cache_->AllocateBlock();
  EXPECT_FALSE(
      *cache_->Insert(hashes[0], kRootPrefixHash, std::span<const TokenId>(p).first(4), b2));
  EXPECT_EQ(*alloc_->RefCount(b2), 1);
  ASSERT_TRUE(alloc_->Decref(b2).ok());
  // Inserting a free block or a wrong-size token block is refused.
  EXPECT_FALSE(
      cache_->Insert(hashes[1], hashes[0], std::span<const TokenId>(p).subspan(4, 4), b2).ok());
  EXPECT_FALSE(
      cache_->Insert(hashes[1], hashes[0], std::span<const TokenId>(p).subspan(4, 3), b).ok());
}

TEST_F(PrefixCacheTest, LruEvictionUnderPressure) {
  // 5 allocatable blocks: cache three prefixes, keep one referenced.
  const auto a = Iota(5, 0), b = Iota(5, 100), c = Iota(5, 200);
  BlockId ba = Put(a, 0), bb = Put(b, 0), bc = Put(c, 0);
  cache_->BeginStep();
  // Touch a (most recent), hold c.
  auto ha = *cache_->Lookup(a);
  ASSERT_TRUE(alloc_->Decref(ha.block).ok());
  auto hc = *cache_->Lookup(c);
  EXPECT_EQ(hc.block, bc);
  // Two free blocks remain; the third allocation must evict the LRU unreferenced entry: b.
  BlockId x1 = *cache_->AllocateBlock(), x2 = *cache_->AllocateBlock();
  EXPECT_EQ(cache_->stats().evictions, 0);
  BlockId x3 = *cache_->AllocateBlock();
  EXPECT_EQ(x3, bb);
  EXPECT_EQ(cache_->stats().evictions, 1);
  EXPECT_EQ(cache_->Lookup(b)->hit_tokens, 0);
  // Next: a goes; c is referenced and stays.
  BlockId x4 = *cache_->AllocateBlock();
  EXPECT_EQ(x4, ba);
  auto none = cache_->AllocateBlock();
  EXPECT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  auto again = *cache_->Lookup(c);
  EXPECT_EQ(again.block, bc);
  for (BlockId x : {x1, x2, x3, x4, bc, bc}) ASSERT_TRUE(alloc_->Decref(x).ok());
  EXPECT_EQ(cache_->stats().evictable_blocks, 1);
  ASSERT_TRUE(cache_->Clear().ok());
  EXPECT_EQ(alloc_->num_free(), 5);
  EXPECT_EQ(cache_->stats().cached_blocks, 0);
}

TEST(SequenceStates, CopyIntoNewBlockRuleAndStepVisibility) {
  auto alloc = *BlockAllocator::Create(16);
  auto cache = *PrefixCache::Create(&alloc, {4, 2});
  auto states = *SequenceStates::Create(&alloc, &cache, {PrefixCachingMode::kAlign, 4});
  const auto prompt = Iota(10);
  EXPECT_EQ(*states.AddSequence(1, prompt), 0);
  states.BeginStep();
  EXPECT_EQ(*states.AlignedChunk(1, 6), 4);  // up to the first boundary
  auto e = *states.Schedule(1, 4);
  EXPECT_FALSE(e.has_initial_state);
  EXPECT_NE(e.state_block, kNullBlock);
  EXPECT_EQ(states.plan().zero_blocks, std::vector<BlockId>{e.state_block});
  EXPECT_TRUE(states.plan().copies.empty());
  EXPECT_FALSE(states.Schedule(1, 1).ok());  // once per step
  ASSERT_TRUE(states.EndStep().ok());
  const BlockId sealed = e.state_block;
  // The boundary state is cached now but not served before the next step.
  EXPECT_EQ(*states.AddSequence(2, prompt), 0);
  states.BeginStep();
  EXPECT_EQ(*states.AddSequence(3, prompt), 4);
  EXPECT_EQ(*states.StateBlock(3), sealed);
  // Sequence 1 crosses into a new block: copy sealed -> new first.
  auto e1 = *states.Schedule(1, 4);
  EXPECT_TRUE(e1.has_initial_state);
  EXPECT_EQ(e1.prefix_offset, 4);
  EXPECT_NE(e1.state_block, sealed);
  auto e3 = *states.Schedule(3, 5);
  ASSERT_EQ(states.plan().copies.size(), 2u);
  EXPECT_EQ(states.plan().copies[0].block_ids, std::vector<BlockId>{sealed});
  EXPECT_EQ(states.plan().copies[0].dst, e1.state_block);
  EXPECT_EQ(states.plan().copies[1].block_ids, std::vector<BlockId>{sealed});
  EXPECT_EQ(states.plan().copies[1].dst, e3.state_block);
  // The sources are released only when the step ends.
  EXPECT_EQ(*alloc.RefCount(sealed), 3);
  ASSERT_TRUE(states.EndStep().ok());
  EXPECT_EQ(*alloc.RefCount(sealed), 1);  // the cache's
  EXPECT_EQ(*states.NumConsumed(3), 9);
  EXPECT_EQ(*states.NumConsumed(1), 8);
  // Free everything: only cached blocks remain allocated; clearing returns them all.
  for (int64_t id : {1, 2, 3}) ASSERT_TRUE(states.FreeSequence(id).ok());
  EXPECT_FALSE(states.FreeSequence(1).ok());
  EXPECT_EQ(cache.stats().cached_blocks, 2);
  ASSERT_TRUE(cache.Clear().ok());
  EXPECT_EQ(alloc.num_free(), 15);
}

TEST(SequenceStates, AllModeBoundaryBlocks) {
  EXPECT_EQ(InteriorBoundaries(3, 10, 4), (std::vector<int64_t>{4, 8, 12}));
  EXPECT_EQ(InteriorBoundaries(4, 4, 4), (std::vector<int64_t>{}));  // the end is not interior
  EXPECT_EQ(InteriorBoundaries(4, 5, 4), (std::vector<int64_t>{8}));
  auto alloc = *BlockAllocator::Create(16);
  auto cache = *PrefixCache::Create(&alloc, {4, 2});
  auto states = *SequenceStates::Create(&alloc, &cache, {PrefixCachingMode::kAll, 4});
  const auto prompt = Iota(14);
  ASSERT_TRUE(states.AddSequence(1, prompt).ok());
  states.BeginStep();
  auto e = *states.Schedule(1, 11);  // boundaries 4 and 8 inside, 11 is the end
  ASSERT_EQ(e.boundary_blocks.size(), 2u);
  auto w = e.BoundaryWrites(4);
  EXPECT_EQ(w[0].position, 4);
  EXPECT_EQ(w[1].position, 8);
  ASSERT_TRUE(states.EndStep().ok());
  EXPECT_EQ(cache.stats().cached_blocks, 2);
  states.BeginStep();
  // A second sequence over the same prompt hits 8 (12 is not cached yet).
  EXPECT_EQ(*states.AddSequence(2, prompt), 8);
  auto e1 = *states.Schedule(1, 3);  // 11 -> 14: boundary 12 inside, not cached -> a block
  ASSERT_EQ(e1.boundary_blocks.size(), 1u);
  EXPECT_NE(e1.boundary_blocks[0], kNullBlock);
  auto e2 = *states.Schedule(2, 6);          // 8 -> 14: the same boundary (both get a block; the
  ASSERT_EQ(e2.boundary_blocks.size(), 1u);  // second insert at EndStep is dropped and freed)
  EXPECT_NE(e2.boundary_blocks[0], kNullBlock);
  const KernelBlockArrays k = ToKernelArrays(states.plan());
  EXPECT_EQ(k.state_blocks, (std::vector<int32_t>{e1.state_block, e2.state_block}));
  EXPECT_EQ(k.has_initial_state, (std::vector<uint8_t>{1, 1}));
  EXPECT_EQ(k.prefix_offsets, (std::vector<int64_t>{11, 8}));
  EXPECT_EQ(k.boundary_offsets, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(k.boundary_blocks,
            (std::vector<int32_t>{e1.boundary_blocks[0], e2.boundary_blocks[0]}));
  const int64_t free_before = alloc.num_free();
  ASSERT_TRUE(states.EndStep().ok());
  EXPECT_EQ(alloc.num_free(), free_before + 1);  // the duplicate boundary block
  EXPECT_EQ(cache.stats().cached_blocks, 3);
  states.BeginStep();
  ASSERT_TRUE(states.AddSequence(3, Iota(16)).ok());
  ASSERT_TRUE(states.EndStep().ok());
  EXPECT_EQ(*states.NumConsumed(3), 12);
  for (int64_t id : {1, 2, 3}) ASSERT_TRUE(states.FreeSequence(id).ok());
  ASSERT_TRUE(cache.Clear().ok());
  EXPECT_EQ(alloc.num_free(), 15);
}

TEST(SequenceStates, ExhaustionChangesNothing) {
  auto alloc = *BlockAllocator::Create(3);  // two usable blocks
  auto cache = *PrefixCache::Create(&alloc, {4, 2});
  auto states = *SequenceStates::Create(&alloc, &cache, {PrefixCachingMode::kAll, 4});
  ASSERT_TRUE(states.AddSequence(1, Iota(12)).ok());
  states.BeginStep();
  // Running block + boundary blocks at 4 and 8 = 3 blocks > 2.
  auto e = states.Schedule(1, 10);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(alloc.num_free(), 2);
  EXPECT_TRUE(states.plan().entries.empty());
  EXPECT_TRUE(states.plan().zero_blocks.empty());
  // A smaller chunk fits, and the sequence can be scheduled after the failure.
  auto ok = states.Schedule(1, 6);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->boundary_blocks.size(), 1u);
  ASSERT_TRUE(states.EndStep().ok());
  EXPECT_EQ(*states.NumConsumed(1), 6);
  // Bad calls.
  EXPECT_FALSE(states.Schedule(1, 1).ok());  // outside a step
  states.BeginStep();
  EXPECT_FALSE(states.Schedule(1, 7).ok());           // beyond the known tokens
  EXPECT_FALSE(states.Schedule(2, 1).ok());           // unknown sequence
  EXPECT_FALSE(states.AddSequence(1, Iota(3)).ok());  // duplicate id
  EXPECT_FALSE(states.AddSequence(5, {}).ok());       // empty prompt
  ASSERT_TRUE(states.EndStep().ok());
  ASSERT_TRUE(states.FreeSequence(1).ok());
  ASSERT_TRUE(cache.Clear().ok());
  EXPECT_EQ(alloc.num_free(), 2);
}

TEST(SequenceStates, NoCacheMode) {
  auto alloc = *BlockAllocator::Create(4);
  auto states = *SequenceStates::Create(&alloc, nullptr, {PrefixCachingMode::kNone, 0});
  EXPECT_EQ(*states.AddSequence(1, Iota(9)), 0);
  EXPECT_EQ(*states.AddSequence(2, Iota(9)), 0);
  for (int step = 0; step < 3; ++step) {
    states.BeginStep();
    EXPECT_EQ(*states.AlignedChunk(1, 4), step < 2 ? 4 : 1);
    auto e = *states.Schedule(1, *states.AlignedChunk(1, 4));
    EXPECT_TRUE(e.boundary_blocks.empty());
    ASSERT_TRUE(states.EndStep().ok());
  }
  EXPECT_EQ(alloc.num_free(), 2);  // one running block, no copies
  ASSERT_TRUE(states.FreeSequence(1).ok());
  ASSERT_TRUE(states.FreeSequence(2).ok());
  EXPECT_EQ(alloc.num_free(), 3);
  EXPECT_FALSE(SequenceStates::Create(&alloc, nullptr, {PrefixCachingMode::kAlign, 4}).ok());
}

}  // namespace
}  // namespace mambaserve
