// The engine with prefix caching on a small state pool (so blocks are evicted and requests wait
// or are preempted) gives exactly the tokens of plain greedy generation without any cache, for a
// stream of requests that share prefixes; and no block leaks. Rank 0 runs the engine, the other
// ranks execute its broadcast steps (mpirun -np 1 and 2).
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "configs/model_config.h"
#include "gtest/gtest.h"
#include "launcher/engine.h"
#include "layers/generate.h"
#include "layers/mamba_model.h"
#include "parallel/communicator.h"
#include "parallel/mpi_context.h"

namespace mambaserve {
namespace {

const std::string kGolden = std::string(MAMBASERVE_TEST_DATA_DIR) + "/golden/";

// (fixture, kernel-written states: vLLM's "all" mode instead of "align", DS conv layout)
class EnginePrefixTest : public ::testing::TestWithParam<std::tuple<std::string, bool, bool>> {};

TEST_P(EnginePrefixTest, CachedServingEqualsRecomputation) {
  const MpiContext* mpi = GetMpiContext();
  const std::string dir = kGolden + std::get<0>(GetParam());
  auto cfg = ReadModelConfig(dir);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  auto weights = CheckpointWeights::Open(dir);
  ASSERT_TRUE(weights.ok());
  auto world = CreateTpCommunicator();
  ASSERT_TRUE(world.ok());
  // Collective over every rank, so made before the ranks' roles diverge.
  auto solo = (*world)->Split(mpi->world_rank, 0);
  ASSERT_TRUE(solo.ok());
  auto model = MambaModel::Load(*cfg, **weights, mpi->device, DType::kF32, world->get());
  ASSERT_TRUE(model.ok()) << model.status();
  const ConvLayout layout = std::get<2>(GetParam()) ? ConvLayout::kDS : ConvLayout::kSD;
  auto pc = (*model)->PoolConfig({DType::kF32, DType::kF32}, layout);
  ASSERT_TRUE(pc.ok());
  // 10 blocks: 9 usable, fewer than the prefix states the stream would keep cached.
  auto pool = StatePool::Create(*pc, 10);
  ASSERT_TRUE(pool.ok());

  // Requests: six shared prefixes (33..100 tokens) with short random tails.
  const int64_t vocab = cfg->vocab_size();
  std::mt19937 rng(5);
  std::vector<std::vector<int32_t>> prefixes;
  for (int len : {33, 40, 64, 70, 96, 100}) {
    std::vector<int32_t> p;
    for (int i = 0; i < len; ++i) p.push_back(static_cast<int32_t>(rng() % vocab));
    prefixes.push_back(p);
  }
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 30; ++i) {
    std::vector<int32_t> p = prefixes[rng() % prefixes.size()];
    const int tail = static_cast<int>(rng() % 20);
    for (int t = 0; t < tail; ++t) p.push_back(static_cast<int32_t>(rng() % vocab));
    prompts.push_back(p);
  }
  constexpr int kNew = 6;

  if (mpi->world_rank != 0) {
    ASSERT_TRUE(RunWorker(**model, *pool).ok());
    return;
  }
  EngineOptions eo;
  eo.max_batch_size = 4;
  eo.max_num_batched_tokens = 80;
  eo.max_queue_length = 100;
  eo.enable_prefix_caching = true;
  eo.kernel_written_states = std::get<1>(GetParam());
  eo.block_size = 32;
  eo.chunk_size = cfg->architecture() == config::MAMBA2 ? cfg->chunk_size() : 1;
  auto engine = Engine::Create(model->get(), &*pool, eo);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const auto& p : prompts) {
    GenerateParams gp;
    gp.prompt = p;
    gp.max_new_tokens = kNew;
    auto s = (*engine)->Submit(gp);
    ASSERT_TRUE(s.ok()) << s.status();
    streams.push_back(*s);
  }
  (*engine)->BeginDrain();
  ASSERT_TRUE((*engine)->Run().ok());  // returns when all are done; stops the workers

  // Reference: greedy generation without a cache, one rank, one prompt at a time.
  auto ref = MambaModel::Load(*cfg, **weights, mpi->device, DType::kF32, solo->get());
  ASSERT_TRUE(ref.ok());
  auto ref_pc = (*ref)->PoolConfig({DType::kF32, DType::kF32});
  ASSERT_TRUE(ref_pc.ok());
  auto ref_pool = StatePool::Create(*ref_pc, 2);
  ASSERT_TRUE(ref_pool.ok());
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::vector<int32_t> got;
    RequestStream::Chunk c;
    bool finished = false;
    while (!finished && streams[i]->Pop(absl::Milliseconds(1), &c)) {
      got.insert(got.end(), c.tokens.begin(), c.tokens.end());
      finished = c.finished;
    }
    ASSERT_TRUE(finished) << "request " << i;
    auto want = GreedyGenerate(**ref, *ref_pool, {prompts[i]}, kNew);
    ASSERT_TRUE(want.ok()) << want.status();
    EXPECT_EQ(got, std::vector<int32_t>(want->at(0).begin() + static_cast<long>(prompts[i].size()),
                                        want->at(0).end()))
        << "request " << i;
  }
  const EngineStats st = (*engine)->Stats();
  EXPECT_GT(st.cache.hits, 0);
  EXPECT_GT(st.cache.evictions, 0);  // 9 blocks cannot hold every prefix state
  EXPECT_EQ(st.requests_finished, static_cast<int64_t>(prompts.size()));
  // No leak: every usable block is free or held by the cache alone.
  EXPECT_EQ(st.cache.free_blocks + st.cache.cached_blocks, pool->num_blocks() - 1);
  EXPECT_EQ(st.cache.evictable_blocks, st.cache.cached_blocks);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, EnginePrefixTest,
                         ::testing::Values(std::make_tuple("m2_g1", false, false),
                                           std::make_tuple("m2_g1", true, false),
                                           std::make_tuple("m2_g1", false, true),
                                           std::make_tuple("m1_tiny", false, false),
                                           std::make_tuple("m1_tiny", true, false),
                                           std::make_tuple("m1_tiny", false, true)),
                         [](const auto& info) {
                           return std::get<0>(info.param) +
                                  (std::get<1>(info.param) ? "_all" : "_align") +
                                  (std::get<2>(info.param) ? "_ds" : "_sd");
                         });

}  // namespace
}  // namespace mambaserve

namespace mambaserve {
namespace {

// Three sequences crossing a block boundary at once on a pool of three usable blocks: each needs
// a fresh block for the copy-into-new-block rule, none is free, so the engine must preempt one
// (free it and recompute it later) instead of stalling; outputs still equal plain greedy.
TEST(EnginePreemption, TightPoolPreemptsAndStillMatches) {
  const MpiContext* mpi = GetMpiContext();
  const std::string dir = kGolden + "m2_g1";
  auto cfg = ReadModelConfig(dir);
  auto weights = CheckpointWeights::Open(dir);
  ASSERT_TRUE(cfg.ok() && weights.ok());
  auto world = CreateTpCommunicator();
  ASSERT_TRUE(world.ok());
  auto solo = (*world)->Split(mpi->world_rank, 0);
  ASSERT_TRUE(solo.ok());
  auto model = MambaModel::Load(*cfg, **weights, mpi->device, DType::kF32, world->get());
  ASSERT_TRUE(model.ok());
  auto pc = (*model)->PoolConfig({DType::kF32, DType::kF32});
  auto pool = StatePool::Create(*pc, 4);
  ASSERT_TRUE(pool.ok());
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 3; ++i) {
    std::vector<int32_t> p;
    for (int t = 0; t < 28; ++t) p.push_back((i * 97 + t * 13 + 1) % 512);
    prompts.push_back(p);
  }
  if (mpi->world_rank != 0) {
    ASSERT_TRUE(RunWorker(**model, *pool).ok());
    return;
  }
  EngineOptions eo;
  eo.max_batch_size = 3;
  eo.max_num_batched_tokens = 128;
  eo.block_size = 32;
  eo.chunk_size = cfg->chunk_size();
  auto engine = Engine::Create(model->get(), &*pool, eo);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const auto& p : prompts) {
    GenerateParams gp;
    gp.prompt = p;
    gp.max_new_tokens = 12;  // 28 + 12 tokens cross the boundary at 32
    auto s = (*engine)->Submit(gp);
    ASSERT_TRUE(s.ok());
    streams.push_back(*s);
  }
  (*engine)->BeginDrain();
  ASSERT_TRUE((*engine)->Run().ok());
  auto ref = MambaModel::Load(*cfg, **weights, mpi->device, DType::kF32, solo->get());
  auto ref_pc = (*ref)->PoolConfig({DType::kF32, DType::kF32});
  auto ref_pool = StatePool::Create(*ref_pc, 2);
  ASSERT_TRUE(ref.ok() && ref_pool.ok());
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::vector<int32_t> got;
    RequestStream::Chunk c;
    bool finished = false;
    while (!finished && streams[i]->Pop(absl::Milliseconds(1), &c)) {
      got.insert(got.end(), c.tokens.begin(), c.tokens.end());
      finished = c.finished;
    }
    ASSERT_TRUE(finished);
    auto want = GreedyGenerate(**ref, *ref_pool, {prompts[i]}, 12);
    ASSERT_TRUE(want.ok());
    EXPECT_EQ(got, std::vector<int32_t>(want->at(0).begin() + 28, want->at(0).end())) << i;
  }
  const EngineStats st = (*engine)->Stats();
  EXPECT_EQ(st.requests_finished, 3);
  EXPECT_GT(st.preemptions, 0);
}

}  // namespace
}  // namespace mambaserve
