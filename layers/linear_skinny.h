// The few-row product behind Linear::Forward on the GPU (layers/linear_skinny.cu): y = x W^T for
// 2 to 16 rows of x (decode at batch 2-16, short prompts), bf16 weights and x, y in f32 or bf16,
// at least 1024 outputs. Linear uses it where SkinnyFits, the one-row GEMV for one row, cuBLAS
// elsewhere.
#ifndef MAMBASERVE_LAYERS_LINEAR_SKINNY_H_
#define MAMBASERVE_LAYERS_LINEAR_SKINNY_H_

#include <cstdint>

#include "absl/status/status.h"
#include "core/dtype.h"
#include "core/stream.h"

namespace mambaserve {

inline constexpr int64_t kSkinnyMaxRows = 16;

bool SkinnyFits(DType w_dtype, int64_t out, int64_t in, const void* w, const void* x,
                int64_t x_row_stride, int64_t rows, DType y_dtype);
// On by default; benchmarks switch it off to compare with cuBLAS (process-wide; CUDA graphs
// captured before keep the kernels they captured).
void SetSkinnyEnabled(bool on);
// w: (out, in) row-major; x: (rows, in), rows x_row_stride apart; y: (rows, out), rows
// y_row_stride apart.
absl::Status SkinnyCuda(const void* w, int64_t out, int64_t in, const void* x, int64_t x_row_stride,
                        int64_t rows, void* y, int64_t y_row_stride, DType y_dtype,
                        const Stream& stream);

}  // namespace mambaserve

#endif  // MAMBASERVE_LAYERS_LINEAR_SKINNY_H_
