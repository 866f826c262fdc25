// NcclCommunicator: the GPU communicator (built only with MAMBASERVE_HAS_CUDA). See
// communicator.h for the guarantees.
//
// The NCCL communicator is created nonblocking (ncclConfig_t.blocking = 0) so that no NCCL call
// can block the host forever: calls that return ncclInProgress are polled with
// ncclCommGetAsyncError against the deadline. After each collective an event is recorded on the
// caller's stream and queued for the watchdog thread, which polls the events and the
// communicator's async error; when an event is still pending past its deadline, or NCCL reports
// an error, it calls ncclCommAbort (which makes the stuck kernels exit, so the stream drains) and
// records the error, returned by every later call and by CheckHealth().
//
// CUDA graphs: no event is queued while the stream is capturing (the captured collective runs at
// replay, outside the watchdog). Capture with cudaStreamCaptureModeThreadLocal (or Relaxed), so
// the watchdog thread's cudaEventQuery does not invalidate a capture in progress.
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/cuda_status.h"
#include "core/logging.h"
#include "core/mpi_status.h"
#include "core/nccl_status.h"
#include "core/status_macros.h"
#include "parallel/communicator.h"

namespace mambaserve {
namespace {

absl::StatusOr<ncclDataType_t> NcclType(DType t) {
  switch (t) {
    case DType::kF32:
      return ncclFloat32;
    case DType::kBF16:
      return ncclBfloat16;
    case DType::kF16:
      return ncclFloat16;
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported dtype ", static_cast<int>(t)));
}

absl::Time DeadlineAfter(absl::Duration d) {
  return d == absl::InfiniteDuration() ? absl::InfiniteFuture() : absl::Now() + d;
}

// Waiting for a nonblocking communicator: a collective's enqueue usually leaves ncclInProgress
// within microseconds, so spin (yielding) for the first polls and only then sleep; a sleep
// costs ~60-100 us of timer slack, which would dominate every small all-reduce.
void SleepBriefly(int attempt) {
  if (attempt < 2000) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

// Polls a nonblocking communicator until its state leaves ncclInProgress or the deadline passes.
// Returns the final state (ncclInProgress on timeout).
ncclResult_t PollState(ncclComm_t comm, absl::Time deadline) {
  ncclResult_t state = ncclInProgress;
  int attempt = 0;
  while (true) {
    const ncclResult_t r = ncclCommGetAsyncError(comm, &state);
    if (r != ncclSuccess) return r;
    if (state != ncclInProgress) return state;
    if (absl::Now() > deadline) return ncclInProgress;
    SleepBriefly(attempt++);
  }
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(MPI_Comm mpi_comm, ncclComm_t comm, int rank, int size, Device device,
                   float* scratch);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  CommBackend backend() const override { return CommBackend::kNccl; }
  Device device() const override { return device_; }

  absl::Status AllReduceSum(void* buf, int64_t count, DType dtype, const Stream& stream) override;
  absl::Status AllGather(const void* send, void* recv, int64_t count, DType dtype,
                         const Stream& stream) override;
  absl::Status Broadcast(void* buf, int64_t count, DType dtype, int root,
                         const Stream& stream) override;
  absl::Status Barrier(const Stream& stream) override;
  absl::Status WatchStream(const Stream& stream, const std::string& what) override;
  absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key) override;
  absl::Status CheckHealth() override;

 private:
  struct Pending {
    cudaEvent_t event;
    absl::Time deadline;
    absl::Duration timeout;  // copied: the watchdog thread must not read timeout_
    std::string what;
  };

  absl::Status Precheck(const char* op, const void* ptr, int64_t count, const Stream& stream);
  // Runs one NCCL enqueue call (under mu_), waits out ncclInProgress, queues the event.
  template <typename Fn>
  absl::Status Enqueue(const std::string& what, const Stream& stream, Fn&& fn);
  // Records the error, aborts the NCCL communicator. Requires mu_.
  void AbortLocked(absl::Status why);
  absl::Status BrokenLocked(const char* op) const {
    return absl::FailedPreconditionError(absl::StrCat(
        op, ": NCCL communicator is broken by an earlier error: ", broken_.ToString()));
  }
  void WatchdogLoop();

  MPI_Comm mpi_comm_;
  ncclComm_t comm_;
  const int rank_;
  const int size_;
  const Device device_;
  float* scratch_;  // one float on the device, for Barrier

  std::mutex mu_;
  std::condition_variable cv_;
  absl::Status broken_;
  bool aborted_ = false;
  bool stop_ = false;
  std::deque<Pending> pending_;
  std::vector<cudaEvent_t> free_events_;
  std::thread watchdog_;
};

NcclCommunicator::NcclCommunicator(MPI_Comm mpi_comm, ncclComm_t comm, int rank, int size,
                                   Device device, float* scratch)
    : mpi_comm_(mpi_comm),
      comm_(comm),
      rank_(rank),
      size_(size),
      device_(device),
      scratch_(scratch) {
  watchdog_ = std::thread([this] { WatchdogLoop(); });
}

NcclCommunicator::~NcclCommunicator() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  watchdog_.join();
  cudaSetDevice(device_.index);
  if (!aborted_) {
    // Finalize (flushes outstanding work, nonblocking) within the timeout, else abort.
    ncclResult_t r = ncclCommFinalize(comm_);
    if (r == ncclInProgress || r == ncclSuccess) r = PollState(comm_, DeadlineAfter(timeout_));
    if (r == ncclSuccess) {
      ncclCommDestroy(comm_);
    } else {
      MS_LOG(WARNING) << "ncclCommFinalize did not complete (" << ncclGetErrorString(r)
                      << "); aborting the communicator";
      ncclCommAbort(comm_);
    }
  }
  for (const Pending& p : pending_) cudaEventDestroy(p.event);
  for (cudaEvent_t e : free_events_) cudaEventDestroy(e);
  cudaFree(scratch_);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&mpi_comm_);
}

void NcclCommunicator::AbortLocked(absl::Status why) {
  if (aborted_) return;
  MS_LOG(ERROR) << "NCCL watchdog: " << why.ToString() << "; aborting the communicator";
  broken_ = std::move(why);
  aborted_ = true;
  ncclCommAbort(comm_);
}

void NcclCommunicator::WatchdogLoop() {
  cudaSetDevice(device_.index);
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_) {
    if (pending_.empty()) {
      cv_.wait_for(lk, std::chrono::milliseconds(100));
    } else {
      lk.unlock();
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      lk.lock();
    }
    if (stop_ || aborted_) continue;
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
    if (r != ncclSuccess || (state != ncclSuccess && state != ncclInProgress)) {
      AbortLocked(absl::InternalError(absl::StrCat(
          "NCCL reported an asynchronous error on rank ", rank_, ": ",
          ncclGetErrorString(r != ncclSuccess ? r : state), " (", ncclGetLastError(comm_), ")")));
      continue;
    }
    const absl::Time now = absl::Now();
    for (auto it = pending_.begin(); it != pending_.end();) {
      const cudaError_t e = cudaEventQuery(it->event);
      if (e == cudaSuccess) {
        free_events_.push_back(it->event);
        it = pending_.erase(it);
      } else if (e == cudaErrorNotReady) {
        if (now > it->deadline) {
          AbortLocked(absl::DeadlineExceededError(absl::StrCat(
              it->what, " on rank ", rank_, " of ", size_, " did not complete within ",
              absl::FormatDuration(it->timeout),
              ": a peer rank did not join it or is stuck. The NCCL communicator was aborted; "
              "call AbortAll() to stop every rank")));
          break;
        }
        ++it;
      } else {
        AbortLocked(CudaStatus(e, "cudaEventQuery (watchdog)", __FILE__, __LINE__));
        break;
      }
    }
  }
}

absl::Status NcclCommunicator::Precheck(const char* op, const void* ptr, int64_t count,
                                        const Stream& stream) {
  MS_CHECK_ARG(stream.is_cuda() && stream.device() == device_, op,
               ": the NCCL communicator needs a CUDA stream on ", device_.ToString(), ", got ",
               stream.device().ToString());
  MS_CHECK_ARG(count >= 0, op, ": count must be >= 0, got ", count);
  MS_CHECK_ARG(count == 0 || ptr != nullptr, op, ": null buffer with count ", count);
  return absl::OkStatus();
}

template <typename Fn>
absl::Status NcclCommunicator::Enqueue(const std::string& what, const Stream& stream, Fn&& fn) {
  std::unique_lock<std::mutex> lk(mu_);
  if (!broken_.ok()) return BrokenLocked(what.c_str());
  const absl::Time deadline = DeadlineAfter(timeout_);
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device_.index));
  ncclResult_t r = fn();
  int attempt = 0;
  while (r == ncclInProgress) {
    ncclResult_t state = ncclInProgress;
    const ncclResult_t q = ncclCommGetAsyncError(comm_, &state);
    if (q != ncclSuccess) {
      r = q;
      break;
    }
    r = state;
    if (r != ncclInProgress) break;
    if (absl::Now() > deadline) {
      AbortLocked(absl::DeadlineExceededError(
          absl::StrCat(what, " on rank ", rank_, " of ", size_, " did not complete within ",
                       absl::FormatDuration(timeout_),
                       ": NCCL stayed in progress (a peer rank did not join it or is stuck). The "
                       "NCCL communicator was aborted; call AbortAll() to stop every rank")));
      return broken_;
    }
    lk.unlock();
    SleepBriefly(attempt++);
    lk.lock();
    if (aborted_) return broken_;
  }
  if (r != ncclSuccess) {
    AbortLocked(NcclStatus(r, what.c_str(), __FILE__, __LINE__));
    return broken_;
  }
  cudaStream_t s = static_cast<cudaStream_t>(stream.handle());
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  CUDA_RETURN_IF_ERROR(cudaStreamIsCapturing(s, &capture));
  if (capture != cudaStreamCaptureStatusNone) return absl::OkStatus();
  cudaEvent_t ev;
  if (!free_events_.empty()) {
    ev = free_events_.back();
    free_events_.pop_back();
  } else {
    CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  }
  const cudaError_t e = cudaEventRecord(ev, s);
  if (e != cudaSuccess) {
    free_events_.push_back(ev);
    return CudaStatus(e, "cudaEventRecord", __FILE__, __LINE__);
  }
  pending_.push_back(Pending{ev, deadline, timeout_, what});
  lk.unlock();
  cv_.notify_all();
  return absl::OkStatus();
}

absl::Status NcclCommunicator::WatchStream(const Stream& stream, const std::string& what) {
  RETURN_IF_ERROR(Precheck("WatchStream", nullptr, 0, stream));
  return Enqueue(what, stream, [] { return ncclSuccess; });  // only the event and deadline
}

absl::Status NcclCommunicator::AllReduceSum(void* buf, int64_t count, DType dtype,
                                            const Stream& stream) {
  RETURN_IF_ERROR(Precheck("AllReduceSum", buf, count, stream));
  if (count == 0) return CheckHealth();
  ASSIGN_OR_RETURN(ncclDataType_t type, NcclType(dtype));
  cudaStream_t s = static_cast<cudaStream_t>(stream.handle());
  return Enqueue(
      absl::StrCat("AllReduceSum(count=", count, ", ", DTypeName(dtype), ")"), stream,
      [&] { return ncclAllReduce(buf, buf, static_cast<size_t>(count), type, ncclSum, comm_, s); });
}

absl::Status NcclCommunicator::AllGather(const void* send, void* recv, int64_t count, DType dtype,
                                         const Stream& stream) {
  RETURN_IF_ERROR(Precheck("AllGather", send, count, stream));
  MS_CHECK_ARG(count == 0 || recv != nullptr, "AllGather: null recv buffer");
  if (count == 0) return CheckHealth();
  ASSIGN_OR_RETURN(ncclDataType_t type, NcclType(dtype));
  cudaStream_t s = static_cast<cudaStream_t>(stream.handle());
  return Enqueue(absl::StrCat("AllGather(count=", count, ", ", DTypeName(dtype), ")"), stream, [&] {
    return ncclAllGather(send, recv, static_cast<size_t>(count), type, comm_, s);
  });
}

absl::Status NcclCommunicator::Broadcast(void* buf, int64_t count, DType dtype, int root,
                                         const Stream& stream) {
  RETURN_IF_ERROR(Precheck("Broadcast", buf, count, stream));
  MS_CHECK_ARG(root >= 0 && root < size_, "Broadcast: root ", root, " outside [0, ", size_, ")");
  if (count == 0) return CheckHealth();
  ASSIGN_OR_RETURN(ncclDataType_t type, NcclType(dtype));
  cudaStream_t s = static_cast<cudaStream_t>(stream.handle());
  return Enqueue(
      absl::StrCat("Broadcast(count=", count, ", ", DTypeName(dtype), ", root=", root, ")"), stream,
      [&] { return ncclBroadcast(buf, buf, static_cast<size_t>(count), type, root, comm_, s); });
}

absl::Status NcclCommunicator::Barrier(const Stream& stream) {
  RETURN_IF_ERROR(Precheck("Barrier", scratch_, 1, stream));
  cudaStream_t s = static_cast<cudaStream_t>(stream.handle());
  RETURN_IF_ERROR(Enqueue("Barrier", stream, [&] {
    return ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm_, s);
  }));
  // Wait for the stream without blocking in CUDA, so the deadline and the watchdog apply.
  const absl::Time deadline = DeadlineAfter(timeout_);
  for (int attempt = 0;; ++attempt) {
    const cudaError_t e = cudaStreamQuery(s);
    if (e == cudaSuccess) break;
    if (e != cudaErrorNotReady)
      return CudaStatus(e, "cudaStreamQuery (Barrier)", __FILE__, __LINE__);
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (!broken_.ok()) return broken_;
      if (absl::Now() > deadline) {
        AbortLocked(absl::DeadlineExceededError(
            absl::StrCat("Barrier on rank ", rank_, " of ", size_, " did not complete within ",
                         absl::FormatDuration(timeout_), "; call AbortAll() to stop every rank")));
        return broken_;
      }
    }
    SleepBriefly(attempt);
  }
  std::lock_guard<std::mutex> lk(mu_);
  return broken_;
}

absl::Status NcclCommunicator::CheckHealth() {
  std::lock_guard<std::mutex> lk(mu_);
  if (!broken_.ok()) return broken_;
  ncclResult_t state = ncclSuccess;
  const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
  if (r != ncclSuccess || (state != ncclSuccess && state != ncclInProgress)) {
    AbortLocked(
        NcclStatus(r != ncclSuccess ? r : state, "ncclCommGetAsyncError", __FILE__, __LINE__));
  }
  return broken_;
}

absl::StatusOr<std::unique_ptr<Communicator>> NcclCommunicator::Split(int color, int key) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!broken_.ok()) return BrokenLocked("Split");
  }
  MPI_Comm sub;
  MPI_RETURN_IF_ERROR(MPI_Comm_split(mpi_comm_, color, key, &sub));
  if (sub == MPI_COMM_NULL) {
    return absl::InvalidArgumentError("Split: MPI_UNDEFINED color gives no communicator");
  }
  absl::StatusOr<std::unique_ptr<Communicator>> c = CreateNcclCommunicator(sub, device_);
  MPI_Comm_free(&sub);
  if (c.ok()) (*c)->set_timeout(timeout_);
  return c;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(MPI_Comm comm, Device device) {
  MS_CHECK_ARG(device.is_cuda(), "CreateNcclCommunicator needs a CUDA device, got ",
               device.ToString());
  int initialized = 0;
  MPI_RETURN_IF_ERROR(MPI_Initialized(&initialized));
  if (!initialized) return absl::FailedPreconditionError("CreateNcclCommunicator before InitMpi");
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device.index));
  MPI_Comm dup;
  MPI_RETURN_IF_ERROR(MPI_Comm_dup(comm, &dup));
  MPI_RETURN_IF_ERROR(MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN));
  int rank = 0, size = 0;
  MPI_RETURN_IF_ERROR(MPI_Comm_rank(dup, &rank));
  MPI_RETURN_IF_ERROR(MPI_Comm_size(dup, &size));

  // Rank 0 makes the id and broadcasts it with a success flag, so a failure there cannot leave
  // the other ranks waiting in ncclCommInitRank.
  struct {
    int ok;
    ncclUniqueId id;
  } boot{};
  if (rank == 0) boot.ok = ncclGetUniqueId(&boot.id) == ncclSuccess ? 1 : 0;
  MPI_RETURN_IF_ERROR(MPI_Bcast(&boot, sizeof(boot), MPI_BYTE, 0, dup));
  if (!boot.ok) {
    MPI_Comm_free(&dup);
    return absl::InternalError("ncclGetUniqueId failed on rank 0");
  }

  const absl::Duration timeout = DefaultCollectiveTimeout();
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t nc = nullptr;
  ncclResult_t r = ncclCommInitRankConfig(&nc, size, boot.id, rank, &config);
  if (r == ncclInProgress || (r == ncclSuccess && nc != nullptr)) {
    r = PollState(nc, DeadlineAfter(timeout));
  }
  if (r != ncclSuccess) {
    if (nc != nullptr) ncclCommAbort(nc);
    MPI_Comm_free(&dup);
    if (r == ncclInProgress) {
      return absl::DeadlineExceededError(absl::StrCat(
          "ncclCommInitRankConfig on rank ", rank, " of ", size, " did not complete within ",
          absl::FormatDuration(timeout), " (a peer rank did not join)"));
    }
    return NcclStatus(r, "ncclCommInitRankConfig", __FILE__, __LINE__);
  }
  float* scratch = nullptr;
  const cudaError_t e = cudaMalloc(&scratch, sizeof(float));
  if (e != cudaSuccess) {
    ncclCommAbort(nc);
    MPI_Comm_free(&dup);
    return CudaStatus(e, "cudaMalloc", __FILE__, __LINE__);
  }
  return std::unique_ptr<Communicator>(new NcclCommunicator(dup, nc, rank, size, device, scratch));
}

}  // namespace mambaserve
