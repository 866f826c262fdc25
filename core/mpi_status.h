// Turns MPI return codes into absl::Status.
#ifndef MAMBASERVE_CORE_MPI_STATUS_H_
#define MAMBASERVE_CORE_MPI_STATUS_H_

#include <mpi.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace mambaserve {

inline absl::Status MpiStatus(int code, const char* expr, const char* file, int line) {
  if (code == MPI_SUCCESS) return absl::OkStatus();
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) len = 0;
  return absl::InternalError(absl::StrCat("MPI error ", code, " (", std::string(text, len), ") in ",
                                          expr, " at ", file, ":", line));
}

}  // namespace mambaserve

#define MPI_RETURN_IF_ERROR(expr) \
  RETURN_IF_ERROR(::mambaserve::MpiStatus((expr), #expr, __FILE__, __LINE__))

#endif  // MAMBASERVE_CORE_MPI_STATUS_H_
