#include "launcher/step_plan.h"

#include <mpi.h>

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/mpi_status.h"
#include "core/status_macros.h"

namespace mambaserve {
namespace {

void PutVec(std::vector<int32_t>& out, const std::vector<int32_t>& v) {
  out.push_back(static_cast<int32_t>(v.size()));
  out.insert(out.end(), v.begin(), v.end());
}

class Reader {
 public:
  explicit Reader(const std::vector<int32_t>& d) : d_(d) {}
  absl::StatusOr<int32_t> Next() {
    if (pos_ >= d_.size()) return absl::DataLossError("step plan truncated");
    return d_[pos_++];
  }
  absl::StatusOr<std::vector<int32_t>> Vec() {
    ASSIGN_OR_RETURN(int32_t n, Next());
    if (n < 0 || pos_ + static_cast<size_t>(n) > d_.size()) {
      return absl::DataLossError("step plan truncated");
    }
    std::vector<int32_t> v(d_.begin() + static_cast<long>(pos_),
                           d_.begin() + static_cast<long>(pos_) + n);
    pos_ += static_cast<size_t>(n);
    return v;
  }
  bool done() const { return pos_ == d_.size(); }

 private:
  const std::vector<int32_t>& d_;
  size_t pos_ = 0;
};

template <typename F>
absl::Status PollUntilDone(MPI_Request* req, F&& idle) {
  int done = 0;
  while (true) {
    MPI_RETURN_IF_ERROR(MPI_Test(req, &done, MPI_STATUS_IGNORE));
    if (done) return absl::OkStatus();
    idle();
  }
}

}  // namespace

std::vector<int32_t> SerializeStepPlan(const StepPlanMessage& m) {
  std::vector<int32_t> out{static_cast<int32_t>(m.kind)};
  out.push_back(static_cast<int32_t>(m.copies.size()));
  for (const auto& c : m.copies) {
    PutVec(out, c.block_ids);
    out.push_back(static_cast<int32_t>(c.cur));
    out.push_back(static_cast<int32_t>(c.num_accepted));
    out.push_back(c.dst);
  }
  PutVec(out, m.zero_blocks);
  PutVec(out, m.input.token_ids);
  PutVec(out, m.input.seq_lens);
  out.push_back(static_cast<int32_t>(m.input.num_decode));
  PutVec(out, m.input.initial_blocks);
  PutVec(out, m.input.final_blocks);
  out.push_back(m.input.all_logits ? 1 : 0);
  out.push_back(static_cast<int32_t>(m.input.boundary_block_size));
  PutVec(out, m.input.prefix_offsets);
  out.push_back(static_cast<int32_t>(m.input.boundary_blocks.size()));
  for (const auto& b : m.input.boundary_blocks) PutVec(out, b);
  return out;
}

absl::StatusOr<StepPlanMessage> ParseStepPlan(const std::vector<int32_t>& data) {
  Reader r(data);
  StepPlanMessage m;
  ASSIGN_OR_RETURN(int32_t kind, r.Next());
  if (kind != StepPlanMessage::kStep && kind != StepPlanMessage::kStop) {
    return absl::DataLossError(absl::StrCat("step plan of unknown kind ", kind));
  }
  m.kind = static_cast<StepPlanMessage::Kind>(kind);
  ASSIGN_OR_RETURN(int32_t ncopies, r.Next());
  for (int32_t i = 0; i < ncopies; ++i) {
    BlockCopy c;
    ASSIGN_OR_RETURN(c.block_ids, r.Vec());
    ASSIGN_OR_RETURN(int32_t cur, r.Next());
    ASSIGN_OR_RETURN(int32_t acc, r.Next());
    ASSIGN_OR_RETURN(c.dst, r.Next());
    c.cur = cur;
    c.num_accepted = acc;
    m.copies.push_back(std::move(c));
  }
  ASSIGN_OR_RETURN(m.zero_blocks, r.Vec());
  ASSIGN_OR_RETURN(m.input.token_ids, r.Vec());
  ASSIGN_OR_RETURN(m.input.seq_lens, r.Vec());
  ASSIGN_OR_RETURN(int32_t nd, r.Next());
  m.input.num_decode = nd;
  ASSIGN_OR_RETURN(m.input.initial_blocks, r.Vec());
  ASSIGN_OR_RETURN(m.input.final_blocks, r.Vec());
  ASSIGN_OR_RETURN(int32_t all, r.Next());
  m.input.all_logits = all != 0;
  ASSIGN_OR_RETURN(int32_t bs, r.Next());
  m.input.boundary_block_size = bs;
  ASSIGN_OR_RETURN(m.input.prefix_offsets, r.Vec());
  ASSIGN_OR_RETURN(int32_t nb, r.Next());
  if (nb < 0) return absl::DataLossError("step plan has a negative list count");
  for (int32_t i = 0; i < nb; ++i) {
    ASSIGN_OR_RETURN(std::vector<int32_t> b, r.Vec());
    m.input.boundary_blocks.push_back(std::move(b));
  }
  if (!r.done()) return absl::DataLossError("step plan has trailing data");
  return m;
}

absl::Status BroadcastStepPlan(const StepPlanMessage& m) {
  std::vector<int32_t> data = SerializeStepPlan(m);
  int64_t n = static_cast<int64_t>(data.size());
  // The size goes out as a nonblocking broadcast because the receivers poll for it (a
  // nonblocking collective never matches a blocking one).
  MPI_Request req;
  MPI_RETURN_IF_ERROR(MPI_Ibcast(&n, 1, MPI_INT64_T, 0, MPI_COMM_WORLD, &req));
  MPI_RETURN_IF_ERROR(MPI_Wait(&req, MPI_STATUS_IGNORE));
  MPI_RETURN_IF_ERROR(MPI_Bcast(data.data(), static_cast<int>(n), MPI_INT32_T, 0, MPI_COMM_WORLD));
  return absl::OkStatus();
}

absl::StatusOr<StepPlanMessage> ReceiveStepPlan() {
  int64_t n = 0;
  MPI_Request req;
  MPI_RETURN_IF_ERROR(MPI_Ibcast(&n, 1, MPI_INT64_T, 0, MPI_COMM_WORLD, &req));
  // Idle between steps costs a 200 us sleep per poll instead of a spinning core.
  RETURN_IF_ERROR(
      PollUntilDone(&req, [] { std::this_thread::sleep_for(std::chrono::microseconds(200)); }));
  std::vector<int32_t> data(static_cast<size_t>(n));
  MPI_RETURN_IF_ERROR(MPI_Bcast(data.data(), static_cast<int>(n), MPI_INT32_T, 0, MPI_COMM_WORLD));
  return ParseStepPlan(data);
}

}  // namespace mambaserve
