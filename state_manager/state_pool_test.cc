#include "state_manager/state_pool.h"

#include <cmath>

#include "core/random.h"
#include "gtest/gtest.h"

namespace mambaserve {
namespace {

StatePoolConfig SmallConfig(ConvLayout layout, DType conv_dtype) {
  Mamba2StateArgs a;
  a.num_heads = 4;
  a.head_dim = 2;
  a.n_groups = 1;
  a.d_state = 3;
  a.d_conv = 4;
  a.num_spec = 2;
  auto shapes = Mamba2StateShapes(a, layout, StateDTypes{conv_dtype, DType::kF32});
  EXPECT_TRUE(shapes.ok()) << shapes.status();
  StatePoolConfig c;
  c.num_layers = 3;
  c.shapes = *shapes;
  c.conv_layout = layout;
  c.device = Device::Cpu();
  return c;
}

BlockState::LayerValues RandomLayer(const LayerStateShapes& shapes, Rng& rng) {
  BlockState::LayerValues v;
  for (const auto& s : shapes) v.push_back(rng.UniformVector(s.numel(), -2.0f, 2.0f));
  return v;
}

TEST(StatePool, LayoutAccessorsAndNullBlock) {
  for (ConvLayout layout : {ConvLayout::kSD, ConvLayout::kDS}) {
    StatePoolConfig c = SmallConfig(layout, DType::kBF16);
    auto pool = StatePool::Create(c, 6);
    ASSERT_TRUE(pool.ok()) << pool.status();
    EXPECT_EQ(pool->num_blocks(), 6);
    EXPECT_EQ(pool->num_tensors(), 2);
    for (int64_t l = 0; l < 3; ++l) {
      for (int64_t t = 0; t < 2; ++t) {
        auto ref = pool->Ref(l, t);
        ASSERT_TRUE(ref.ok());
        EXPECT_EQ(ref->block_stride, c.shapes[t].numel());
        // Regions start 256-byte aligned relative to the allocation (whose own alignment is
        // 64 bytes on the CPU, 256 with cudaMalloc).
        const auto first = reinterpret_cast<uintptr_t>(pool->Ref(0, 0)->base);
        EXPECT_EQ((reinterpret_cast<uintptr_t>(ref->base) - first) % 256, 0u);
        auto view = pool->Tensor(l, t);
        ASSERT_TRUE(view.ok());
        EXPECT_EQ(view->rank(), static_cast<int>(c.shapes[t].dims.size()) + 1);
        EXPECT_EQ(view->size(0), 6);
        EXPECT_EQ(view->size(1), c.shapes[t].dims[0]);
        EXPECT_EQ(view->stride(0), c.shapes[t].numel());
        auto addr = pool->BlockAddress(l, t, 4);
        ASSERT_TRUE(addr.ok());
        EXPECT_EQ(static_cast<char*>(*addr),
                  static_cast<char*>(ref->base) + 4 * c.shapes[t].nbytes());
      }
    }
    EXPECT_FALSE(pool->Ref(3, 0).ok());
    EXPECT_FALSE(pool->Ref(0, 2).ok());
    EXPECT_FALSE(pool->BlockAddress(0, 0, 6).ok());

    Rng rng(7);
    for (int64_t b = 1; b < 6; ++b) {
      for (int64_t l = 0; l < 3; ++l)
        ASSERT_TRUE(pool->WriteBlock(l, b, RandomLayer(c.shapes, rng)).ok());
    }
    // Block 0 cannot be written and stays zero.
    EXPECT_FALSE(pool->WriteBlock(0, 0, RandomLayer(c.shapes, rng)).ok());
    for (int64_t l = 0; l < 3; ++l) {
      BlockState::LayerValues v;
      ASSERT_TRUE(pool->ReadBlock(l, 0, &v).ok());
      for (const auto& arr : v) {
        for (float x : arr) EXPECT_EQ(x, 0.0f);
      }
    }
  }
}

TEST(StatePool, WriteReadRoundTripRoundsToDtype) {
  StatePoolConfig c = SmallConfig(ConvLayout::kSD, DType::kBF16);
  auto pool = *StatePool::Create(c, 4);
  Rng rng(11);
  auto vals = RandomLayer(c.shapes, rng);
  ASSERT_TRUE(pool.WriteBlock(1, 2, vals).ok());
  BlockState::LayerValues got;
  got.push_back(std::vector<float>(1, NAN));  // poisoned
  ASSERT_TRUE(pool.ReadBlock(1, 2, &got).ok());
  ASSERT_EQ(got.size(), 2u);
  for (size_t i = 0; i < vals[0].size(); ++i) EXPECT_EQ(got[0][i], ToFloat(ToBf16(vals[0][i])));
  EXPECT_EQ(got[1], vals[1]);  // fp32 SSM state is exact
  // Wrong sizes are refused.
  auto bad = vals;
  bad[1].pop_back();
  EXPECT_FALSE(pool.WriteBlock(1, 2, bad).ok());

  // BlockState in / out; zeroing.
  auto st = BlockState::Zeros(3, c.shapes);
  ASSERT_TRUE(st.ok());
  for (int64_t l = 0; l < 3; ++l) ASSERT_TRUE(st->SetLayer(l, RandomLayer(c.shapes, rng)).ok());
  ASSERT_TRUE(pool.WriteBlockState(3, *st).ok());
  auto back = pool.ReadBlockState(3);
  ASSERT_TRUE(back.ok());
  for (int64_t l = 0; l < 3; ++l) EXPECT_EQ(**back->GetLayer(l), **st->GetLayer(l));
  ASSERT_TRUE(pool.ZeroBlock(3).ok());
  auto zero = *pool.ReadBlockState(3);
  for (int64_t l = 0; l < 3; ++l) {
    for (const auto& arr : **zero.GetLayer(l)) {
      for (float x : arr) EXPECT_EQ(x, 0.0f);
    }
  }
  // Block 2 untouched by zeroing block 3.
  ASSERT_TRUE(pool.ReadBlock(1, 2, &got).ok());
  EXPECT_EQ(got[1], vals[1]);
}

TEST(StatePool, SizedFromBudget) {
  StatePoolConfig c = SmallConfig(ConvLayout::kSD, DType::kF32);
  const int64_t per_block = StatePool::BytesPerBlock(c);
  // conv (5, 8+6=14) f32 + ssm (4,2,3) f32 per layer, 3 layers.
  EXPECT_EQ(per_block, 3 * (5 * 14 * 4 + 24 * 4));
  auto n = StatePool::BlocksForBudget(c, 1 << 20);
  ASSERT_TRUE(n.ok());
  EXPECT_LE(*n * per_block, 1 << 20);
  EXPECT_GT((*n + 1) * per_block + 0, (1 << 20) - 6 * 256);  // at most padding is lost
  auto pool = StatePool::CreateForBudget(c, 1 << 20);
  ASSERT_TRUE(pool.ok());
  EXPECT_EQ(pool->num_blocks(), *n);
  EXPECT_LE(pool->nbytes(), 1 << 20);
  // Not even two blocks: an error that says so.
  auto small = StatePool::BlocksForBudget(c, per_block + 100);
  EXPECT_EQ(small.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(StatePool::CreateForBudget(c, 0).ok());
  EXPECT_FALSE(StatePool::Create(c, 1).ok());
}

}  // namespace
}  // namespace mambaserve
