// One engine step as rank 0 broadcasts it to every rank: the state copies to run, the blocks to
// zero, and the model's batch. Serialised as a flat int32 array (one MPI_Ibcast of a size, one
// of the payload).
#ifndef MAMBASERVE_LAUNCHER_STEP_PLAN_H_
#define MAMBASERVE_LAUNCHER_STEP_PLAN_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "layers/mamba_model.h"
#include "state_manager/copy_spec.h"

namespace mambaserve {

struct StepPlanMessage {
  enum Kind : int32_t { kStep = 1, kStop = 2 };
  Kind kind = kStep;
  std::vector<BlockCopy> copies;
  std::vector<int32_t> zero_blocks;
  ForwardInput input;
};

std::vector<int32_t> SerializeStepPlan(const StepPlanMessage& m);
absl::StatusOr<StepPlanMessage> ParseStepPlan(const std::vector<int32_t>& data);

// Rank 0: sends `m` to every rank of MPI_COMM_WORLD. Others: receives it, polling (with short
// sleeps) instead of spinning in a blocking collective while the server is idle.
absl::Status BroadcastStepPlan(const StepPlanMessage& m);
absl::StatusOr<StepPlanMessage> ReceiveStepPlan();

}  // namespace mambaserve

#endif  // MAMBASERVE_LAUNCHER_STEP_PLAN_H_
