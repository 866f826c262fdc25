#include "state_manager/state_shapes.h"

#include "gtest/gtest.h"

namespace mambaserve {
namespace {

using Dims = std::vector<int64_t>;
constexpr StateDTypes kBf16Fp32{DType::kBF16, DType::kF32};

TEST(StateDTypes, ModelDtypeUnlessForced) {
  auto a = ResolveStateDTypes(DType::kBF16, "auto", "");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->conv, DType::kBF16);
  EXPECT_EQ(a->ssm, DType::kBF16);
  auto b = ResolveStateDTypes(DType::kBF16, "auto", "float32");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->conv, DType::kBF16);
  EXPECT_EQ(b->ssm, DType::kF32);
  auto c = ResolveStateDTypes(DType::kF32, "bfloat16", "");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->conv, DType::kBF16);
  EXPECT_EQ(c->ssm, DType::kBF16);
  auto bad = ResolveStateDTypes(DType::kF32, "", "int4");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("mamba_ssm_cache_dtype"), absl::string_view::npos);
}

TEST(StateShapes, Mamba1SplitsDInner) {
  auto s = Mamba1StateShapes(5120, 16, 4, 2, ConvLayout::kSD, kBf16Fp32);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)[0].dims, (Dims{3, 2560}));
  EXPECT_EQ((*s)[0].dtype, DType::kBF16);
  EXPECT_EQ((*s)[1].dims, (Dims{2560, 16}));
  EXPECT_EQ((*s)[1].dtype, DType::kF32);
  auto ds = Mamba1StateShapes(5120, 16, 4, 2, ConvLayout::kDS, kBf16Fp32);
  EXPECT_EQ((*ds)[0].dims, (Dims{2560, 3}));
  auto bad = Mamba1StateShapes(5120, 16, 4, 3, ConvLayout::kSD, kBf16Fp32);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("d_inner"), absl::string_view::npos);
}

// DESIGN.md's worked tensor-parallel cases for Mamba-2 (P = 64, N = 128, d_conv = 4).
struct Mamba2Case {
  int64_t H, G, tp, rank, num_spec;
  Dims conv, ssm;
};

TEST(StateShapes, Mamba2TensorParallelTable) {
  const Mamba2Case cases[] = {
      // Mamba2-2.7B, G = 1: tp = 1 conv_dim = 80*64 + 2*128 = 5376.
      {80, 1, 1, 0, 0, {3, 5376}, {80, 64, 128}},
      // G = 1 at tp = 2 (replication, extra = 1): conv_dim = (5120 + 2*2*128)/2 = 2816.
      {80, 1, 2, 1, 0, {3, 2816}, {40, 64, 128}},
      // G = 1 at tp = 4: (5120 + 2*4*128)/4 = 1536.
      {80, 1, 4, 3, 0, {3, 1536}, {20, 64, 128}},
      // G = 8 divisible by tp = 4: 20*64 + 2*2*128 = 1792.
      {80, 8, 4, 2, 0, {3, 1792}, {20, 64, 128}},
      // G = 2 at tp = 4 (replication, extra = 2): (5120 + 2*4*128)/4 = 1536.
      {80, 2, 4, 0, 0, {3, 1536}, {20, 64, 128}},
      // Speculative decoding widens the conv window by num_spec.
      {80, 1, 1, 0, 2, {5, 5376}, {80, 64, 128}},
      // Straddling: H = 12, G = 3 at tp = 2: 6 heads, 2 groups -> 6*64 + 2*2*128 = 896.
      {12, 3, 2, 0, 0, {3, 896}, {6, 64, 128}},
      // H = 12, G = 3 at tp = 4, rank 0 holds one group, rank 1 two.
      {12, 3, 4, 0, 0, {3, 3 * 64 + 2 * 128}, {3, 64, 128}},
      {12, 3, 4, 1, 0, {3, 3 * 64 + 4 * 128}, {3, 64, 128}},
  };
  for (const auto& c : cases) {
    Mamba2StateArgs a{c.H, 64, c.G, 128, 4, c.num_spec, c.tp, c.rank};
    auto s = Mamba2StateShapes(a, ConvLayout::kSD, kBf16Fp32);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ((*s)[0].dims, c.conv) << "H=" << c.H << " G=" << c.G << " tp=" << c.tp;
    EXPECT_EQ((*s)[1].dims, c.ssm);
  }
  // The replication case equals vLLM's formula (I + 2*(G+extra)*N)/tp.
  Mamba2StateArgs a{80, 64, 1, 128, 4, 0, 4, 0};
  auto s = Mamba2StateShapes(a, ConvLayout::kDS, kBf16Fp32);
  EXPECT_EQ((*s)[0].dims, (Dims{(5120 + 2 * 4 * 128) / 4, 3}));
  Mamba2StateArgs bad{80, 64, 1, 128, 4, 0, 3, 0};
  EXPECT_FALSE(Mamba2StateShapes(bad, ConvLayout::kSD, kBf16Fp32).ok());
}

TEST(StateShapes, OtherLayerKinds) {
  auto sc = ShortConvStateShapes(1024, 3, 2, ConvLayout::kSD, DType::kBF16);
  EXPECT_EQ((*sc)[0].dims, (Dims{2, 512}));
  auto la = LinearAttentionStateShapes(16, 128, 4, DType::kF32);
  EXPECT_EQ((*la)[0].dims, (Dims{4, 128, 128}));
  auto gdn = GatedDeltaNetStateShapes(16, 32, 128, 128, 4, 1, 2, ConvLayout::kSD, kBf16Fp32);
  ASSERT_TRUE(gdn.ok());
  EXPECT_EQ((*gdn)[0].dims, (Dims{4, (2 * 16 * 128 + 32 * 128) / 2}));
  EXPECT_EQ((*gdn)[1].dims, (Dims{16, 128, 128}));
  auto kda = KdaStateShapes(32, 128, 4, 4, ConvLayout::kDS, kBf16Fp32);
  ASSERT_TRUE(kda.ok());
  ASSERT_EQ(kda->size(), 4u);
  EXPECT_EQ((*kda)[1].dims, (Dims{1024, 3}));
  EXPECT_EQ((*kda)[3].dims, (Dims{8, 128, 128}));
  EXPECT_EQ((*kda)[3].nbytes(), 8 * 128 * 128 * 4);
  EXPECT_FALSE(ShortConvStateShapes(1024, 1, 1, ConvLayout::kSD, DType::kF32).ok());
  EXPECT_FALSE(LinearAttentionStateShapes(-4, 128, 1, DType::kF32).ok());
}

}  // namespace
}  // namespace mambaserve
