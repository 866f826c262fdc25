#include "core/tensor.h"

#include "gtest/gtest.h"

namespace mambaserve {
namespace {

TEST(TensorView, ContiguousStridesAndSizes) {
  float data[24];
  TensorView t(data, DType::kF32, Device::Cpu(), {2, 3, 4});
  EXPECT_EQ(t.rank(), 3);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 96);
  EXPECT_EQ(t.stride(0), 12);
  EXPECT_EQ(t.stride(-1), 1);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.ShapeString(), "[2, 3, 4]");
}

TEST(TensorView, SliceAndIndexShareMemory) {
  float data[24];
  for (int i = 0; i < 24; ++i) data[i] = i;
  TensorView t(data, DType::kF32, Device::Cpu(), {2, 3, 4});
  TensorView s = t.Slice(2, 1, 3);  // last dim [1, 3): not contiguous
  EXPECT_EQ(s.size(2), 2);
  EXPECT_FALSE(s.is_contiguous());
  EXPECT_EQ(s.data_as<float>()[0], 1.0f);
  TensorView row = t.Index(1);
  EXPECT_EQ(row.rank(), 2);
  EXPECT_EQ(row.data_as<float>()[0], 12.0f);
}

TEST(TensorView, SizesBeyond32Bits) {
  // A view is only metadata, so a huge shape can be described without memory.
  TensorView t(reinterpret_cast<void*>(0x1000), DType::kBF16, Device::Cpu(), {524288, 8192, 2});
  EXPECT_EQ(t.numel(), int64_t{524288} * 8192 * 2);
  EXPECT_GT(t.nbytes(), int64_t{1} << 33);
  EXPECT_EQ(t.stride(0), 16384);
}

TEST(TensorView, ReshapeKeepsCountAndRefusesOthers) {
  float data[12];
  TensorView t(data, DType::kF32, Device::Cpu(), {3, 4});
  auto r = t.Reshape({2, 6});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->size(1), 6);
  EXPECT_FALSE(t.Reshape({5, 2}).ok());
  EXPECT_FALSE(t.Slice(1, 0, 2).Reshape({6}).ok());  // not contiguous
}

TEST(TensorView, ExpectNamesTheTensor) {
  float data[12];
  TensorView t(data, DType::kF32, Device::Cpu(), {3, 4});
  EXPECT_TRUE(t.Expect("x", DType::kF32, {3, -1}).ok());
  auto st = t.Expect("conv_state", DType::kBF16, {3, 4});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("conv_state"), std::string_view::npos);
  auto st2 = t.Expect("B", DType::kF32, {3, 5});
  ASSERT_FALSE(st2.ok());
  EXPECT_NE(st2.message().find("B"), std::string_view::npos);
}

}  // namespace
}  // namespace mambaserve
