// Probe for AbortAll (registered as a ctest that must fail): rank 1 calls AbortAll while every
// other rank waits in a barrier that can never complete. mpirun must kill all ranks and exit
// non-zero promptly; if a barrier ever returned, the probe would exit 0 and the test would fail.
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/status/status.h"
#include "parallel/mpi_context.h"

int main(int argc, char** argv) {
  absl::StatusOr<const mambaserve::MpiContext*> ctx = mambaserve::InitMpi(&argc, &argv);
  if (!ctx.ok()) return 2;
  if ((*ctx)->world_rank == 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    mambaserve::AbortAll(absl::DeadlineExceededError("probe: simulated stuck collective"));
  }
  MPI_Barrier(MPI_COMM_WORLD);  // never completes: rank 1 does not enter it
  std::printf("barrier returned: AbortAll did not stop this rank\n");
  (void)mambaserve::FinalizeMpi();
  return 0;
}
