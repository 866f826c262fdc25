#include "layers/step_context.h"

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace mambaserve {

absl::StatusOr<void*> Workspace::Get(int slot, int64_t bytes) {
  if (slot >= static_cast<int>(slots_.size())) slots_.resize(static_cast<size_t>(slot) + 1);
  Buffer& b = slots_[static_cast<size_t>(slot)];
  if (b.nbytes() < bytes) {
    if (frozen_) {
      return absl::FailedPreconditionError(
          absl::StrCat("workspace slot ", slot, " must grow from ", b.nbytes(), " to ", bytes,
                       " bytes but is frozen (its buffers are baked into CUDA graphs)"));
    }
    // Grow by half again so a slowly growing batch does not reallocate every step.
    ASSIGN_OR_RETURN(b, Buffer::Allocate(device_, std::max<int64_t>(bytes, b.nbytes() * 3 / 2)));
  }
  return b.data();
}

}  // namespace mambaserve
