// GoogleTest main for tests that run under mpirun (mambaserve_cc_test(... RANKS 1 2 4)).
// Link the OBJECT library ms_mpi_test_main instead of writing a main.
//  - Initialises MPI (InitMpi) before the tests and finalises it after them; register a
//    ::testing::Environment to destroy shared communicators (its TearDown runs before
//    MPI_Finalize).
//  - Only rank 0 prints gtest's normal output; the other ranks print just their failures,
//    prefixed with their rank.
//  - The exit code is the same on every rank: if any rank fails, every rank exits 1.
#include <mpi.h>

#include <cstdio>

#include "gtest/gtest.h"
#include "parallel/mpi_context.h"

namespace {

class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_,
                 r.file_name() != nullptr ? r.file_name() : "?", r.line_number(), r.message());
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed()) {
      std::fprintf(stderr, "[rank %d] FAILED %s.%s\n", rank_, info.test_suite_name(), info.name());
    }
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  absl::StatusOr<const mambaserve::MpiContext*> ctx = mambaserve::InitMpi(&argc, &argv);
  if (!ctx.ok()) {
    std::fprintf(stderr, "InitMpi failed: %s\n", ctx.status().ToString().c_str());
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) mambaserve::AbortAll(ctx.status());  // the other ranks must not wait for us
    return 1;
  }
  const int rank = (*ctx)->world_rank;
  if (rank != 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter(rank));
  }
  int local_rc = RUN_ALL_TESTS() == 0 ? 0 : 1;
  int rc = local_rc;
  if (MPI_Allreduce(&local_rc, &rc, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) rc = 1;
  if (rank == 0 && rc != 0 && local_rc == 0) {
    std::fprintf(stderr, "rank 0 passed but another rank failed (see its [rank r] lines)\n");
  }
  absl::Status fin = mambaserve::FinalizeMpi();
  if (!fin.ok()) {
    std::fprintf(stderr, "[rank %d] FinalizeMpi: %s\n", rank, fin.ToString().c_str());
    rc = 1;
  }
  return rc;
}
