// Turns CUDA runtime and cuBLAS return codes into absl::Status with the failing call and place.
#ifndef MAMBASERVE_CORE_CUDA_STATUS_H_
#define MAMBASERVE_CORE_CUDA_STATUS_H_

#if MAMBASERVE_HAS_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace mambaserve {

inline absl::Status CudaStatus(cudaError_t e, const char* expr, const char* file, int line) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("CUDA error ", cudaGetErrorName(e), " (",
                                          cudaGetErrorString(e), ") in ", expr, " at ", file, ":",
                                          line));
}

inline absl::Status CublasStatus(cublasStatus_t e, const char* expr, const char* file, int line) {
  if (e == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("cuBLAS error ", cublasGetStatusName(e), " (",
                                          cublasGetStatusString(e), ") in ", expr, " at ", file,
                                          ":", line));
}

}  // namespace mambaserve

#define CUDA_RETURN_IF_ERROR(expr) \
  RETURN_IF_ERROR(::mambaserve::CudaStatus((expr), #expr, __FILE__, __LINE__))
#define CUBLAS_RETURN_IF_ERROR(expr) \
  RETURN_IF_ERROR(::mambaserve::CublasStatus((expr), #expr, __FILE__, __LINE__))
// After a kernel launch: reports launch-configuration errors without synchronising.
#define CUDA_RETURN_IF_LAUNCH_ERROR() CUDA_RETURN_IF_ERROR(cudaGetLastError())

#endif  // MAMBASERVE_HAS_CUDA
#endif  // MAMBASERVE_CORE_CUDA_STATUS_H_
