#include "state_manager/copy_spec.h"

#include <cmath>
#include <cstring>

#include "core/random.h"
#include "gtest/gtest.h"

namespace mambaserve {
namespace {

// conv window of state_len = d_conv - 1 + num_spec = 3 - 1 + ... chosen as 5 (num_spec = 2 with
// d_conv = 4), dim = 3; ssm (2, 3).
constexpr int64_t kStateLen = 5;
constexpr int64_t kDim = 3;
constexpr int64_t kNumSpec = 2;

StatePoolConfig Config(ConvLayout layout, DType conv_dtype = DType::kF32) {
  StatePoolConfig c;
  c.num_layers = 2;
  StateTensorShape conv{"conv", {kStateLen, kDim}, conv_dtype};
  if (layout == ConvLayout::kDS) conv.dims = {kDim, kStateLen};
  c.shapes = {conv, {"ssm", {2, 3}, DType::kF32}};
  c.conv_layout = layout;
  return c;
}

uint64_t Addr(const StatePool& p, int64_t layer, int64_t tensor, int64_t block) {
  return reinterpret_cast<uint64_t>(*p.BlockAddress(layer, tensor, block));
}

// Hand-computed table: accepted count k -> (source offset in elements from the source block's
// start, rows, run length, row stride).
struct ConvRow {
  int64_t k, src_offset, rows, run, stride;
};

TEST(CopySpec, ConvTableSD) {
  auto pool = *StatePool::Create(Config(ConvLayout::kSD), 8);
  const std::vector<BlockId> ids = {5, 6, 7};
  // SD (5, 3): rows [k-1, 5) are contiguous: offset (k-1)*3, (5-k+1)*3 elements.
  const ConvRow table[] = {{1, 0, 1, 15, 15}, {2, 3, 1, 12, 12}, {3, 6, 1, 9, 9}};
  for (const ConvRow& r : table) {
    auto s = ConvCopySpec(pool, 1, 0, ids, 0, r.k, 2);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->src, Addr(pool, 1, 0, 5) + r.src_offset * 4) << "k=" << r.k;
    EXPECT_EQ(s->dst, Addr(pool, 1, 0, 2));
    EXPECT_EQ(s->num_rows, r.rows);
    EXPECT_EQ(s->row_elems, r.run);
    EXPECT_EQ(s->numel(), r.rows * r.run);
    EXPECT_EQ(s->elem_bytes, 4);
    // The SSM state comes from block_ids[cur + k - 1].
    auto t = TemporalCopySpec(pool, 1, 1, ids, 0, r.k, 2);
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->src, Addr(pool, 1, 1, ids[r.k - 1]));
    EXPECT_EQ(t->dst, Addr(pool, 1, 1, 2));
    EXPECT_EQ(t->numel(), 6);
    EXPECT_TRUE(t->is_contiguous());
  }
  // Absolute addresses, by hand: layer 1 conv region base + block 5 * 15 elements * 4 bytes.
  auto ref = *pool.Ref(1, 0);
  auto s = *ConvCopySpec(pool, 1, 0, ids, 0, 2, 2);
  EXPECT_EQ(s.src, reinterpret_cast<uint64_t>(ref.base) + (5 * 15 + 3) * 4);
  EXPECT_EQ(s.dst, reinterpret_cast<uint64_t>(ref.base) + 2 * 15 * 4);
}

TEST(CopySpec, ConvTableDS) {
  auto pool = *StatePool::Create(Config(ConvLayout::kDS), 8);
  const std::vector<BlockId> ids = {4, 6, 7};
  // DS (3, 5): k = 1 is the whole block; k > 1 is 3 rows of (5-k+1) from offset k-1, stride 5.
  const ConvRow table[] = {{1, 0, 1, 15, 15}, {2, 1, 3, 4, 5}, {3, 2, 3, 3, 5}};
  for (const ConvRow& r : table) {
    auto s = ConvCopySpec(pool, 0, 0, ids, 0, r.k, 3);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->src, Addr(pool, 0, 0, 4) + r.src_offset * 4) << "k=" << r.k;
    EXPECT_EQ(s->dst, Addr(pool, 0, 0, 3));
    EXPECT_EQ(s->num_rows, r.rows);
    EXPECT_EQ(s->row_elems, r.run);
    EXPECT_EQ(s->src_row_stride, r.stride);
    EXPECT_EQ(s->dst_row_stride, r.stride);
  }
  // cur selects the conv source; the SSM source is block_ids[cur + k - 1].
  auto s = *ConvCopySpec(pool, 0, 0, ids, 1, 2, 3);
  EXPECT_EQ(s.src, Addr(pool, 0, 0, 6) + 1 * 4);
  auto t = *TemporalCopySpec(pool, 0, 1, ids, 1, 2, 3);
  EXPECT_EQ(t.src, Addr(pool, 0, 1, 7));
}

// Executes conv + ssm copies and checks every element of the destination.
void CheckExecuted(ConvLayout layout, DType conv_dtype) {
  auto pool = *StatePool::Create(Config(layout, conv_dtype), 8);
  Rng rng(3);
  for (int64_t b = 1; b < 8; ++b) {
    for (int64_t l = 0; l < 2; ++l) {
      BlockState::LayerValues v = {rng.UniformVector(15, -4, 4), rng.UniformVector(6, -4, 4)};
      ASSERT_TRUE(pool.WriteBlock(l, b, v).ok());
    }
  }
  const std::vector<BlockId> ids = {1, 2, 3};
  for (int64_t k = 1; k <= 1 + kNumSpec; ++k) {
    const BlockId dst = static_cast<BlockId>(3 + k);  // 4, 5, 6
    // Poison the destination.
    for (int64_t l = 0; l < 2; ++l) {
      BlockState::LayerValues poison = {std::vector<float>(15, -768.0f),
                                        std::vector<float>(6, -768.0f)};
      ASSERT_TRUE(pool.WriteBlock(l, dst, poison).ok());
    }
    BlockCopy c{ids, 0, k, dst};
    auto specs = BuildStepCopySpecs(pool, std::span<const BlockCopy>(&c, 1));
    ASSERT_TRUE(specs.ok()) << specs.status();
    EXPECT_EQ(specs->size(), 4u);  // 2 layers x (conv, ssm)
    auto exec = *CopyExecutor::Create(Device::Cpu());
    ASSERT_TRUE(exec.Run(*specs, Stream()).ok());
    for (int64_t l = 0; l < 2; ++l) {
      BlockState::LayerValues src_conv, src_ssm, got;
      ASSERT_TRUE(pool.ReadBlock(l, ids[0], &src_conv).ok());
      ASSERT_TRUE(pool.ReadBlock(l, ids[k - 1], &src_ssm).ok());
      ASSERT_TRUE(pool.ReadBlock(l, dst, &got).ok());
      const int64_t kept = kStateLen - (k - 1);
      for (int64_t row = 0; row < kStateLen; ++row) {  // window position
        for (int64_t ch = 0; ch < kDim; ++ch) {        // channel
          const int64_t at = layout == ConvLayout::kSD ? row * kDim + ch : ch * kStateLen + row;
          if (row < kept) {
            const int64_t from = layout == ConvLayout::kSD ? (row + k - 1) * kDim + ch
                                                           : ch * kStateLen + row + k - 1;
            EXPECT_EQ(got[0][at], src_conv[0][from]) << "k=" << k << " row " << row;
          } else {
            EXPECT_EQ(got[0][at], -768.0f) << "k=" << k << " row " << row << " overwritten";
          }
        }
      }
      EXPECT_EQ(got[1], src_ssm[1]) << "k=" << k;
    }
  }
}

TEST(CopySpec, ExecutedSDF32) { CheckExecuted(ConvLayout::kSD, DType::kF32); }
TEST(CopySpec, ExecutedDSF32) { CheckExecuted(ConvLayout::kDS, DType::kF32); }
TEST(CopySpec, ExecutedSDBF16) { CheckExecuted(ConvLayout::kSD, DType::kBF16); }
TEST(CopySpec, ExecutedDSBF16) { CheckExecuted(ConvLayout::kDS, DType::kBF16); }

TEST(CopySpec, RefusesBadArguments) {
  auto pool = *StatePool::Create(Config(ConvLayout::kSD), 8);
  const std::vector<BlockId> ids = {1, 2, 3};
  EXPECT_FALSE(ConvCopySpec(pool, 0, 0, ids, 0, 0, 4).ok());              // k = 0
  EXPECT_FALSE(ConvCopySpec(pool, 0, 0, ids, 0, kStateLen + 1, 4).ok());  // k > state_len
  EXPECT_FALSE(ConvCopySpec(pool, 0, 0, ids, 3, 1, 4).ok());              // cur out of range
  EXPECT_FALSE(ConvCopySpec(pool, 0, 0, ids, 0, 1, kNullBlock).ok());     // null destination
  EXPECT_FALSE(ConvCopySpec(pool, 0, 0, ids, 0, 1, 8).ok());              // out of range
  EXPECT_FALSE(ConvCopySpec(pool, 0, 1, ids, 0, 1, 4).ok());              // not a conv tensor
  EXPECT_FALSE(ConvCopySpec(pool, 2, 0, ids, 0, 1, 4).ok());              // bad layer
  const std::vector<BlockId> with_null = {0, 2};
  EXPECT_FALSE(ConvCopySpec(pool, 0, 0, with_null, 0, 1, 4).ok());  // null source
  EXPECT_FALSE(TemporalCopySpec(pool, 0, 1, ids, 1, 3, 4).ok());    // cur + k - 1 >= 3
  EXPECT_FALSE(TemporalCopySpec(pool, 0, 1, with_null, 0, 1, 4).ok());
  EXPECT_TRUE(TemporalCopySpec(pool, 0, 1, ids, 1, 2, 4).ok());
}

TEST(CopySpec, BatchRule) {
  auto pool = *StatePool::Create(Config(ConvLayout::kDS), 8);
  // Copy into a block that is also a source in the same batch: refused.
  std::vector<BlockCopy> chain = {BlockCopy::Whole(1, 2), BlockCopy::Whole(2, 3)};
  auto r = BuildStepCopySpecs(pool, chain);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  // Two copies into one block: refused.
  std::vector<BlockCopy> twice = {BlockCopy::Whole(1, 3), BlockCopy::Whole(2, 3)};
  EXPECT_FALSE(BuildStepCopySpecs(pool, twice).ok());
  // A shifting copy within one block (k > 1, src == dst): refused (overlap).
  std::vector<BlockCopy> inplace = {BlockCopy{{4, 5}, 0, 2, 4}};
  EXPECT_FALSE(BuildStepCopySpecs(pool, inplace).ok());
  // Identical source and destination: a no-op, dropped.
  std::vector<BlockCopy> noop = {BlockCopy::Whole(4, 4)};
  auto n = BuildStepCopySpecs(pool, noop);
  ASSERT_TRUE(n.ok());
  EXPECT_TRUE(n->empty());
  // One source fanned out to several destinations: fine.
  std::vector<BlockCopy> fan = {BlockCopy::Whole(1, 2), BlockCopy::Whole(1, 3),
                                BlockCopy{{1, 5, 6}, 0, 3, 7}};
  auto f = BuildStepCopySpecs(pool, fan);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->size(), 12u);
  // Malformed raw specs.
  CopySpec bad;
  bad.src = 64;
  bad.dst = 128;
  bad.row_elems = 0;
  EXPECT_FALSE(ValidateCopyBatch(std::span<const CopySpec>(&bad, 1)).ok());
  bad.row_elems = 4;
  bad.num_rows = 3;
  bad.dst_row_stride = 2;  // rows would overlap in the destination
  EXPECT_FALSE(ValidateCopyBatch(std::span<const CopySpec>(&bad, 1)).ok());
}

// Other layer kinds: KDA has three conv windows and a recurrent state; every "conv*" tensor
// gets the conv rule, the rest the whole-state rule.
TEST(CopySpec, KdaLayerAllTensors) {
  for (ConvLayout layout : {ConvLayout::kSD, ConvLayout::kDS}) {
    auto shapes = KdaStateShapes(2, 4, 4, 1, layout, StateDTypes{DType::kBF16, DType::kF32});
    ASSERT_TRUE(shapes.ok()) << shapes.status();
    ASSERT_EQ(shapes->size(), 4u);
    StatePoolConfig c{2, *shapes, layout, Device::Cpu()};
    auto pool = *StatePool::Create(c, 6);
    Rng rng(17);
    for (int64_t b = 1; b < 6; ++b) {
      for (int64_t l = 0; l < 2; ++l) {
        BlockState::LayerValues v;
        for (const auto& t : *shapes) v.push_back(rng.UniformVector(t.numel(), -1, 1));
        ASSERT_TRUE(pool.WriteBlock(l, b, v).ok());
      }
    }
    const int64_t k = 2;
    BlockCopy copy{{1, 2}, 0, k, 5};
    auto specs = BuildStepCopySpecs(pool, std::span<const BlockCopy>(&copy, 1));
    ASSERT_TRUE(specs.ok()) << specs.status();
    ASSERT_EQ(specs->size(), 8u);
    ASSERT_TRUE(ExecuteCopySpecsCpu(*specs).ok());
    for (int64_t l = 0; l < 2; ++l) {
      BlockState::LayerValues a, b, got;
      ASSERT_TRUE(pool.ReadBlock(l, 1, &a).ok());
      ASSERT_TRUE(pool.ReadBlock(l, 2, &b).ok());
      ASSERT_TRUE(pool.ReadBlock(l, 5, &got).ok());
      for (int t = 0; t < 3; ++t) {
        const bool sd = layout == ConvLayout::kSD;
        const int64_t len = sd ? (*shapes)[t].dims[0] : (*shapes)[t].dims[1];
        const int64_t dim = sd ? (*shapes)[t].dims[1] : (*shapes)[t].dims[0];
        ASSERT_EQ(len, 3);
        for (int64_t w = 0; w + k - 1 < len; ++w) {
          for (int64_t ch = 0; ch < dim; ++ch) {
            const int64_t at = sd ? w * dim + ch : ch * len + w;
            const int64_t from = sd ? (w + k - 1) * dim + ch : ch * len + w + k - 1;
            EXPECT_EQ(got[t][at], a[t][from]) << (*shapes)[t].name;
          }
        }
      }
      EXPECT_EQ(got[3], b[3]);  // recurrent state from block_ids[cur + k - 1]
    }
  }
}

TEST(CopySpec, RawStridedCpuCopy) {
  std::vector<float> src(64), dst(64, -1.0f);
  for (int i = 0; i < 64; ++i) src[i] = static_cast<float>(i) + 0.5f;
  CopySpec s;
  s.src = reinterpret_cast<uint64_t>(src.data() + 2);
  s.dst = reinterpret_cast<uint64_t>(dst.data() + 1);
  s.num_rows = 4;
  s.src_row_stride = 10;
  s.dst_row_stride = 7;
  s.row_elems = 5;
  s.elem_bytes = 4;
  ASSERT_TRUE(ExecuteCopySpecsCpu(std::span<const CopySpec>(&s, 1)).ok());
  for (int r = 0; r < 4; ++r) {
    for (int j = 0; j < 5; ++j) EXPECT_EQ(dst[1 + r * 7 + j], src[2 + r * 10 + j]);
    if (r < 3) EXPECT_EQ(dst[1 + r * 7 + 5], -1.0f);
  }
  EXPECT_EQ(dst[0], -1.0f);
}

}  // namespace
}  // namespace mambaserve
