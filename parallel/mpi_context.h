// MPI bootstrap: one process per rank, one GPU per local rank.
//
// InitMpi() calls MPI_Init_thread asking for MPI_THREAD_MULTIPLE. When the library offers less,
// FUNNELED (or SERIALIZED) is accepted: every MPI call in mambaserve is made from the thread that
// initialised MPI (the NCCL watchdog thread makes no MPI calls), so FUNNELED is all that is
// needed; MULTIPLE only lets AbortAll() be called from any thread. Anything below FUNNELED is an
// error. The level obtained is in MpiContext::thread_level.
//
// Device choice: when the build has CUDA and at least as many GPUs are visible on the node as
// there are ranks on the node, rank uses GPU `local_rank` (and cudaSetDevice is called on it).
// Otherwise (no CUDA build, no GPU, or more ranks than GPUs, e.g. `mpirun -np 4` on a one-GPU
// machine) every rank runs on the CPU, and rank 0 logs why. MAMBASERVE_DEVICE=cpu forces the
// CPU; MAMBASERVE_DEVICE=cuda makes the missing-GPU cases an error instead of a fallback.
#ifndef MAMBASERVE_PARALLEL_MPI_CONTEXT_H_
#define MAMBASERVE_PARALLEL_MPI_CONTEXT_H_

#include <mpi.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/device.h"

namespace mambaserve {

struct MpiContext {
  int world_rank = 0;
  int world_size = 1;
  int local_rank = 0;  // rank within this node (MPI_Comm_split_type(MPI_COMM_TYPE_SHARED))
  int local_size = 1;  // ranks on this node
  int thread_level = MPI_THREAD_SINGLE;  // what MPI_Init_thread provided
  Device device;                         // cuda:local_rank or cpu, see above
  MPI_Comm world = MPI_COMM_WORLD;
  MPI_Comm node = MPI_COMM_NULL;  // the ranks of this node (owned; freed by FinalizeMpi)
};

// Initialises MPI once per process and fills the context; later calls return the same context.
// argc/argv may be null. Also sets the log rank prefix (SetLogRank).
absl::StatusOr<const MpiContext*> InitMpi(int* argc, char*** argv);

// The context after InitMpi, else null.
const MpiContext* GetMpiContext();

// Frees the node communicator and calls MPI_Finalize (no-op when MPI is not initialised or
// already finalised). Destroy every Communicator first.
absl::Status FinalizeMpi();

// Logs `status` and calls MPI_Abort(MPI_COMM_WORLD, 1): the launcher then kills every rank and
// exits non-zero. Use it when a collective fails (e.g. a watchdog DeadlineExceeded): MPI cannot
// cancel a collective that the other ranks never joined, so aborting the job is the only way to
// guarantee that no rank hangs. Never returns.
[[noreturn]] void AbortAll(const absl::Status& status);

}  // namespace mambaserve

#endif  // MAMBASERVE_PARALLEL_MPI_CONTEXT_H_
