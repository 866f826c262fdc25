#include "parallel/mamba2_groups.h"

#include "gtest/gtest.h"

namespace mambaserve {
namespace {

TEST(Mamba2Groups, DivisibleGroupsAreDisjoint) {
  // H = 8, G = 4, tp = 2: rank 1 holds heads 4..7 and groups 2, 3.
  auto s = ComputeMamba2RankSlice(8, 4, 2, 1);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->first_head, 4);
  EXPECT_EQ(s->num_heads, 4);
  EXPECT_EQ(s->first_group, 2);
  EXPECT_EQ(s->num_groups, 2);
  EXPECT_FALSE(s->group_spans_ranks);
  EXPECT_EQ(s->LocalGroupOfHead(3), 1);
}

TEST(Mamba2Groups, ReplicationRuleGivesOneGroupCopyPerRank) {
  // G = 1, tp = 4: every rank holds a copy of group 0 (extra = 3).
  EXPECT_EQ(ExtraGroupsForHeadShards(1, 4), 3);
  for (int r = 0; r < 4; ++r) {
    auto s = ComputeMamba2RankSlice(80, 1, 4, r);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(s->first_group, 0);
    EXPECT_EQ(s->num_groups, 1);
    EXPECT_TRUE(s->group_spans_ranks);
  }
  // G = 2, tp = 4: rank r holds group r / 2.
  EXPECT_EQ(ExtraGroupsForHeadShards(2, 4), 2);
  for (int r = 0; r < 4; ++r) {
    auto s = ComputeMamba2RankSlice(8, 2, 4, r);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(s->first_group, r / 2);
    EXPECT_EQ(s->num_groups, 1);
  }
  EXPECT_EQ(ExtraGroupsForHeadShards(8, 4), 0);
}

TEST(Mamba2Groups, StraddlingHeads) {
  // H = 12, G = 3 (4 heads per group), tp = 2: rank 0 heads 0..5 read groups 0, 1.
  auto r0 = ComputeMamba2RankSlice(12, 3, 2, 0);
  auto r1 = ComputeMamba2RankSlice(12, 3, 2, 1);
  ASSERT_TRUE(r0.ok() && r1.ok());
  EXPECT_EQ(r0->first_group, 0);
  EXPECT_EQ(r0->num_groups, 2);
  EXPECT_EQ(r0->LocalGroupOfHead(4), 1);
  EXPECT_EQ(r1->first_group, 1);
  EXPECT_EQ(r1->num_groups, 2);
  EXPECT_EQ(r1->LocalGroupOfHead(0), 0);  // head 6 -> group 1 -> local 0
  EXPECT_EQ(r1->LocalGroupOfHead(2), 1);  // head 8 -> group 2 -> local 1
  EXPECT_TRUE(r0->group_spans_ranks);
  // tp = 4: 3 heads per rank; ranks hold 1, 2, 2, 1 groups.
  const int64_t expect_groups[4] = {1, 2, 2, 1};
  for (int r = 0; r < 4; ++r) {
    auto s = ComputeMamba2RankSlice(12, 3, 4, r);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(s->num_groups, expect_groups[r]) << r;
  }
}

TEST(Mamba2Groups, RefusesImpossibleCombinationsNamingTheField) {
  auto a = ComputeMamba2RankSlice(10, 2, 4, 0);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("num_heads"), absl::string_view::npos);
  EXPECT_NE(a.status().message().find("tp_size"), absl::string_view::npos);
  auto b = ComputeMamba2RankSlice(12, 5, 2, 0);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("n_groups"), absl::string_view::npos);
  EXPECT_FALSE(ComputeMamba2RankSlice(8, 1, 2, 2).ok());
  EXPECT_FALSE(ComputeMamba2RankSlice(8, 0, 2, 0).ok());
}

}  // namespace
}  // namespace mambaserve
