#include "layers/generate.h"

#include "core/status_macros.h"

namespace mambaserve {

int32_t ArgMax(const float* logits, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

absl::StatusOr<std::vector<std::vector<int32_t>>> GreedyGenerate(
    MambaModel& model, StatePool& pool, const std::vector<std::vector<int32_t>>& prompts,
    int64_t max_new_tokens, int32_t first_block) {
  const int64_t S = static_cast<int64_t>(prompts.size());
  MS_CHECK_ARG(S > 0, "no prompts");
  MS_CHECK_ARG(first_block >= 1 && first_block + S <= pool.num_blocks(), "pool of ",
               pool.num_blocks(), " blocks cannot hold ", S, " sequences from block ", first_block);
  const int64_t V = model.config().vocab_size();
  std::vector<std::vector<int32_t>> out = prompts;
  ForwardInput prefill;
  for (int64_t s = 0; s < S; ++s) {
    prefill.token_ids.insert(prefill.token_ids.end(), prompts[s].begin(), prompts[s].end());
    prefill.seq_lens.push_back(static_cast<int32_t>(prompts[s].size()));
    prefill.initial_blocks.push_back(0);
    prefill.final_blocks.push_back(first_block + static_cast<int32_t>(s));
  }
  std::vector<float> logits;
  if (max_new_tokens <= 0) return out;
  RETURN_IF_ERROR(model.Forward(prefill, pool, &logits));
  for (int64_t s = 0; s < S; ++s) out[s].push_back(ArgMax(logits.data() + s * V, V));
  ForwardInput decode;
  decode.num_decode = S;
  decode.seq_lens.assign(static_cast<size_t>(S), 1);
  for (int64_t s = 0; s < S; ++s) {
    decode.initial_blocks.push_back(first_block + static_cast<int32_t>(s));
  }
  decode.final_blocks = decode.initial_blocks;
  for (int64_t step = 1; step < max_new_tokens; ++step) {
    decode.token_ids.clear();
    for (int64_t s = 0; s < S; ++s) decode.token_ids.push_back(out[s].back());
    RETURN_IF_ERROR(model.Forward(decode, pool, &logits));
    for (int64_t s = 0; s < S; ++s) out[s].push_back(ArgMax(logits.data() + s * V, V));
  }
  return out;
}

}  // namespace mambaserve
