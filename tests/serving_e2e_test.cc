// End to end: `mpirun -np 2 mambaserve` on the CPU with a golden checkpoint, driven over gRPC by
// concurrent clients. Outputs must equal single-rank greedy generation; cancellation frees
// blocks; bad requests get the right codes and the server keeps serving; SIGTERM finishes
// in-flight work and exits 0; a dead rank takes the whole job down with a non-zero exit.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "configs/model_config.h"
#include "gtest/gtest.h"
#include "launcher/client.h"
#include "layers/generate.h"
#include "layers/mamba_model.h"
#include "tests/server_process.h"

namespace mambaserve {
namespace {

const std::string kModel = std::string(MAMBASERVE_TEST_DATA_DIR) + "/golden/m2_g1";

std::string TempPath(const std::string& name) {
  return "/tmp/mambaserve_e2e_" + std::to_string(getpid()) + "_" + name;
}

// A small queue and batch so the limits are reachable from a test.
constexpr char kConfig[] = R"pb(
  parallel { backend: "mpi" collective_timeout_s: 30 }
  cache { block_size: 32 memory_budget_mb: 16 conv_layout: "SD" enable_prefix_caching: true }
  server {
    serving_dtype: "float32"
    max_batch_size: 4
    max_num_batched_tokens: 256
    max_queue_length: 6
    max_new_tokens_limit: 512
    max_prompt_tokens: 1024
  }
)pb";

std::vector<int32_t> PromptFor(int i, int len) {
  std::vector<int32_t> p;
  for (int t = 0; t < len; ++t) p.push_back((i * 131 + t * 17 + 3) % 512);
  return p;
}

api::GenerateRequest Request(const std::vector<int32_t>& prompt, int max_new) {
  api::GenerateRequest r;
  for (int32_t t : prompt) r.add_prompt_ids(t);
  r.set_max_new_tokens(max_new);
  return r;
}

class ServingE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Reference: the same checkpoint, one rank, in process.
    auto cfg = ReadModelConfig(kModel);
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    auto weights = CheckpointWeights::Open(kModel);
    ASSERT_TRUE(weights.ok());
    auto model = MambaModel::Load(*cfg, **weights, Device::Cpu(), DType::kF32, nullptr);
    ASSERT_TRUE(model.ok()) << model.status();
    reference_ = model->release();
    auto pc = reference_->PoolConfig({DType::kF32, DType::kF32});
    auto pool = StatePool::Create(*pc, 4);
    ASSERT_TRUE(pool.ok());
    ref_pool_ = new StatePool(std::move(*pool));

    config_path_ = TempPath("config.textproto");
    std::ofstream(config_path_) << kConfig;
    socket_ = "unix:" + TempPath("sock");
    server_ = new ServerProcess();
    ASSERT_TRUE(server_->Start(2,
                               {"--model", kModel, "--config", config_path_, "--listen", socket_},
                               TempPath("server.log")));
    client_ = new MambaServeClient(socket_);
    ASSERT_TRUE(client_->WaitUntilServing(absl::Seconds(60)).ok())
        << "server did not come up; see " << TempPath("server.log");
  }
  static void TearDownTestSuite() {
    delete client_;
    delete server_;
    delete ref_pool_;
    delete reference_;
  }

  static std::vector<int32_t> Expected(const std::vector<int32_t>& prompt, int max_new) {
    auto out = GreedyGenerate(*reference_, *ref_pool_, {prompt}, max_new);
    EXPECT_TRUE(out.ok()) << out.status();
    return std::vector<int32_t>(out->at(0).begin() + static_cast<long>(prompt.size()),
                                out->at(0).end());
  }

  static MambaModel* reference_;
  static StatePool* ref_pool_;
  static ServerProcess* server_;
  static MambaServeClient* client_;
  static std::string config_path_, socket_;
};

MambaModel* ServingE2E::reference_ = nullptr;
StatePool* ServingE2E::ref_pool_ = nullptr;
ServerProcess* ServingE2E::server_ = nullptr;
MambaServeClient* ServingE2E::client_ = nullptr;
std::string ServingE2E::config_path_, ServingE2E::socket_;

TEST_F(ServingE2E, ConcurrentClientsGetSingleRankGreedyOutputs) {
  constexpr int kClients = 6;
  std::vector<std::vector<int32_t>> prompts, got(kClients);
  // Lengths around the block size (32), some sharing a 40-token prefix (prefix-cache hits).
  for (int i = 0; i < kClients; ++i) {
    auto p = PromptFor(i % 2 == 0 ? 100 : i, 40);
    auto tail = PromptFor(i, 5 + 7 * i);
    p.insert(p.end(), tail.begin(), tail.end());
    prompts.push_back(p);
  }
  // One request first, so the shared prefix is cached (a block cached in a step is served only
  // from the next step on, so requests admitted together would all miss).
  auto first = client_->Generate(Request(prompts[0], 12));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->tokens, Expected(prompts[0], 12));
  std::vector<std::thread> threads;
  std::vector<absl::Status> status(kClients);
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      auto r = client_->Generate(Request(prompts[i], 12));
      status[i] = r.status();
      if (r.ok()) got[i] = r->tokens;
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kClients; ++i) {
    ASSERT_TRUE(status[i].ok()) << status[i];
    EXPECT_EQ(got[i], Expected(prompts[i], 12)) << "client " << i;
  }
  // The repeated prefix was served from the cache at least once.
  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_GT(stats->prefix_cache_hits(), 0);
}

TEST_F(ServingE2E, BadRequestsGetInvalidArgumentAndServingContinues) {
  auto oov = client_->Generate(Request({1, 2, 512}, 4));
  EXPECT_EQ(oov.status().code(), absl::StatusCode::kInvalidArgument) << oov.status();
  auto empty = client_->Generate(Request({}, 4));
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  auto too_long = client_->Generate(Request({1, 2}, 100000));
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  auto zero = client_->Generate(Request({1, 2}, 0));
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  auto bad_sampling = Request({1, 2}, 4);
  bad_sampling.mutable_sampling()->set_top_p(1.5f);
  EXPECT_EQ(client_->Generate(bad_sampling).status().code(), absl::StatusCode::kInvalidArgument);
  auto ok = client_->Generate(Request({7, 8, 9}, 5));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->tokens, Expected({7, 8, 9}, 5));
}

TEST_F(ServingE2E, StopTokenEndsTheStream) {
  const auto prompt = PromptFor(42, 10);
  const auto full = Expected(prompt, 10);
  auto req = Request(prompt, 10);
  req.add_stop_token_ids(full[3]);
  auto r = client_->Generate(req);
  ASSERT_TRUE(r.ok()) << r.status();
  // Generation ends at the first occurrence of the stop token, which it includes.
  size_t first = 0;
  while (full[first] != full[3]) ++first;
  EXPECT_EQ(r->tokens, std::vector<int32_t>(full.begin(), full.begin() + first + 1));
  EXPECT_EQ(r->finish_reason, "stop");
}

TEST_F(ServingE2E, CancellationFreesBlocks) {
  // Let earlier tests' requests leave the scheduler first.
  auto before = client_->Stats();
  for (int i = 0; i < 100 && before.ok() && before->requests_running() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    before = client_->Stats();
  }
  ASSERT_TRUE(before.ok());
  // Short prompts (< one cache block) so nothing stays cached: every block comes back.
  std::atomic<int> seen{0};
  auto r = client_->Generate(Request(PromptFor(7, 9), 400), [&](const std::vector<int32_t>& t) {
    seen += static_cast<int>(t.size());
    return seen < 3;  // cancel after three tokens
  });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
  api::StatsResponse after;
  for (int i = 0; i < 100; ++i) {
    auto s = client_->Stats();
    ASSERT_TRUE(s.ok());
    after = *s;
    if (after.requests_running() == 0 && after.free_blocks() == before->free_blocks()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(after.requests_running(), 0);
  EXPECT_EQ(after.free_blocks(), before->free_blocks());
  EXPECT_EQ(after.requests_cancelled(), before->requests_cancelled() + 1);
  auto ok = client_->Generate(Request({3, 1, 4, 1, 5}, 4));
  ASSERT_TRUE(ok.ok()) << ok.status();
}

TEST_F(ServingE2E, FullQueueAnswersResourceExhausted) {
  // 4 run at once and 6 may wait: 16 long requests at once overflow the queue.
  constexpr int kFlood = 16;
  std::vector<std::thread> threads;
  std::vector<absl::StatusCode> codes(kFlood);
  for (int i = 0; i < kFlood; ++i) {
    threads.emplace_back(
        [&, i] { codes[i] = client_->Generate(Request(PromptFor(i, 20), 60)).status().code(); });
  }
  for (auto& t : threads) t.join();
  int ok = 0, exhausted = 0;
  for (auto c : codes) {
    ok += c == absl::StatusCode::kOk;
    exhausted += c == absl::StatusCode::kResourceExhausted;
  }
  EXPECT_EQ(ok + exhausted, kFlood);
  EXPECT_GE(ok, 4);
  EXPECT_GE(exhausted, 1);
  auto after = client_->Generate(Request({2, 7, 1, 8}, 3));
  ASSERT_TRUE(after.ok()) << after.status();
}

TEST_F(ServingE2E, InfoDescribesTheDeployment) {
  auto info = client_->Info();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->architecture(), "Mamba2ForCausalLM");
  EXPECT_EQ(info->tp_size(), 2);
  EXPECT_EQ(info->vocab_size(), 512);
  EXPECT_GT(info->pool_blocks(), 8);
}

// Runs last (gtest keeps declaration order within a file): a drain signal with a request in
// flight. mpirun forwards SIGUSR1 to every rank (its own SIGTERM kills the job instead).
TEST_F(ServingE2E, ZzDrainSignalFinishesInFlightRequestsAndExitsZero) {
  const auto prompt = PromptFor(9, 12);
  std::vector<int32_t> got;
  absl::Status st;
  std::atomic<int> seen{0};
  std::thread t([&] {
    auto r = client_->Generate(Request(prompt, 60), [&](const std::vector<int32_t>& toks) {
      seen += static_cast<int>(toks.size());
      return true;
    });
    st = r.status();
    if (r.ok()) got = r->tokens;
  });
  while (seen == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const int rc = server_->StopWith(SIGUSR1, std::chrono::seconds(60));
  t.join();
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(got, Expected(prompt, 60));
  EXPECT_EQ(rc, 0);
}

TEST(ServingRankFailure, DeadRankTakesTheJobDown) {
  const std::string sock = "unix:" + TempPath("sock_fail");
  const std::string cfg = TempPath("config_fail.textproto");
  std::ofstream(cfg) << kConfig;
  ServerProcess server;
  ASSERT_TRUE(server.Start(2, {"--model", kModel, "--config", cfg, "--listen", sock},
                           TempPath("server_fail.log")));
  MambaServeClient client(sock);
  ASSERT_TRUE(client.WaitUntilServing(absl::Seconds(60)).ok());
  std::vector<pid_t> ranks = server.RankPids();
  ASSERT_EQ(ranks.size(), 2u);
  kill(ranks[1], SIGKILL);
  const int rc = server.Wait(std::chrono::seconds(20));
  EXPECT_NE(rc, 0);
  EXPECT_NE(rc, -1) << "the job was still running 20 s after a rank died";
}

}  // namespace
}  // namespace mambaserve
