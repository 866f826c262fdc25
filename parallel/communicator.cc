#include "parallel/communicator.h"

#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "parallel/mpi_context.h"

namespace mambaserve {
namespace {

absl::Duration TimeoutFromEnv() {
  const char* env = std::getenv("MAMBASERVE_COLLECTIVE_TIMEOUT_S");
  if (env == nullptr || *env == '\0') return absl::Seconds(600);
  double s = 0;
  if (!absl::SimpleAtod(env, &s)) {
    MS_LOG(WARNING) << "ignoring MAMBASERVE_COLLECTIVE_TIMEOUT_S='" << env
                    << "' (not a number); using 600 s";
    return absl::Seconds(600);
  }
  if (s <= 0) return absl::InfiniteDuration();
  return absl::Seconds(s);
}

absl::Duration& DefaultTimeoutStorage() {
  static absl::Duration d = TimeoutFromEnv();
  return d;
}

}  // namespace

const char* CommBackendName(CommBackend b) { return b == CommBackend::kNccl ? "nccl" : "mpi"; }

Communicator::Communicator() : timeout_(DefaultCollectiveTimeout()) {}

void SetDefaultCollectiveTimeout(absl::Duration timeout) { DefaultTimeoutStorage() = timeout; }
absl::Duration DefaultCollectiveTimeout() { return DefaultTimeoutStorage(); }

#if !MAMBASERVE_HAS_CUDA
absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(MPI_Comm, Device device) {
  return absl::FailedPreconditionError(absl::StrCat(
      "NCCL communicator requested for ", device.ToString(), " but this build has no CUDA"));
}
#endif

absl::StatusOr<std::unique_ptr<Communicator>> CreateCommunicator(MPI_Comm comm, Device device) {
  if (device.is_cuda()) return CreateNcclCommunicator(comm, device);
  return CreateMpiCommunicator(comm);
}

absl::StatusOr<std::unique_ptr<Communicator>> CreateTpCommunicator() {
  const MpiContext* ctx = GetMpiContext();
  if (ctx == nullptr) {
    return absl::FailedPreconditionError("CreateTpCommunicator called before InitMpi");
  }
  return CreateCommunicator(ctx->world, ctx->device);
}

}  // namespace mambaserve
