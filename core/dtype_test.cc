#include "core/dtype.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace mambaserve {
namespace {

TEST(DType, SizesAndNames) {
  EXPECT_EQ(DTypeSize(DType::kF32), 4);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2);
  EXPECT_EQ(DTypeSize(DType::kF16), 2);
  EXPECT_STREQ(DTypeName(DType::kBF16), "bf16");
}

TEST(DType, ParseAcceptsAliasesAndNamesBadInput) {
  EXPECT_EQ(*ParseDType("bfloat16"), DType::kBF16);
  EXPECT_EQ(*ParseDType("fp32"), DType::kF32);
  EXPECT_EQ(*ParseDType("float16"), DType::kF16);
  auto bad = ParseDType("int8");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("int8"), std::string_view::npos);
}

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(ToFloat(ToBf16(1.0f)), 1.0f);
  // 1 + 2^-8 lies exactly between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
  EXPECT_EQ(ToFloat(ToBf16(1.0f + 1.0f / 256)), 1.0f);
  // 1 + 3*2^-8 lies between 1+2^-7 and 1+2^-6: ties to even gives 1 + 2^-6.
  EXPECT_EQ(ToFloat(ToBf16(1.0f + 3.0f / 256)), 1.0f + 1.0f / 64);
  EXPECT_TRUE(std::isnan(ToFloat(ToBf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isinf(ToFloat(ToBf16(std::numeric_limits<float>::infinity()))));
}

TEST(DType, F16RoundTripsAndRoundsLikeIeee) {
  for (float v : {0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f /*min normal*/,
                  5.960464477539063e-08f /*min subnormal*/}) {
    EXPECT_EQ(ToFloat(ToF16(v)), v) << v;
  }
  EXPECT_TRUE(std::isinf(ToFloat(ToF16(70000.0f))));
  EXPECT_EQ(ToFloat(ToF16(1.0f + 1.0f / 4096)), 1.0f);               // below half an ulp (2^-11)
  EXPECT_EQ(ToFloat(ToF16(1.0f + 3.0f / 2048)), 1.0f + 1.0f / 512);  // tie to even
}

TEST(DType, LoadStoreThroughAnyType) {
  float f[2];
  bf16 b[2];
  f16 h[2];
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16}) {
    void* base = t == DType::kF32    ? static_cast<void*>(f)
                 : t == DType::kBF16 ? static_cast<void*>(b)
                                     : static_cast<void*>(h);
    StoreFromFloat(base, t, 1, -3.25f);
    EXPECT_EQ(LoadAsFloat(base, t, 1), -3.25f) << DTypeName(t);
  }
}

}  // namespace
}  // namespace mambaserve
