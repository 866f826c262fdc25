// MpiCommunicator: the CPU communicator. See communicator.h for the guarantees.
//
// Every collective works on scratch copies: the caller's buffer is read before the MPI request is
// posted and written after it completed, so a request left pending by a timeout never touches
// it. Large messages are cut into segments of at most kSegmentBytes (bounds the scratch memory
// and keeps MPI's int counts in range).
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/logging.h"
#include "core/mpi_status.h"
#include "core/status_macros.h"
#include "parallel/communicator.h"

namespace mambaserve {
namespace {

constexpr int64_t kSegmentBytes = int64_t{32} << 20;

absl::Status CheckDType(DType t) {
  MS_CHECK_ARG(t == DType::kF32 || t == DType::kBF16 || t == DType::kF16, "unsupported dtype ",
               static_cast<int>(t));
  return absl::OkStatus();
}

// out[k] = sum_{j=0..n-1} slot_j[k] in fp32, rank order, rounded once to T.
template <typename T>
void SumSlots(const char* slots, int64_t slot_bytes, int n, int64_t count, T* out) {
  constexpr int64_t kBlock = 512;
  float acc[kBlock];
  for (int64_t b = 0; b < count; b += kBlock) {
    const int64_t m = std::min(kBlock, count - b);
    const T* s0 = reinterpret_cast<const T*>(slots) + b;
    for (int64_t k = 0; k < m; ++k) acc[k] = ToFloat(s0[k]);
    for (int j = 1; j < n; ++j) {
      const T* s = reinterpret_cast<const T*>(slots + j * slot_bytes) + b;
      for (int64_t k = 0; k < m; ++k) acc[k] += ToFloat(s[k]);
    }
    for (int64_t k = 0; k < m; ++k) out[b + k] = FromFloat<T>(acc[k]);
  }
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, int rank, int size) : comm_(comm), rank_(rank), size_(size) {}
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  CommBackend backend() const override { return CommBackend::kMpi; }
  Device device() const override { return Device::Cpu(); }

  absl::Status AllReduceSum(void* buf, int64_t count, DType dtype, const Stream& stream) override;
  absl::Status AllGather(const void* send, void* recv, int64_t count, DType dtype,
                         const Stream& stream) override;
  absl::Status Broadcast(void* buf, int64_t count, DType dtype, int root,
                         const Stream& stream) override;
  absl::Status Barrier(const Stream& stream) override;
  absl::Status WatchStream(const Stream&, const std::string&) override { return CheckHealth(); }
  absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key) override;
  absl::Status CheckHealth() override { return broken_; }

 private:
  // A request abandoned by a timeout, with the scratch memory MPI may still use.
  struct Orphan {
    MPI_Request request;
    std::vector<char> scratch;
  };

  absl::Status Precheck(const char* op, const void* ptr, int64_t count, DType dtype,
                        const Stream& stream);
  absl::Time Deadline() const {
    return timeout_ == absl::InfiniteDuration() ? absl::InfiniteFuture() : absl::Now() + timeout_;
  }
  // Polls `req` until done or past `deadline`; on timeout breaks the communicator and keeps the
  // request and scratch_ as an orphan.
  absl::Status Wait(MPI_Request* req, absl::Time deadline, const std::string& what);
  // Gathers every rank's `count` elements of `src` (esize bytes each) a segment at a time, one
  // MPI_Iallgather in place into scratch_ per segment (single-phase, so a late rank can still
  // complete an abandoned one), and after each calls use(off, m, slot): scratch_ then holds the
  // ranks' elements [off, off + m) in rank order, slot = m * esize bytes each.
  template <typename Use>
  absl::Status GatherSegments(const char* src, int64_t count, int64_t esize,
                              const std::string& what, Use use);

  MPI_Comm comm_;
  int rank_;
  int size_;
  absl::Status broken_;
  std::vector<char> scratch_;
  std::vector<Orphan> orphans_;
};

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;  // too late to free anything; the OS reclaims it
  bool pending = false;
  for (Orphan& o : orphans_) {
    int done = 0;
    if (o.request != MPI_REQUEST_NULL) MPI_Test(&o.request, &done, MPI_STATUS_IGNORE);
    if (o.request != MPI_REQUEST_NULL) pending = true;
  }
  if (pending) {
    // MPI cannot cancel a collective; leak the request, its memory and the communicator.
    MS_LOG(WARNING) << "MpiCommunicator destroyed with a collective that never completed ("
                    << broken_.ToString() << "); leaking it";
    for (Orphan& o : orphans_) {
      if (o.request != MPI_REQUEST_NULL) new std::vector<char>(std::move(o.scratch));
    }
    return;
  }
  MPI_Comm_free(&comm_);
}

absl::Status MpiCommunicator::Precheck(const char* op, const void* ptr, int64_t count, DType dtype,
                                       const Stream& stream) {
  if (!broken_.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(op, ": communicator is broken by an earlier error: ", broken_.ToString()));
  }
  MS_CHECK_ARG(!stream.is_cuda(), op,
               ": the MPI communicator works on host memory and the CPU "
               "stream, got a stream on ",
               stream.device().ToString());
  MS_CHECK_ARG(count >= 0, op, ": count must be >= 0, got ", count);
  MS_CHECK_ARG(count == 0 || ptr != nullptr, op, ": null buffer with count ", count);
  return CheckDType(dtype);
}

absl::Status MpiCommunicator::Wait(MPI_Request* req, absl::Time deadline, const std::string& what) {
  int64_t polls = 0;
  const absl::Time start = absl::Now();
  while (true) {
    int done = 0;
    const int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      broken_ = MpiStatus(rc, what.c_str(), __FILE__, __LINE__);
      return broken_;
    }
    if (done) return absl::OkStatus();
    ++polls;
    // Spin briefly (latency), then yield, then sleep (ranks may share cores).
    if (polls < 256) continue;
    const absl::Time now = absl::Now();
    if (now > deadline) {
      broken_ = absl::DeadlineExceededError(absl::StrCat(
          what, " on rank ", rank_, " of ", size_, " did not complete within ",
          absl::FormatDuration(timeout_), " (waited ", absl::FormatDuration(now - start),
          "): a peer rank did not join it or is stuck. The communicator is unusable now; "
          "call AbortAll() to stop every rank"));
      orphans_.push_back(Orphan{*req, std::move(scratch_)});
      scratch_ = {};
      return broken_;
    }
    if (now - start < absl::Milliseconds(2)) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }
}

template <typename Use>
absl::Status MpiCommunicator::GatherSegments(const char* src, int64_t count, int64_t esize,
                                             const std::string& what, Use use) {
  const absl::Time deadline = Deadline();
  const int64_t seg_elems =
      std::max<int64_t>(1, std::min<int64_t>(kSegmentBytes, (INT_MAX / 2) / size_) / esize);
  for (int64_t off = 0; off < count; off += seg_elems) {
    const int64_t m = std::min(seg_elems, count - off);
    const int64_t slot = m * esize;
    scratch_.resize(static_cast<size_t>(slot * size_));
    std::memcpy(scratch_.data() + rank_ * slot, src + off * esize, slot);
    MPI_Request req;
    MPI_RETURN_IF_ERROR(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_BYTE, scratch_.data(),
                                       static_cast<int>(slot), MPI_BYTE, comm_, &req));
    RETURN_IF_ERROR(Wait(&req, deadline, what));
    use(off, m, slot);
  }
  return absl::OkStatus();
}

absl::Status MpiCommunicator::AllReduceSum(void* buf, int64_t count, DType dtype,
                                           const Stream& stream) {
  RETURN_IF_ERROR(Precheck("AllReduceSum", buf, count, dtype, stream));
  if (size_ == 1) return absl::OkStatus();  // the sum over one rank is the input
  const int64_t esize = DTypeSize(dtype);
  char* base = static_cast<char*>(buf);
  // Each segment: every rank's slice gathered, then the slots summed in rank order.
  return GatherSegments(base, count, esize,
                        absl::StrCat("AllReduceSum(count=", count, ", ", DTypeName(dtype), ")"),
                        [&](int64_t off, int64_t m, int64_t slot) {
                          void* out = base + off * esize;
                          switch (dtype) {
                            case DType::kF32:
                              SumSlots(scratch_.data(), slot, size_, m, static_cast<float*>(out));
                              break;
                            case DType::kBF16:
                              SumSlots(scratch_.data(), slot, size_, m, static_cast<bf16*>(out));
                              break;
                            case DType::kF16:
                              SumSlots(scratch_.data(), slot, size_, m, static_cast<f16*>(out));
                              break;
                          }
                        });
}

absl::Status MpiCommunicator::AllGather(const void* send, void* recv, int64_t count, DType dtype,
                                        const Stream& stream) {
  RETURN_IF_ERROR(Precheck("AllGather", send, count, dtype, stream));
  MS_CHECK_ARG(count == 0 || recv != nullptr, "AllGather: null recv buffer");
  const int64_t esize = DTypeSize(dtype);
  if (size_ == 1) {
    if (count > 0) std::memmove(recv, send, count * esize);
    return absl::OkStatus();
  }
  char* dst = static_cast<char*>(recv);
  return GatherSegments(static_cast<const char*>(send), count, esize,
                        absl::StrCat("AllGather(count=", count, ", ", DTypeName(dtype), ")"),
                        [&](int64_t off, int64_t, int64_t slot) {
                          for (int r = 0; r < size_; ++r) {
                            std::memmove(dst + (r * count + off) * esize,
                                         scratch_.data() + r * slot, slot);
                          }
                        });
}

absl::Status MpiCommunicator::Broadcast(void* buf, int64_t count, DType dtype, int root,
                                        const Stream& stream) {
  RETURN_IF_ERROR(Precheck("Broadcast", buf, count, dtype, stream));
  MS_CHECK_ARG(root >= 0 && root < size_, "Broadcast: root ", root, " outside [0, ", size_, ")");
  const absl::Time deadline = Deadline();
  const int64_t esize = DTypeSize(dtype);
  const int64_t seg_elems = std::max<int64_t>(1, kSegmentBytes / esize);
  char* base = static_cast<char*>(buf);
  for (int64_t off = 0; off < count; off += seg_elems) {
    const int64_t m = std::min(seg_elems, count - off);
    const int64_t bytes = m * esize;
    scratch_.resize(static_cast<size_t>(bytes));
    if (rank_ == root) std::memcpy(scratch_.data(), base + off * esize, bytes);
    MPI_Request req;
    MPI_RETURN_IF_ERROR(
        MPI_Ibcast(scratch_.data(), static_cast<int>(bytes), MPI_BYTE, root, comm_, &req));
    RETURN_IF_ERROR(Wait(
        &req, deadline,
        absl::StrCat("Broadcast(count=", count, ", ", DTypeName(dtype), ", root=", root, ")")));
    if (rank_ != root) std::memcpy(base + off * esize, scratch_.data(), bytes);
  }
  return absl::OkStatus();
}

absl::Status MpiCommunicator::Barrier(const Stream& stream) {
  RETURN_IF_ERROR(Precheck("Barrier", nullptr, 0, DType::kF32, stream));
  MPI_Request req;
  MPI_RETURN_IF_ERROR(MPI_Ibarrier(comm_, &req));
  return Wait(&req, Deadline(), "Barrier");
}

absl::StatusOr<std::unique_ptr<Communicator>> MpiCommunicator::Split(int color, int key) {
  if (!broken_.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("Split: communicator is broken by an earlier error: ", broken_.ToString()));
  }
  MPI_Comm sub;
  MPI_RETURN_IF_ERROR(MPI_Comm_split(comm_, color, key, &sub));
  if (sub == MPI_COMM_NULL) {
    return absl::InvalidArgumentError("Split: MPI_UNDEFINED color gives no communicator");
  }
  absl::StatusOr<std::unique_ptr<Communicator>> c = CreateMpiCommunicator(sub);
  MPI_Comm_free(&sub);
  if (c.ok()) (*c)->set_timeout(timeout_);
  return c;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateMpiCommunicator(MPI_Comm comm) {
  int initialized = 0;
  MPI_RETURN_IF_ERROR(MPI_Initialized(&initialized));
  if (!initialized) return absl::FailedPreconditionError("CreateMpiCommunicator before InitMpi");
  MPI_Comm dup;
  MPI_RETURN_IF_ERROR(MPI_Comm_dup(comm, &dup));
  MPI_RETURN_IF_ERROR(MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN));
  int rank = 0, size = 0;
  MPI_RETURN_IF_ERROR(MPI_Comm_rank(dup, &rank));
  MPI_RETURN_IF_ERROR(MPI_Comm_size(dup, &size));
  return std::unique_ptr<Communicator>(new MpiCommunicator(dup, rank, size));
}

}  // namespace mambaserve
