// Element types of activations, weights and states, and their host-side conversions.
#ifndef MAMBASERVE_CORE_DTYPE_H_
#define MAMBASERVE_CORE_DTYPE_H_

#include <cstdint>
#include <cstring>
#include <string_view>

#include "absl/status/statusor.h"

namespace mambaserve {

enum class DType : uint8_t { kF32 = 0, kBF16 = 1, kF16 = 2 };

constexpr int64_t DTypeSize(DType t) { return t == DType::kF32 ? 4 : 2; }
const char* DTypeName(DType t);
// Accepts "f32"/"float32"/"fp32", "bf16"/"bfloat16", "f16"/"float16"/"fp16".
absl::StatusOr<DType> ParseDType(std::string_view name);

// Host storage types for 16-bit floats: bit patterns only, converted explicitly. Kernels on the
// GPU reinterpret them as __nv_bfloat16 / __half, which have the same layout.
struct bf16 {
  uint16_t bits;
};
struct f16 {
  uint16_t bits;
};

inline float FloatFromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t BitsFromFloat(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float ToFloat(float x) { return x; }
inline float ToFloat(bf16 x) { return FloatFromBits(static_cast<uint32_t>(x.bits) << 16); }
float ToFloat(f16 x);

// Round to nearest even; NaN stays NaN.
inline bf16 ToBf16(float f) {
  uint32_t u = BitsFromFloat(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<uint16_t>((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{static_cast<uint16_t>(u >> 16)};
}
f16 ToF16(float f);

template <typename T>
T FromFloat(float f);
template <>
inline float FromFloat<float>(float f) {
  return f;
}
template <>
inline bf16 FromFloat<bf16>(float f) {
  return ToBf16(f);
}
template <>
inline f16 FromFloat<f16>(float f) {
  return ToF16(f);
}

template <typename T>
constexpr DType DTypeOf();
template <>
constexpr DType DTypeOf<float>() {
  return DType::kF32;
}
template <>
constexpr DType DTypeOf<bf16>() {
  return DType::kBF16;
}
template <>
constexpr DType DTypeOf<f16>() {
  return DType::kF16;
}

// Reads element i of an array of dtype t as float; writes likewise (CPU only; any alignment).
float LoadAsFloat(const void* base, DType t, int64_t i);
void StoreFromFloat(void* base, DType t, int64_t i, float v);

}  // namespace mambaserve

#endif  // MAMBASERVE_CORE_DTYPE_H_
