// Collectives between the ranks of a tensor-parallel group.
//
// Two implementations behind one interface:
//  - MpiCommunicator (CPU): host buffers, CPU stream. Every collective is an MPI nonblocking
//    collective polled with MPI_Test against the watchdog deadline. The all-reduce is
//    deterministic: every rank gathers all ranks' inputs (one MPI_Iallgather per segment of at
//    most 32 MB per rank) and sums them in rank order 0..n-1 in fp32 (bf16/f16 are widened to fp32
//    and rounded once at the end; MPI has no bf16 type). The result is bitwise identical on every
//    rank and independent of MPI's algorithm choice. Each rank receives n-1 times the buffer
//    (a ring receives 2(n-1)/n times it): the same at tp=2 and fine for the CPU backend's small
//    tp, and one collective per segment keeps the timeout semantics below simple.
//  - NcclCommunicator (CUDA, built only with MAMBASERVE_HAS_CUDA): device buffers on the
//    communicator's GPU, work enqueued on the given CUDA stream (asynchronous, as NCCL is). The
//    NCCL communicator is nonblocking (ncclConfig_t.blocking = 0); a watchdog thread records an
//    event after each collective and calls ncclCommAbort when it has not completed within the
//    timeout or ncclCommGetAsyncError reports an error. bf16 sums use NCCL's own reduction
//    (per-hop bf16 rounding); all ranks still get identical results (ring/tree reductions
//    broadcast one reduced value).
//
// Timeouts (the watchdog): a collective that is not complete within timeout() of being entered
// (MPI) or enqueued (NCCL) fails with DeadlineExceeded, and the communicator is broken from then
// on (every later call returns FailedPrecondition carrying the first error). What is guaranteed:
//  - MPI: the call returns DeadlineExceeded one poll interval (20 us plus scheduling delay) after
//    the deadline. MPI cannot cancel a collective, so the request stays pending inside the
//    communicator (with its own scratch copy of the data: the caller's buffer is never touched
//    after the call returns). If the late ranks do call the same collective later, the pending
//    request completes and the communicator's destructor frees everything (for a message of more
//    than one 32 MB segment only the first segment can complete that way: the late ranks then
//    time out on the next one). If they never join, the request and the MPI communicator are
//    leaked, and the job should end with AbortAll(status) (MPI_Abort on every rank): that is the
//    only guarantee that no rank hangs.
//  - NCCL: the stuck kernels are aborted (ncclCommAbort), so the stream drains; the error is
//    returned by the next call on the communicator or by CheckHealth().
// Default timeout: env MAMBASERVE_COLLECTIVE_TIMEOUT_S (seconds, fractional allowed; <= 0 means
// no timeout), else 600 s. SetDefaultCollectiveTimeout() changes the default for communicators
// created afterwards; set_timeout() changes one communicator.
//
// A communicator is used by one thread at a time (the one that runs the layer). Creating one is
// collective over its MPI communicator: all its ranks must call the factory together.
#ifndef MAMBASERVE_PARALLEL_COMMUNICATOR_H_
#define MAMBASERVE_PARALLEL_COMMUNICATOR_H_

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/device.h"
#include "core/dtype.h"
#include "core/stream.h"

namespace mambaserve {

enum class CommBackend : uint8_t { kMpi = 0, kNccl = 1 };
const char* CommBackendName(CommBackend b);

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual CommBackend backend() const = 0;
  // Where buffers must live: cpu for MPI, cuda:i for NCCL.
  virtual Device device() const = 0;

  // In place: buf[i] = sum over ranks of buf[i], for `count` elements of dtype f32, bf16 or f16.
  // Every rank gets the same bits. count may be 0.
  virtual absl::Status AllReduceSum(void* buf, int64_t count, DType dtype,
                                    const Stream& stream) = 0;
  // recv[r*count .. (r+1)*count) = rank r's send[0 .. count). recv holds size()*count elements
  // and must not overlap send (except send == recv + rank()*count, which is allowed).
  virtual absl::Status AllGather(const void* send, void* recv, int64_t count, DType dtype,
                                 const Stream& stream) = 0;
  // Copies root's buf to every rank's buf.
  virtual absl::Status Broadcast(void* buf, int64_t count, DType dtype, int root,
                                 const Stream& stream) = 0;
  // Returns when every rank has entered the barrier and, for NCCL, after all work enqueued on
  // `stream` before it has completed (it synchronises the stream).
  virtual absl::Status Barrier(const Stream& stream) = 0;

  // A new communicator of the ranks that pass the same color, ordered by key (MPI_Comm_split
  // semantics; collective over this communicator). Same backend and device as this one.
  virtual absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key) = 0;

  // Puts the work enqueued on `stream` so far under the watchdog: a replayed CUDA graph holds
  // collectives captured without one. (MPI collectives complete before they return.)
  virtual absl::Status WatchStream(const Stream& stream, const std::string& what) = 0;

  // OK while usable; the first error (e.g. DeadlineExceeded from the watchdog) once broken.
  virtual absl::Status CheckHealth() = 0;

  absl::Duration timeout() const { return timeout_; }
  void set_timeout(absl::Duration t) { timeout_ = t; }  // absl::InfiniteDuration(): never

 protected:
  Communicator();
  absl::Duration timeout_;
};

// Timeout used by communicators created from now on (initially from
// MAMBASERVE_COLLECTIVE_TIMEOUT_S, else 600 s).
void SetDefaultCollectiveTimeout(absl::Duration timeout);
absl::Duration DefaultCollectiveTimeout();

// The CPU communicator over a duplicate of `comm` (collective over comm).
absl::StatusOr<std::unique_ptr<Communicator>> CreateMpiCommunicator(MPI_Comm comm);

// The NCCL communicator over the ranks of `comm` on GPU `device` (unique id broadcast over a
// duplicate of comm, then ncclCommInitRankConfig). FailedPrecondition in a build without CUDA.
absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(MPI_Comm comm, Device device);

// NCCL for a CUDA device, MPI for the CPU.
absl::StatusOr<std::unique_ptr<Communicator>> CreateCommunicator(MPI_Comm comm, Device device);

// The tensor-parallel group of this process: all of MPI_COMM_WORLD (tp = world size for now),
// on MpiContext::device. Requires InitMpi.
absl::StatusOr<std::unique_ptr<Communicator>> CreateTpCommunicator();

}  // namespace mambaserve

#endif  // MAMBASERVE_PARALLEL_COMMUNICATOR_H_
