// Tensor parallelism: a model sharded over all MPI ranks gives the same logits as the unsharded
// model (every rank also runs tp = 1 on its own), on the same seeded random weights, for every
// Mamba-2 group layout (G divisible by tp, the extra-group replication rule, heads straddling
// groups) and for Mamba-1. Run under mpirun -np 1, 2, 4.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/rel_error.h"
#include "gtest/gtest.h"
#include "layers/mamba_model.h"
#include "layers/weight_source.h"
#include "parallel/communicator.h"
#include "parallel/mpi_context.h"

namespace mambaserve {
namespace {

struct Case {
  const char* name;
  config::Architecture arch;
  int64_t heads, head_dim, groups, d_state, d_conv;
};

config::ModelConfig MakeConfig(const Case& c) {
  config::ModelConfig m;
  m.set_architecture(c.arch);
  m.set_vocab_size(97);  // not divisible by 2 or 4: exercises the vocab padding
  m.set_d_model(48);
  m.set_n_layers(2);
  m.set_d_state(c.d_state);
  m.set_d_conv(c.d_conv);
  m.set_expand(2);
  m.set_norm_eps(1e-5);
  m.set_residual_in_fp32(true);
  m.set_tie_embeddings(false);
  m.set_conv_bias(true);
  if (c.arch == config::MAMBA2) {
    m.set_num_heads(c.heads);
    m.set_head_dim(c.head_dim);
    m.set_n_groups(c.groups);
    m.set_d_inner(c.heads * c.head_dim);
    m.set_chunk_size(16);
    m.set_dt_limit_min(0.0);
    m.set_dt_limit_max(INFINITY);
  } else {
    m.set_d_inner(96);
    m.set_dt_rank(6);
  }
  return m;
}

// Runs a prefill of two sequences (19 and 7 tokens) then two decode steps; returns all logits.
std::vector<float> RunSteps(MambaModel& model) {
  auto pc = model.PoolConfig({DType::kF32, DType::kF32});
  EXPECT_TRUE(pc.ok()) << pc.status();
  auto pool = StatePool::Create(*pc, 4);
  EXPECT_TRUE(pool.ok()) << pool.status();
  std::vector<float> all, logits;
  ForwardInput in;
  for (int i = 0; i < 26; ++i) in.token_ids.push_back((i * 37 + 11) % 97);
  in.seq_lens = {19, 7};
  in.initial_blocks = {0, 0};
  in.final_blocks = {1, 2};
  in.all_logits = true;
  EXPECT_TRUE(model.Forward(in, *pool, &all).ok());
  for (int step = 0; step < 2; ++step) {
    ForwardInput d;
    d.token_ids = {5 + step, 60 - step};
    d.seq_lens = {1, 1};
    d.num_decode = 2;
    d.initial_blocks = {1, 2};
    d.final_blocks = {1, 2};
    EXPECT_TRUE(model.Forward(d, *pool, &logits).ok());
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

class TpModelTest : public ::testing::TestWithParam<Case> {};

TEST_P(TpModelTest, ShardedEqualsUnsharded) {
  const Case& c = GetParam();
  const MpiContext* mpi = GetMpiContext();
  ASSERT_NE(mpi, nullptr);
  if (c.arch == config::MAMBA2 && c.heads % mpi->world_size != 0) {
    GTEST_SKIP() << c.name << ": " << c.heads << " heads do not split over " << mpi->world_size
                 << " ranks";
  }
  auto world = CreateTpCommunicator();
  ASSERT_TRUE(world.ok()) << world.status();
  auto solo = (*world)->Split(/*color=*/mpi->world_rank, /*key=*/0);
  ASSERT_TRUE(solo.ok()) << solo.status();
  const config::ModelConfig m = MakeConfig(c);
  RandomWeights weights(m, /*seed=*/1234);
  auto sharded = MambaModel::Load(m, weights, mpi->device, DType::kF32, world->get());
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  auto single = MambaModel::Load(m, weights, mpi->device, DType::kF32, solo->get());
  ASSERT_TRUE(single.ok()) << single.status();
  const std::vector<float> a = RunSteps(**sharded);
  const std::vector<float> b = RunSteps(**single);
  ASSERT_EQ(a.size(), b.size());
  // fp32: sharding only changes summation order (partial sums over ranks), ~1e-7 per op.
  EXPECT_LT(RelRmsError(a, b), 1e-5) << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, TpModelTest,
    ::testing::Values(Case{"m2_g4_divisible", config::MAMBA2, 8, 8, 4, 16, 4},
                      Case{"m2_g1_replicated", config::MAMBA2, 8, 8, 1, 16, 4},
                      Case{"m2_g2_replicated_at_tp4", config::MAMBA2, 8, 8, 2, 16, 3},
                      Case{"m2_h12_g3_straddling", config::MAMBA2, 12, 8, 3, 16, 4},
                      Case{"m1", config::MAMBA1, 0, 0, 0, 16, 4},
                      Case{"m1_conv2", config::MAMBA1, 0, 0, 0, 8, 2}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace mambaserve
