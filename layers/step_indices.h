// The index arrays of one step, laid out on the host as one int32 array so that a single copy
// uploads them: token ids, decode blocks, prefill cu_seqlens / initial / final blocks, the rows
// whose logits are wanted, and for kernel-written prefix caching the boundary lists and the
// rows of each boundary's conv window. Bind() points a StepBatch at the uploaded copy.
#ifndef MAMBASERVE_LAYERS_STEP_INDICES_H_
#define MAMBASERVE_LAYERS_STEP_INDICES_H_

#include <cstdint>
#include <vector>

#include "layers/step_context.h"

namespace mambaserve {

struct ForwardInput;

struct StepIndices {
  std::vector<int32_t> data;
  int64_t num_tokens = 0;
  int64_t num_decode = 0;
  int64_t num_prefill = 0;
  int64_t logit_rows = 0;    // rows of logits: tokens (all_logits) or sequences
  bool select_rows = false;  // gather each sequence's last row first (a prefill is longer than 1)
  size_t off_decode = 0, off_cu = 0, off_init = 0, off_final = 0, off_rows = 0;
  // Kernel-written prefix caching (boundary_block_size > 0).
  int64_t boundary_block_size = 0;
  size_t off_po32 = 0, off_ssd_off = 0, off_ssd_blocks = 0, off_m1 = 0, off_po64 = 0;
  int64_t m1_stride = 0;
  struct Window {
    int32_t dst = 0, init = 0;
    int64_t n_init = 0, n_x = 0;
    size_t init_off = 0, x_off = 0;
  };
  std::vector<Window> windows;

  // The StepBatch whose pointers address `device_data`, the uploaded copy of `data`.
  StepBatch Bind(const int32_t* device_data) const;
};

// `in` must have passed MambaModel's validation; `d_conv` is the model's conv width.
StepIndices BuildStepIndices(const ForwardInput& in, int64_t d_conv);

}  // namespace mambaserve

#endif  // MAMBASERVE_LAYERS_STEP_INDICES_H_
