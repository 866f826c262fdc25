#include "core/dtype.h"

#include <cmath>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace mambaserve {

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "f32";
    case DType::kBF16:
      return "bf16";
    case DType::kF16:
      return "f16";
  }
  return "?";
}

absl::StatusOr<DType> ParseDType(std::string_view name) {
  if (name == "f32" || name == "float32" || name == "fp32" || name == "F32") return DType::kF32;
  if (name == "bf16" || name == "bfloat16" || name == "BF16") return DType::kBF16;
  if (name == "f16" || name == "float16" || name == "fp16" || name == "F16") return DType::kF16;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dtype '", std::string(name), "' (expected f32, bf16 or f16)"));
}

float ToFloat(f16 x) {
  const uint32_t sign = static_cast<uint32_t>(x.bits & 0x8000u) << 16;
  const uint32_t exp = (x.bits >> 10) & 0x1fu;
  const uint32_t man = x.bits & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: man * 2^-24
    const float v = std::ldexp(static_cast<float>(man), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return FloatFromBits(sign | 0x7f800000u | (man << 13));
  return FloatFromBits(sign | ((exp + 112) << 23) | (man << 13));
}

f16 ToF16(float f) {
  const uint32_t u = BitsFromFloat(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const float a = std::fabs(f);
  if (std::isnan(f)) return f16{static_cast<uint16_t>(sign | 0x7e00u)};
  if (a >= 65520.0f) return f16{static_cast<uint16_t>(sign | 0x7c00u)};  // rounds to inf
  if (a < 6.103515625e-05f) {  // subnormal range: quantise to multiples of 2^-24, ties to even
    const float q = std::nearbyint(a * 16777216.0f);
    return f16{static_cast<uint16_t>(sign | static_cast<uint16_t>(q))};
  }
  uint32_t v = BitsFromFloat(a);
  v += 0xfffu + ((v >> 13) & 1u);  // round mantissa to 10 bits, ties to even
  const uint32_t exp = (v >> 23) - 112;
  return f16{static_cast<uint16_t>(sign | (exp << 10) | ((v >> 13) & 0x3ffu))};
}

// memcpy, not typed indexing: callers may pass unaligned bytes (a safetensors data section), and
// a 2- or 4-byte memcpy compiles to a plain load.
float LoadAsFloat(const void* base, DType t, int64_t i) {
  const char* p = static_cast<const char*>(base) + i * DTypeSize(t);
  switch (t) {
    case DType::kF32: {
      float v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case DType::kBF16: {
      bf16 v;
      std::memcpy(&v.bits, p, 2);
      return ToFloat(v);
    }
    case DType::kF16: {
      f16 v;
      std::memcpy(&v.bits, p, 2);
      return ToFloat(v);
    }
  }
  return 0.0f;
}

void StoreFromFloat(void* base, DType t, int64_t i, float v) {
  char* p = static_cast<char*>(base) + i * DTypeSize(t);
  switch (t) {
    case DType::kF32:
      std::memcpy(p, &v, 4);
      return;
    case DType::kBF16: {
      const uint16_t bits = ToBf16(v).bits;
      std::memcpy(p, &bits, 2);
      return;
    }
    case DType::kF16: {
      const uint16_t bits = ToF16(v).bits;
      std::memcpy(p, &bits, 2);
      return;
    }
  }
}

}  // namespace mambaserve
