#include "state_manager/block_state.h"

#include "gtest/gtest.h"

namespace mambaserve {
namespace {

LayerStateShapes SmallShapes() {
  return {{"conv", {3, 4}, DType::kBF16}, {"ssm", {4, 2}, DType::kF32}};
}

TEST(BlockState, ZerosGetSetClone) {
  auto s = BlockState::Zeros(3, SmallShapes());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->num_layers(), 3);
  auto l1 = s->GetLayer(1);
  ASSERT_TRUE(l1.ok());
  EXPECT_EQ((**l1)[0].size(), 12u);
  for (float v : (**l1)[1]) EXPECT_EQ(v, 0.0f);

  BlockState::LayerValues vals{std::vector<float>(12), std::vector<float>(8)};
  for (int i = 0; i < 12; ++i) vals[0][i] = 1.0f + i / 1000.0f;  // not exact in bf16
  for (int i = 0; i < 8; ++i) vals[1][i] = 0.1f * i - 0.3f;
  ASSERT_TRUE(s->SetLayer(1, vals).ok());
  BlockState copy = s->Clone();
  const auto& got = **s->GetLayer(1);
  EXPECT_EQ(got[1], vals[1]);                     // fp32 kept exactly
  EXPECT_EQ(got[0][5], ToFloat(ToBf16(1.005f)));  // conv rounded to bf16
  EXPECT_NE(got[0][5], 1.005f);
  // Other layers untouched; the clone is independent.
  EXPECT_EQ((**s->GetLayer(0))[1][3], 0.0f);
  BlockState::LayerValues other{std::vector<float>(12, 2.0f), std::vector<float>(8, 3.0f)};
  ASSERT_TRUE(s->SetLayer(1, other).ok());
  EXPECT_EQ((**copy.GetLayer(1))[1], vals[1]);
}

TEST(BlockState, RefusesBadIndicesAndSizes) {
  auto s = BlockState::Zeros(2, SmallShapes());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->GetLayer(2).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_FALSE(s->GetLayer(-1).ok());
  BlockState::LayerValues wrong{std::vector<float>(12), std::vector<float>(7)};
  auto st = s->SetLayer(0, wrong);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("ssm"), absl::string_view::npos);
  EXPECT_FALSE(s->SetLayer(0, {std::vector<float>(12)}).ok());
  EXPECT_FALSE(BlockState::Zeros(0, SmallShapes()).ok());
}

}  // namespace
}  // namespace mambaserve
