// Turns NCCL return codes into absl::Status.
#ifndef MAMBASERVE_CORE_NCCL_STATUS_H_
#define MAMBASERVE_CORE_NCCL_STATUS_H_

#if MAMBASERVE_HAS_CUDA
#include <nccl.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace mambaserve {

inline absl::Status NcclStatus(ncclResult_t r, const char* expr, const char* file, int line) {
  if (r == ncclSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("NCCL error ", static_cast<int>(r), " (",
                                          ncclGetErrorString(r), ") in ", expr, " at ", file, ":",
                                          line));
}

}  // namespace mambaserve

#define NCCL_RETURN_IF_ERROR(expr) \
  RETURN_IF_ERROR(::mambaserve::NcclStatus((expr), #expr, __FILE__, __LINE__))

#endif  // MAMBASERVE_HAS_CUDA
#endif  // MAMBASERVE_CORE_NCCL_STATUS_H_
