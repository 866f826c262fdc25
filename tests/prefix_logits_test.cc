// Prefix caching at the model level: the logits of a prompt's tail computed from a cached
// prefix state (copied into a fresh block, as the engine does on a hit) equal the logits of the
// same tokens in a full recomputation, for both ways of producing the cached state: a prefill
// chunk that ends on a block boundary ("align") and the state the scans write at every block
// boundary inside one long prefill ("all", kernel-written). Mamba-1 and Mamba-2 golden models,
// every rank count of the run (CPU communicator in CI, NCCL on the GPU machine).
#include <cmath>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "configs/model_config.h"
#include "core/rel_error.h"
#include "gtest/gtest.h"
#include "layers/mamba_model.h"
#include "parallel/communicator.h"
#include "parallel/mpi_context.h"
#include "state_manager/copy_spec.h"

namespace mambaserve {
namespace {

const std::string kGolden = std::string(MAMBASERVE_TEST_DATA_DIR) + "/golden/";

class PrefixLogitsTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PrefixLogitsTest, TailFromCachedStateEqualsFullRecompute) {
  const std::string dir = kGolden + GetParam();
  auto cfg = ReadModelConfig(dir);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  auto weights = CheckpointWeights::Open(dir);
  ASSERT_TRUE(weights.ok());
  auto comm = CreateTpCommunicator();
  ASSERT_TRUE(comm.ok());
  auto model = MambaModel::Load(*cfg, **weights, GetMpiContext()->device, DType::kF32, comm->get());
  ASSERT_TRUE(model.ok()) << model.status();
  auto pc = (*model)->PoolConfig({DType::kF32, DType::kF32});
  ASSERT_TRUE(pc.ok());
  auto pool = StatePool::Create(*pc, 10);
  ASSERT_TRUE(pool.ok());
  auto copier = CopyExecutor::Create((*model)->device());
  ASSERT_TRUE(copier.ok());
  auto copy_block = [&](int32_t src, int32_t dst) {
    std::vector<BlockCopy> copies{BlockCopy::Whole(src, dst)};
    auto specs = BuildStepCopySpecs(*pool, copies);
    ASSERT_TRUE(specs.ok()) << specs.status();
    ASSERT_TRUE(copier->Run(*specs, (*model)->stream()).ok());
  };

  // Block size: a multiple of the chunk size (Mamba-2) and at least the conv window.
  const int64_t B = cfg->architecture() == config::MAMBA2 ? cfg->chunk_size() : 16;
  const int64_t L = 3 * B + 5, vocab = cfg->vocab_size();
  std::mt19937 rng(11);
  std::vector<int32_t> prompt(L);
  for (auto& t : prompt) t = static_cast<int32_t>(rng() % vocab);

  // Full recomputation; the kernel-written run also leaves the states at B, 2B and 3B.
  ForwardInput full;
  full.token_ids = prompt;
  full.seq_lens = {static_cast<int32_t>(L)};
  full.initial_blocks = {0};
  full.final_blocks = {1};
  full.all_logits = true;
  full.boundary_block_size = B;
  full.prefix_offsets = {0};
  full.boundary_blocks = {{4, 5, 6}};
  std::vector<float> want;
  ASSERT_TRUE((*model)->Forward(full, *pool, &want).ok());

  auto tail_logits = [&](int32_t from_block, int64_t start) {
    ForwardInput tail;
    tail.token_ids.assign(prompt.begin() + start, prompt.end());
    tail.seq_lens = {static_cast<int32_t>(L - start)};
    tail.initial_blocks = {from_block};
    tail.final_blocks = {from_block};
    tail.all_logits = true;
    std::vector<float> got;
    EXPECT_TRUE((*model)->Forward(tail, *pool, &got).ok());
    return got;
  };
  const size_t tail_values = static_cast<size_t>((L - 2 * B) * vocab);
  const float* want_tail = want.data() + 2 * B * vocab;

  // "align": a prefill chunk of the first 2B tokens leaves the cached state in block 2.
  ForwardInput prefix;
  prefix.token_ids.assign(prompt.begin(), prompt.begin() + 2 * B);
  prefix.seq_lens = {static_cast<int32_t>(2 * B)};
  prefix.initial_blocks = {0};
  prefix.final_blocks = {2};
  std::vector<float> unused;
  ASSERT_TRUE((*model)->Forward(prefix, *pool, &unused).ok());
  copy_block(2, 3);
  const std::vector<float> align = tail_logits(3, 2 * B);
  ASSERT_EQ(align.size(), tail_values);
  // fp32; only the chunking of the scan and the conv window's source differ: ~1e-6.
  EXPECT_LT(RelRmsError(align, std::span<const float>(want_tail, tail_values)), 1e-4)
      << "align mode";

  // "all": the state the scan wrote at token 2B of the full prefill (block 5).
  copy_block(5, 7);
  const std::vector<float> all = tail_logits(7, 2 * B);
  ASSERT_EQ(all.size(), tail_values);
  EXPECT_LT(RelRmsError(all, std::span<const float>(want_tail, tail_values)), 1e-4)
      << "kernel-written mode";
}

INSTANTIATE_TEST_SUITE_P(Golden, PrefixLogitsTest,
                         ::testing::Values("m2_g1", "m2_g2_w3_untied", "m1_tiny",
                                           "m1_w3_bias_untied"));

}  // namespace
}  // namespace mambaserve
