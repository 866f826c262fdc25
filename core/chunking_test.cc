#include "core/chunking.h"

#include "gtest/gtest.h"

namespace mambaserve {
namespace {

TEST(Chunking, SplitCoversRangeWithShortTail) {
  auto c = SplitIntoChunks(10, 4);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0], (ChunkRange{0, 4}));
  EXPECT_EQ(c[2], (ChunkRange{8, 10}));
  EXPECT_TRUE(SplitIntoChunks(0, 4).empty());
  EXPECT_EQ(SplitIntoChunks(8, 4).size(), 2u);
}

TEST(Chunking, AlignedSplitStartsAtNextBoundary) {
  // 6 tokens already done, 9 new ones, chunk 4: [6,8) [8,12) [12,15) in absolute positions,
  // returned relative to the new tokens.
  auto c = SplitIntoAlignedChunks(6, 9, 4);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0], (ChunkRange{0, 2}));
  EXPECT_EQ(c[1], (ChunkRange{2, 6}));
  EXPECT_EQ(c[2], (ChunkRange{6, 9}));
  EXPECT_EQ(SplitIntoAlignedChunks(8, 4, 4).size(), 1u);  // already aligned
}

TEST(Chunking, MergeInvertsSplit) {
  const int64_t width = 3;
  std::vector<float> seq(11 * width);
  for (size_t i = 0; i < seq.size(); ++i) seq[i] = static_cast<float>(i) * 1.5f - 4;
  auto chunks = SplitIntoChunks(11, 4);
  std::vector<std::vector<float>> parts;
  for (const auto& c : chunks) {
    parts.emplace_back(seq.begin() + c.begin * width, seq.begin() + c.end * width);
  }
  EXPECT_EQ(MergeChunks(chunks, parts, width), seq);
}

}  // namespace
}  // namespace mambaserve
