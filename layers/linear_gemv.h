// The one-row GEMV behind Linear::Forward on the GPU (layers/linear_gemv.cu): y = x W^T for a
// single row x (decode at batch 1), bf16 weights and x (16-byte aligned, in % 8 == 0), y in f32
// or bf16. Linear uses it where GemvFits, cuBLAS elsewhere; bench_gemm_algos times both.
#ifndef MAMBASERVE_LAYERS_LINEAR_GEMV_H_
#define MAMBASERVE_LAYERS_LINEAR_GEMV_H_

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "core/dtype.h"
#include "core/stream.h"

namespace mambaserve {

bool GemvFits(DType w_dtype, int64_t in, const void* w, const void* x, int64_t rows, DType y_dtype);

// w: (out, in) row-major; x: (in); y: (out). With x_rms_eps, x is RMS-normalised first (no
// weight): y = (x W^T) * rsqrt(mean(x^2) + eps), the mean over the `in` values.
absl::Status GemvCuda(const void* w, int64_t out, int64_t in, const void* x, void* y, DType y_dtype,
                      const Stream& stream, std::optional<float> x_rms_eps = std::nullopt);

}  // namespace mambaserve

#endif  // MAMBASERVE_LAYERS_LINEAR_GEMV_H_
