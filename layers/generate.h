// Greedy generation on a loaded model: a batch of prompts prefilled together, then decoded step
// by step, each sequence in its own state block. Used by the generate tool and the golden tests;
// the serving engine has its own scheduler.
#ifndef MAMBASERVE_LAYERS_GENERATE_H_
#define MAMBASERVE_LAYERS_GENERATE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "layers/mamba_model.h"
#include "state_manager/state_pool.h"

namespace mambaserve {

// Returns, per prompt, the prompt followed by `max_new_tokens` greedy tokens. Prompt i uses state
// block first_block + i (which is overwritten). Ties in the argmax go to the lowest id.
absl::StatusOr<std::vector<std::vector<int32_t>>> GreedyGenerate(
    MambaModel& model, StatePool& pool, const std::vector<std::vector<int32_t>>& prompts,
    int64_t max_new_tokens, int32_t first_block = 1);

int32_t ArgMax(const float* logits, int64_t n);

}  // namespace mambaserve

#endif  // MAMBASERVE_LAYERS_GENERATE_H_
