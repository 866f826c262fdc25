// A dense layer y = x W^T (+ b): the in_proj / x_proj / dt_proj / out_proj / LM head products.
// Column- and row-parallel variants differ only in which slice of W a rank loads and in the
// all-reduce a row-parallel layer's caller runs after it; the product itself is here.
//   CPU: OpenBLAS sgemm (fp32).
//   CUDA: bf16 weights: one row of x on the one-row GEMV (linear_gemv.cu), 2-16 rows with at
//   least 1024 outputs on the few-row tensor-core kernel (linear_skinny.cu); otherwise cuBLAS
//   GemmEx, bf16/f16/f32 inputs, fp32 accumulation, output in any of those dtypes.
#ifndef MAMBASERVE_LAYERS_LINEAR_H_
#define MAMBASERVE_LAYERS_LINEAR_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/buffer.h"
#include "core/dtype.h"
#include "core/stream.h"

namespace mambaserve {

// A cuBLAS handle bound to one stream (a no-op object on the CPU).
class BlasHandle {
 public:
  static absl::StatusOr<BlasHandle> Create(const Stream& stream);
  BlasHandle() = default;
  ~BlasHandle();
  BlasHandle(BlasHandle&& o) noexcept;
  BlasHandle& operator=(BlasHandle&& o) noexcept;
  BlasHandle(const BlasHandle&) = delete;
  BlasHandle& operator=(const BlasHandle&) = delete;
  void* handle() const { return handle_; }

 private:
  void* handle_ = nullptr;
};

class Linear {
 public:
  Linear() = default;
  // Uploads `weight` (out_features x in_features, row-major, float) to `device` in `dtype`, and
  // the optional bias (out_features) in fp32.
  static absl::StatusOr<Linear> Create(Device device, DType dtype, int64_t out_features,
                                       int64_t in_features, const std::vector<float>& weight,
                                       const std::vector<float>* bias = nullptr);

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  DType dtype() const { return dtype_; }
  const void* weight() const { return weight_.data(); }

  // y[t, :out] = x[t, :in] W^T (+ b), for t < num_tokens. x has dtype() and rows x_row_stride
  // apart; y has y_dtype (on CPU: f32 only) and rows y_row_stride apart.
  absl::Status Forward(const void* x, int64_t x_row_stride, int64_t num_tokens, void* y,
                       int64_t y_row_stride, DType y_dtype, const Stream& stream,
                       const BlasHandle& blas) const;
  // Whether ForwardRmsNormalized runs for the single row x (dtype()) and y_dtype: on the CPU in
  // f32; on the GPU where the one-row GEMV does (bf16 weights, 16-byte aligned, in % 8 == 0).
  bool FusesInputRmsNorm(const void* x, DType y_dtype) const;
  // y = (x / rms(x)) W^T (+ b) for the single row x, rms(x) = sqrt(mean(x^2) + eps) over the
  // in_features values: an RMS norm without a weight (fold it into W) inside the product, so
  // that a decode step at batch 1 runs no norm kernel. Only where FusesInputRmsNorm.
  absl::Status ForwardRmsNormalized(const void* x, void* y, DType y_dtype, float eps,
                                    const Stream& stream) const;

 private:
  // The CPU product in f32: y = alpha x W^T (+ b).
  void ForwardCpu(const float* x, int64_t x_row_stride, int64_t num_tokens, float* y,
                  int64_t y_row_stride, float alpha) const;

  Device device_;
  DType dtype_ = DType::kF32;
  int64_t out_ = 0;
  int64_t in_ = 0;
  Buffer weight_;
  Buffer bias_;
};

// Uploads host floats to `device` converted to `dtype`.
absl::StatusOr<Buffer> UploadAs(Device device, DType dtype, const std::vector<float>& values);

}  // namespace mambaserve

#endif  // MAMBASERVE_LAYERS_LINEAR_H_
