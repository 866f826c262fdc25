// Streaming (evict-first) 16-byte I/O of SSM state rows for the CUDA state-update kernels:
// VEC elements of an fp32 (VEC 4 or 1) or bf16 (VEC 8 or 1, as uint16_t bits) state,
// converted to and from float registers; stores round to nearest even.
#ifndef MAMBASERVE_KERNELS_STATE_IO_CUH_
#define MAMBASERVE_KERNELS_STATE_IO_CUH_

#include <cuda_bf16.h>

#include <cstdint>

namespace mambaserve {

__device__ __forceinline__ float Bf16BitsToFloat(uint32_t bits16) {
  return __uint_as_float(bits16 << 16);
}
__device__ __forceinline__ uint32_t FloatToBf16Bits(float v) {
  return static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(v)));
}

// Streaming (evict-first) vector I/O of VEC state elements, converted to/from float.
template <typename StT, int VEC>
struct StateIO;

template <>
struct StateIO<float, 4> {
  static __device__ __forceinline__ void Load(const float* p, float (&v)[4]) {
    const float4 q = __ldcs(reinterpret_cast<const float4*>(p));
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
  }
  static __device__ __forceinline__ void Store(float* p, const float (&v)[4]) {
    __stcs(reinterpret_cast<float4*>(p), make_float4(v[0], v[1], v[2], v[3]));
  }
};
template <>
struct StateIO<float, 1> {
  static __device__ __forceinline__ void Load(const float* p, float (&v)[1]) { v[0] = __ldcs(p); }
  static __device__ __forceinline__ void Store(float* p, const float (&v)[1]) { __stcs(p, v[0]); }
};
template <>
struct StateIO<uint16_t, 8> {  // bf16 bits
  static __device__ __forceinline__ void Load(const uint16_t* p, float (&v)[8]) {
    const uint4 q = __ldcs(reinterpret_cast<const uint4*>(p));
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      v[2 * i] = Bf16BitsToFloat(w[i] & 0xffffu);
      v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  }
  static __device__ __forceinline__ void Store(uint16_t* p, const float (&v)[8]) {
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
      w[i] = FloatToBf16Bits(v[2 * i]) | (FloatToBf16Bits(v[2 * i + 1]) << 16);
    __stcs(reinterpret_cast<uint4*>(p), make_uint4(w[0], w[1], w[2], w[3]));
  }
};
template <>
struct StateIO<uint16_t, 1> {
  static __device__ __forceinline__ void Load(const uint16_t* p, float (&v)[1]) {
    v[0] = Bf16BitsToFloat(__ldcs(reinterpret_cast<const unsigned short*>(p)));
  }
  static __device__ __forceinline__ void Store(uint16_t* p, const float (&v)[1]) {
    __stcs(reinterpret_cast<unsigned short*>(p),
           static_cast<unsigned short>(FloatToBf16Bits(v[0])));
  }
};

}  // namespace mambaserve

#endif  // MAMBASERVE_KERNELS_STATE_IO_CUH_
