#include "layers/linear.h"

#include <cblas.h>

#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#if MAMBASERVE_HAS_CUDA
#include "core/cuda_status.h"
#include "layers/linear_gemv.h"
#include "layers/linear_skinny.h"
#endif

namespace mambaserve {

absl::StatusOr<Buffer> UploadAs(Device device, DType dtype, const std::vector<float>& values) {
  const int64_t n = static_cast<int64_t>(values.size());
  std::vector<uint8_t> host(static_cast<size_t>(n * DTypeSize(dtype)));
  for (int64_t i = 0; i < n; ++i)
    StoreFromFloat(host.data(), dtype, i, values[static_cast<size_t>(i)]);
  ASSIGN_OR_RETURN(Buffer b, Buffer::Allocate(device, std::max<int64_t>(1, n * DTypeSize(dtype))));
  if (n > 0) {
    RETURN_IF_ERROR(CopyBytes(b.data(), device, host.data(), Device::Cpu(), n * DTypeSize(dtype)));
  }
  return b;
}

absl::StatusOr<BlasHandle> BlasHandle::Create(const Stream& stream) {
  BlasHandle h;
  if (!stream.is_cuda()) return h;
#if MAMBASERVE_HAS_CUDA
  cublasHandle_t handle;
  CUBLAS_RETURN_IF_ERROR(cublasCreate(&handle));
  h.handle_ = handle;
  CUBLAS_RETURN_IF_ERROR(cublasSetStream(handle, static_cast<cudaStream_t>(stream.handle())));
  return h;
#else
  return absl::FailedPreconditionError("cuBLAS requested in a build without CUDA");
#endif
}

BlasHandle::~BlasHandle() {
#if MAMBASERVE_HAS_CUDA
  if (handle_ != nullptr) cublasDestroy(static_cast<cublasHandle_t>(handle_));
#endif
}

BlasHandle::BlasHandle(BlasHandle&& o) noexcept : handle_(std::exchange(o.handle_, nullptr)) {}
BlasHandle& BlasHandle::operator=(BlasHandle&& o) noexcept {
  if (this != &o) {
    this->~BlasHandle();
    handle_ = std::exchange(o.handle_, nullptr);
  }
  return *this;
}

absl::StatusOr<Linear> Linear::Create(Device device, DType dtype, int64_t out_features,
                                      int64_t in_features, const std::vector<float>& weight,
                                      const std::vector<float>* bias) {
  MS_CHECK_ARG(out_features > 0 && in_features > 0, "Linear: bad shape ", out_features, "x",
               in_features);
  MS_CHECK_ARG(static_cast<int64_t>(weight.size()) == out_features * in_features,
               "Linear: weight has ", weight.size(), " values, expected ",
               out_features * in_features);
  MS_CHECK_ARG(device.is_cuda() || dtype == DType::kF32,
               "Linear: the CPU backend computes in f32, got ", DTypeName(dtype));
  Linear l;
  l.device_ = device;
  l.dtype_ = dtype;
  l.out_ = out_features;
  l.in_ = in_features;
  ASSIGN_OR_RETURN(l.weight_, UploadAs(device, dtype, weight));
  if (bias != nullptr) {
    MS_CHECK_ARG(static_cast<int64_t>(bias->size()) == out_features, "Linear: bias size");
    ASSIGN_OR_RETURN(l.bias_, UploadAs(device, DType::kF32, *bias));
  }
  return l;
}

#if MAMBASERVE_HAS_CUDA
namespace {
cudaDataType_t CudaType(DType t) {
  switch (t) {
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kF16:
      return CUDA_R_16F;
    default:
      return CUDA_R_32F;
  }
}
}  // namespace
absl::Status AddBiasCuda(void* y, int64_t y_row_stride, DType y_dtype, const float* bias,
                         int64_t rows, int64_t cols, const Stream& stream);
#endif

void Linear::ForwardCpu(const float* x, int64_t x_row_stride, int64_t num_tokens, float* y,
                        int64_t y_row_stride, float alpha) const {
  const bool has_bias = bias_.data() != nullptr;
  if (has_bias) {
    for (int64_t t = 0; t < num_tokens; ++t) {
      std::memcpy(y + t * y_row_stride, bias_.data(), static_cast<size_t>(out_) * 4);
    }
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(num_tokens),
              static_cast<int>(out_), static_cast<int>(in_), alpha, x,
              static_cast<int>(x_row_stride), static_cast<const float*>(weight_.data()),
              static_cast<int>(in_), has_bias ? 1.0f : 0.0f, y, static_cast<int>(y_row_stride));
}

absl::Status Linear::Forward(const void* x, int64_t x_row_stride, int64_t num_tokens, void* y,
                             int64_t y_row_stride, DType y_dtype, const Stream& stream,
                             const BlasHandle& blas) const {
  MS_CHECK_ARG(x_row_stride >= in_ && y_row_stride >= out_, "Linear: row strides too small");
  if (num_tokens == 0) return absl::OkStatus();
  if (!stream.is_cuda()) {
    MS_CHECK_ARG(y_dtype == DType::kF32 && dtype_ == DType::kF32, "Linear: CPU computes in f32");
    ForwardCpu(static_cast<const float*>(x), x_row_stride, num_tokens, static_cast<float*>(y),
               y_row_stride, 1.0f);
    return absl::OkStatus();
  }
#if MAMBASERVE_HAS_CUDA
  if (GemvFits(dtype_, in_, weight_.data(), x, num_tokens, y_dtype)) {
    RETURN_IF_ERROR(GemvCuda(weight_.data(), out_, in_, x, y, y_dtype, stream));
  } else if (SkinnyFits(dtype_, out_, in_, weight_.data(), x, x_row_stride, num_tokens, y_dtype)) {
    RETURN_IF_ERROR(SkinnyCuda(weight_.data(), out_, in_, x, x_row_stride, num_tokens, y,
                               y_row_stride, y_dtype, stream));
  } else {
    // Column-major view: Y^T (out x T) = W (out x in, stored as in x out col-major) * X^T.
    const float alpha = 1.0f, beta = 0.0f;
    CUBLAS_RETURN_IF_ERROR(
        cublasGemmEx(static_cast<cublasHandle_t>(blas.handle()), CUBLAS_OP_T, CUBLAS_OP_N,
                     static_cast<int>(out_), static_cast<int>(num_tokens), static_cast<int>(in_),
                     &alpha, weight_.data(), CudaType(dtype_), static_cast<int>(in_), x,
                     CudaType(dtype_), static_cast<int>(x_row_stride), &beta, y, CudaType(y_dtype),
                     static_cast<int>(y_row_stride), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
  if (bias_.data() != nullptr) {
    RETURN_IF_ERROR(AddBiasCuda(y, y_row_stride, y_dtype, static_cast<const float*>(bias_.data()),
                                num_tokens, out_, stream));
  }
  return absl::OkStatus();
#else
  return absl::FailedPreconditionError("Linear: CUDA stream in a build without CUDA");
#endif
}

bool Linear::FusesInputRmsNorm(const void* x, DType y_dtype) const {
  if (device_.is_cpu()) return dtype_ == DType::kF32 && y_dtype == DType::kF32;
#if MAMBASERVE_HAS_CUDA
  return GemvFits(dtype_, in_, weight_.data(), x, 1, y_dtype);
#else
  (void)x;
  return false;
#endif
}

absl::Status Linear::ForwardRmsNormalized(const void* x, void* y, DType y_dtype, float eps,
                                          const Stream& stream) const {
  MS_CHECK_ARG(FusesInputRmsNorm(x, y_dtype) && stream.is_cuda() == device_.is_cuda(),
               "Linear: no RMS-normalised product for these arguments (CPU: f32; GPU: the "
               "one-row GEMV's bf16)");
  if (device_.is_cpu()) {
    // The same order as the GEMV: fp32 sum of squares over the row, then the scaled product.
    const auto* xf = static_cast<const float*>(x);
    float ss = 0.0f;
    for (int64_t i = 0; i < in_; ++i) ss += xf[i] * xf[i];
    const float scale = 1.0f / std::sqrt(ss / static_cast<float>(in_) + eps);
    ForwardCpu(xf, in_, 1, static_cast<float*>(y), out_, scale);
    return absl::OkStatus();
  }
#if MAMBASERVE_HAS_CUDA
  RETURN_IF_ERROR(GemvCuda(weight_.data(), out_, in_, x, y, y_dtype, stream, eps));
  if (bias_.data() != nullptr) {
    RETURN_IF_ERROR(
        AddBiasCuda(y, out_, y_dtype, static_cast<const float*>(bias_.data()), 1, out_, stream));
  }
#endif
  return absl::OkStatus();
}

}  // namespace mambaserve
