#include "parallel/mpi_context.h"

#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "core/mpi_status.h"
#include "core/status_macros.h"
#if MAMBASERVE_HAS_CUDA
#include "core/cuda_status.h"
#endif

namespace mambaserve {
namespace {

MpiContext* g_context = nullptr;

int VisibleGpuCount() {
#if MAMBASERVE_HAS_CUDA
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
#else
  return 0;
#endif
}

// Picks cuda:local_rank or the CPU (see the header). `why` explains a CPU choice.
absl::StatusOr<Device> ChooseDevice(const MpiContext& c, std::string* why) {
  const char* env = std::getenv("MAMBASERVE_DEVICE");
  const std::string forced = env != nullptr ? env : "";
  if (!forced.empty() && forced != "cpu" && forced != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("MAMBASERVE_DEVICE must be cpu or cuda, got '", forced, "'"));
  }
  if (forced == "cpu") {
    *why = "MAMBASERVE_DEVICE=cpu";
    return Device::Cpu();
  }
  const int gpus = VisibleGpuCount();
  if (gpus == 0) {
#if MAMBASERVE_HAS_CUDA
    *why = "no GPU is visible";
#else
    *why = "this build has no CUDA backend";
#endif
  } else if (c.local_size > gpus) {
    *why = absl::StrCat(c.local_size, " ranks on this node but only ", gpus, " GPUs");
  } else {
#if MAMBASERVE_HAS_CUDA
    CUDA_RETURN_IF_ERROR(cudaSetDevice(c.local_rank));
#endif
    return Device::Cuda(c.local_rank);
  }
  if (forced == "cuda") {
    return absl::FailedPreconditionError(
        absl::StrCat("MAMBASERVE_DEVICE=cuda but ", *why, " (rank ", c.world_rank, ")"));
  }
  return Device::Cpu();
}

}  // namespace

absl::StatusOr<const MpiContext*> InitMpi(int* argc, char*** argv) {
  if (g_context != nullptr) return g_context;
  int initialized = 0;
  MPI_RETURN_IF_ERROR(MPI_Initialized(&initialized));
  auto c = std::make_unique<MpiContext>();
  if (initialized) {
    MPI_RETURN_IF_ERROR(MPI_Query_thread(&c->thread_level));
  } else {
    MPI_RETURN_IF_ERROR(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &c->thread_level));
  }
  // Return codes instead of MPI's default abort-on-error, so failures become Status.
  MPI_RETURN_IF_ERROR(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  if (c->thread_level < MPI_THREAD_FUNNELED) {
    return absl::FailedPreconditionError(
        absl::StrCat("MPI provides thread level ", c->thread_level,
                     " but mambaserve needs at least MPI_THREAD_FUNNELED"));
  }
  c->world = MPI_COMM_WORLD;
  MPI_RETURN_IF_ERROR(MPI_Comm_rank(MPI_COMM_WORLD, &c->world_rank));
  MPI_RETURN_IF_ERROR(MPI_Comm_size(MPI_COMM_WORLD, &c->world_size));
  MPI_RETURN_IF_ERROR(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c->world_rank,
                                          MPI_INFO_NULL, &c->node));
  MPI_RETURN_IF_ERROR(MPI_Comm_rank(c->node, &c->local_rank));
  MPI_RETURN_IF_ERROR(MPI_Comm_size(c->node, &c->local_size));
  SetLogRank(c->world_rank);
  std::string why;
  ASSIGN_OR_RETURN(c->device, ChooseDevice(*c, &why));
  if (c->world_rank == 0) {
    MS_LOG(INFO) << "MPI up: " << c->world_size << " ranks, thread level " << c->thread_level
                 << ", device " << c->device.ToString()
                 << (why.empty() ? std::string() : " (CPU because " + why + ")");
  }
  g_context = c.release();
  return g_context;
}

const MpiContext* GetMpiContext() { return g_context; }

absl::Status FinalizeMpi() {
  int initialized = 0, finalized = 0;
  MPI_RETURN_IF_ERROR(MPI_Initialized(&initialized));
  MPI_RETURN_IF_ERROR(MPI_Finalized(&finalized));
  if (!initialized || finalized) return absl::OkStatus();
  if (g_context != nullptr && g_context->node != MPI_COMM_NULL) {
    MPI_RETURN_IF_ERROR(MPI_Comm_free(&g_context->node));
  }
  delete g_context;
  g_context = nullptr;
  MPI_RETURN_IF_ERROR(MPI_Finalize());
  return absl::OkStatus();
}

void AbortAll(const absl::Status& status) {
  MS_LOG(ERROR) << "aborting every rank: " << status.ToString();
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();  // MPI_Abort does not return; without MPI there is nothing else to stop
}

}  // namespace mambaserve
