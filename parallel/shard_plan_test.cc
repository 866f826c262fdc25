#include "parallel/shard_plan.h"

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace mambaserve {
namespace {

using R = IndexRange;
using Rs = std::vector<IndexRange>;

Mamba2Dims M2(int64_t H, int64_t P, int64_t G, int64_t N, int64_t d_mlp = 0) {
  return Mamba2Dims{/*d_model=*/16, /*d_inner=*/H * P, H, P, G, N, /*d_conv=*/4, d_mlp};
}

Mamba2ShardPlan Plan2(const Mamba2Dims& d, int64_t tp, int64_t rank) {
  absl::StatusOr<Mamba2ShardPlan> p = MakeMamba2ShardPlan(d, tp, rank);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : Mamba2ShardPlan{};
}

// One expected row of a table: everything a layer reads from the plan.
struct Expect2 {
  int64_t tp, rank;
  R heads, inner, groups;
  Rs in_proj, conv;
  std::vector<int64_t> norm_channels;
  bool cross;
};

void CheckRow(const Mamba2Dims& d, const Expect2& e) {
  SCOPED_TRACE(testing::Message() << "tp=" << e.tp << " rank=" << e.rank);
  const Mamba2ShardPlan p = Plan2(d, e.tp, e.rank);
  EXPECT_EQ(p.heads, e.heads);
  EXPECT_EQ(p.inner, e.inner);
  EXPECT_EQ(p.group_range, e.groups);
  EXPECT_EQ(p.in_proj_rows, e.in_proj) << RangesToString(p.in_proj_rows);
  EXPECT_EQ(p.conv_channels, e.conv) << RangesToString(p.conv_channels);
  EXPECT_EQ(p.out_proj_cols, (Rs{e.inner}));
  EXPECT_EQ(p.norm.channels_per_local_group, e.norm_channels);
  EXPECT_EQ(p.norm.needs_cross_rank_sum, e.cross);
  EXPECT_EQ(p.norm.group_size, d.d_inner / d.n_groups);
  EXPECT_EQ(p.local_in_proj_rows, TotalSize(p.in_proj_rows));
  EXPECT_EQ(p.local_conv_dim, TotalSize(p.conv_channels));
}

// H=8, P=4, G=4, N=3: I=32, in_proj rows z[0,32) x[32,64) B[64,76) C[76,88) dt[88,96).
TEST(Mamba2ShardPlan, GroupsDivisibleByTp) {
  const Mamba2Dims d = M2(8, 4, 4, 3);
  const std::vector<Expect2> table = {
      {1,
       0,
       {0, 8},
       {0, 32},
       {0, 4},
       {{0, 32}, {32, 32}, {64, 12}, {76, 12}, {88, 8}},
       {{0, 32}, {32, 12}, {44, 12}},
       {8, 8, 8, 8},
       false},
      {2,
       0,
       {0, 4},
       {0, 16},
       {0, 2},
       {{0, 16}, {32, 16}, {64, 6}, {76, 6}, {88, 4}},
       {{0, 16}, {32, 6}, {44, 6}},
       {8, 8},
       false},
      {2,
       1,
       {4, 4},
       {16, 16},
       {2, 2},
       {{16, 16}, {48, 16}, {70, 6}, {82, 6}, {92, 4}},
       {{16, 16}, {38, 6}, {50, 6}},
       {8, 8},
       false},
      {4,
       3,
       {6, 2},
       {24, 8},
       {3, 1},
       {{24, 8}, {56, 8}, {73, 3}, {85, 3}, {94, 2}},
       {{24, 8}, {41, 3}, {53, 3}},
       {8},
       false},
  };
  for (const Expect2& e : table) CheckRow(d, e);
  EXPECT_EQ(Plan2(d, 2, 0).virtual_groups, 4);
}

// G=1: every rank holds a copy of group 0 (B rows [64,67), C rows [67,70), dt from 70).
TEST(Mamba2ShardPlan, SingleGroupReplicated) {
  const Mamba2Dims d = M2(8, 4, 1, 3);
  const std::vector<Expect2> table = {
      {2,
       0,
       {0, 4},
       {0, 16},
       {0, 1},
       {{0, 16}, {32, 16}, {64, 3}, {67, 3}, {70, 4}},
       {{0, 16}, {32, 3}, {35, 3}},
       {16},
       true},
      {2,
       1,
       {4, 4},
       {16, 16},
       {0, 1},
       {{16, 16}, {48, 16}, {64, 3}, {67, 3}, {74, 4}},
       {{16, 16}, {32, 3}, {35, 3}},
       {16},
       true},
      {4,
       0,
       {0, 2},
       {0, 8},
       {0, 1},
       {{0, 8}, {32, 8}, {64, 3}, {67, 3}, {70, 2}},
       {{0, 8}, {32, 3}, {35, 3}},
       {8},
       true},
      {4,
       3,
       {6, 2},
       {24, 8},
       {0, 1},
       {{24, 8}, {56, 8}, {64, 3}, {67, 3}, {76, 2}},
       {{24, 8}, {32, 3}, {35, 3}},
       {8},
       true},
  };
  for (const Expect2& e : table) CheckRow(d, e);
  EXPECT_EQ(Plan2(d, 2, 0).virtual_groups, 2);
  EXPECT_EQ(Plan2(d, 4, 0).virtual_groups, 4);
}

// G=2 at tp=4: ranks 0,1 hold copies of group 0, ranks 2,3 of group 1.
// B rows [64,70), C rows [70,76), dt [76,84).
TEST(Mamba2ShardPlan, TwoGroupsAtTp4) {
  const Mamba2Dims d = M2(8, 4, 2, 3);
  const std::vector<Expect2> table = {
      {4,
       0,
       {0, 2},
       {0, 8},
       {0, 1},
       {{0, 8}, {32, 8}, {64, 3}, {70, 3}, {76, 2}},
       {{0, 8}, {32, 3}, {38, 3}},
       {8},
       true},
      {4,
       1,
       {2, 2},
       {8, 8},
       {0, 1},
       {{8, 8}, {40, 8}, {64, 3}, {70, 3}, {78, 2}},
       {{8, 8}, {32, 3}, {38, 3}},
       {8},
       true},
      {4,
       2,
       {4, 2},
       {16, 8},
       {1, 1},
       {{16, 8}, {48, 8}, {67, 3}, {73, 3}, {80, 2}},
       {{16, 8}, {35, 3}, {41, 3}},
       {8},
       true},
      {4,
       3,
       {6, 2},
       {24, 8},
       {1, 1},
       {{24, 8}, {56, 8}, {67, 3}, {73, 3}, {82, 2}},
       {{24, 8}, {35, 3}, {41, 3}},
       {8},
       true},
  };
  for (const Expect2& e : table) CheckRow(d, e);
}

// H=12, P=2, G=3, N=2: 4 heads (8 channels) per group; I=24. in_proj rows z[0,24) x[24,48)
// B[48,54) C[54,60) dt[60,72); conv rows x[0,24) B[24,30) C[30,36).
TEST(Mamba2ShardPlan, HeadsStraddlingGroups) {
  const Mamba2Dims d = M2(12, 2, 3, 2);
  const std::vector<Expect2> table = {
      // tp=2: 6 heads per rank; rank 0 = all of group 0 + half of group 1.
      {2,
       0,
       {0, 6},
       {0, 12},
       {0, 2},
       {{0, 12}, {24, 12}, {48, 4}, {54, 4}, {60, 6}},
       {{0, 12}, {24, 4}, {30, 4}},
       {8, 4},
       true},
      {2,
       1,
       {6, 6},
       {12, 12},
       {1, 2},
       {{12, 12}, {36, 12}, {50, 4}, {56, 4}, {66, 6}},
       {{12, 12}, {26, 4}, {32, 4}},
       {4, 8},
       true},
      // tp=4: 3 heads per rank.
      {4,
       0,
       {0, 3},
       {0, 6},
       {0, 1},
       {{0, 6}, {24, 6}, {48, 2}, {54, 2}, {60, 3}},
       {{0, 6}, {24, 2}, {30, 2}},
       {6},
       true},
      {4,
       1,
       {3, 3},
       {6, 6},
       {0, 2},
       {{6, 6}, {30, 6}, {48, 4}, {54, 4}, {63, 3}},
       {{6, 6}, {24, 4}, {30, 4}},
       {2, 4},
       true},
      {4,
       2,
       {6, 3},
       {12, 6},
       {1, 2},
       {{12, 6}, {36, 6}, {50, 4}, {56, 4}, {66, 3}},
       {{12, 6}, {26, 4}, {32, 4}},
       {4, 2},
       true},
      {4,
       3,
       {9, 3},
       {18, 6},
       {2, 1},
       {{18, 6}, {42, 6}, {52, 2}, {58, 2}, {69, 3}},
       {{18, 6}, {28, 2}, {34, 2}},
       {6},
       true},
  };
  for (const Expect2& e : table) CheckRow(d, e);
  EXPECT_EQ(Plan2(d, 2, 0).virtual_groups, 0);  // no uniform virtual layout
  EXPECT_EQ(Plan2(d, 4, 0).local_groups, 1);    // local group counts differ by rank
  EXPECT_EQ(Plan2(d, 4, 1).local_groups, 2);
  // Local head -> local group at tp=2, rank 1: heads 6,7 read group 1, heads 8..11 group 2.
  const Mamba2ShardPlan p = Plan2(d, 2, 1);
  const std::vector<int64_t> want = {0, 0, 1, 1, 1, 1};
  for (int64_t j = 0; j < 6; ++j) EXPECT_EQ(p.LocalGroupOfHead(j), want[j]) << j;
}

TEST(Mamba2ShardPlan, GatedMlpRows) {
  // d_mlp = 8: in_proj rows z0[0,8) x0[8,16) z[16,48) x[48,80) B[80,92) C[92,104) dt[104,112).
  const Mamba2Dims d = M2(8, 4, 4, 3, /*d_mlp=*/8);
  const Mamba2ShardPlan p = Plan2(d, 2, 1);
  EXPECT_EQ(p.in_proj_rows, (Rs{{4, 4}, {12, 4}, {32, 16}, {64, 16}, {86, 6}, {98, 6}, {108, 4}}));
  EXPECT_EQ(p.out_proj_cols, (Rs{{4, 4}, {8 + 16, 16}}));
  EXPECT_EQ(p.local_in_proj_rows, 4 + 4 + 16 + 16 + 6 + 6 + 4);
  EXPECT_EQ(p.local_out_proj_cols, 20);
}

// Invariants over many shapes: the ranks' pieces partition (or, for B/C under replication,
// cover) the global tensors, and the per-rank sizes agree with the ranges.
TEST(Mamba2ShardPlan, InvariantsOverShapes) {
  for (int64_t H : {1, 2, 4, 6, 8, 12, 24, 80}) {
    for (int64_t G = 1; G <= H; ++G) {
      if (H % G != 0) continue;
      for (int64_t tp : {1, 2, 3, 4, 8}) {
        if (H % tp != 0) continue;
        const int64_t P = 2, N = 3;
        const Mamba2Dims d = M2(H, P, G, N);
        SCOPED_TRACE(testing::Message() << "H=" << H << " G=" << G << " tp=" << tp);
        std::vector<int> x_cover(H * P, 0), dt_cover(H, 0), b_cover(G * N, 0);
        std::set<bool> cross;
        for (int64_t r = 0; r < tp; ++r) {
          const Mamba2ShardPlan p = Plan2(d, tp, r);
          cross.insert(p.norm.needs_cross_rank_sum);
          for (int64_t i = 0; i < p.in_proj_x.size; ++i) x_cover[p.in_proj_x.begin - H * P + i]++;
          for (int64_t i = 0; i < p.in_proj_dt.size; ++i) {
            dt_cover[p.in_proj_dt.begin - 2 * H * P - 2 * G * N + i]++;
          }
          for (int64_t i = 0; i < p.in_proj_B.size; ++i)
            b_cover[p.in_proj_B.begin - 2 * H * P + i]++;
          EXPECT_EQ(p.in_proj_C.begin - p.in_proj_B.begin, G * N);
          EXPECT_EQ(p.local_in_proj_rows, TotalSize(p.in_proj_rows));
          EXPECT_EQ(p.local_conv_dim, TotalSize(p.conv_channels));
          int64_t sum = 0;
          bool partial = false;
          for (int64_t c : p.norm.channels_per_local_group) {
            EXPECT_GT(c, 0);
            EXPECT_LE(c, p.norm.group_size);
            partial |= c < p.norm.group_size;
            sum += c;
          }
          EXPECT_EQ(sum, p.local_d_inner);
          EXPECT_EQ(partial, p.norm.needs_cross_rank_sum);
          // Every local head reads a local group whose B/C rows this rank holds.
          for (int64_t j = 0; j < p.local_heads; ++j) {
            EXPECT_GE(p.LocalGroupOfHead(j), 0);
            EXPECT_LT(p.LocalGroupOfHead(j), p.local_groups);
          }
        }
        EXPECT_EQ(cross.size(), 1u) << "ranks disagree on the cross-rank norm all-reduce";
        for (int c : x_cover) EXPECT_EQ(c, 1);
        for (int c : dt_cover) EXPECT_EQ(c, 1);
        for (int c : b_cover) {
          if (G % tp == 0) {
            EXPECT_EQ(c, 1);
          } else {
            EXPECT_GE(c, 1);
          }
        }
      }
    }
  }
}

void ExpectError(const absl::Status& s, const std::string& field) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(field), absl::string_view::npos) << s << " should name " << field;
}

TEST(Mamba2ShardPlan, RefusesImpossibleCombinations) {
  ExpectError(MakeMamba2ShardPlan(M2(12, 2, 3, 2), 8, 0).status(), "num_heads");
  ExpectError(MakeMamba2ShardPlan(M2(12, 2, 5, 2), 2, 0).status(), "n_groups");
  ExpectError(MakeMamba2ShardPlan(M2(8, 4, 2, 3), 2, 2).status(), "rank");
  ExpectError(MakeMamba2ShardPlan(M2(8, 4, 2, 3), 0, 0).status(), "tp_size");
  ExpectError(MakeMamba2ShardPlan(M2(8, 4, 2, 3, 6), 4, 0).status(), "d_mlp");
  Mamba2Dims bad = M2(8, 4, 2, 3);
  bad.d_inner = 30;
  ExpectError(MakeMamba2ShardPlan(bad, 2, 0).status(), "d_inner");
  bad = M2(8, 4, 2, 3);
  bad.d_state = 0;
  ExpectError(MakeMamba2ShardPlan(bad, 2, 0).status(), "d_state");
  bad = M2(8, 4, 2, 3);
  bad.d_conv = -1;
  ExpectError(MakeMamba2ShardPlan(bad, 2, 0).status(), "d_conv");
}

TEST(Mamba1ShardPlan, SplitsDInner) {
  const Mamba1Dims d{/*d_model=*/16, /*d_inner=*/32, /*d_state=*/4, /*dt_rank=*/2, /*d_conv=*/4};
  struct Row {
    int64_t tp, rank;
    R inner;
    Rs in_proj;
  };
  const std::vector<Row> table = {
      {1, 0, {0, 32}, {{0, 32}, {32, 32}}},   {2, 0, {0, 16}, {{0, 16}, {32, 16}}},
      {2, 1, {16, 16}, {{16, 16}, {48, 16}}}, {4, 1, {8, 8}, {{8, 8}, {40, 8}}},
      {4, 3, {24, 8}, {{24, 8}, {56, 8}}},
  };
  for (const Row& row : table) {
    SCOPED_TRACE(testing::Message() << "tp=" << row.tp << " rank=" << row.rank);
    absl::StatusOr<Mamba1ShardPlan> p = MakeMamba1ShardPlan(d, row.tp, row.rank);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->local_d_inner, 32 / row.tp);
    EXPECT_EQ(p->x_proj_out, 2 + 2 * 4);
    EXPECT_EQ(p->inner, row.inner);
    EXPECT_EQ(p->in_proj_rows, row.in_proj);
    for (const R& r : {p->conv_channels, p->x_proj_cols, p->dt_proj_rows, p->a_log_rows, p->d_rows,
                       p->out_proj_cols}) {
      EXPECT_EQ(r, row.inner);
    }
  }
}

TEST(Mamba1ShardPlan, RefusesImpossibleCombinations) {
  const Mamba1Dims d{16, 30, 4, 2, 4};
  ExpectError(MakeMamba1ShardPlan(d, 4, 0).status(), "d_inner");
  ExpectError(MakeMamba1ShardPlan(d, 2, -1).status(), "rank");
  ExpectError(MakeMamba1ShardPlan({16, 32, 4, 0, 4}, 2, 0).status(), "dt_rank");
  ExpectError(MakeMamba1ShardPlan({0, 32, 4, 2, 4}, 2, 0).status(), "d_model");
}

TEST(VocabShardPlan, PadsToMultipleOfTp) {
  absl::StatusOr<VocabShardPlan> p = MakeVocabShardPlan(50277, 4, 3);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->padded_vocab, 50280);
  EXPECT_EQ(p->rows, (R{37710, 12570}));
  EXPECT_EQ(p->valid_rows, 12567);
  p = MakeVocabShardPlan(50277, 4, 3, /*pad_multiple=*/64);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->padded_vocab, 50432);
  EXPECT_EQ(p->rows, (R{37824, 12608}));
  EXPECT_EQ(p->valid_rows, 50277 - 37824);
  // A rank whose rows are all padding.
  p = MakeVocabShardPlan(5, 4, 3, /*pad_multiple=*/2);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->padded_vocab, 8);
  EXPECT_EQ(p->rows, (R{6, 2}));
  EXPECT_EQ(p->valid_rows, 0);
  int64_t total = 0;
  for (int64_t r = 0; r < 4; ++r) total += MakeVocabShardPlan(50277, 4, r)->valid_rows;
  EXPECT_EQ(total, 50277);
  ExpectError(MakeVocabShardPlan(0, 2, 0).status(), "vocab_size");
  ExpectError(MakeVocabShardPlan(10, 2, 0, 0).status(), "pad_multiple");
}

}  // namespace
}  // namespace mambaserve
