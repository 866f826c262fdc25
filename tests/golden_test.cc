// Golden parity: every fixture in testdata/golden (tiny Hugging Face checkpoints with logits and
// greedy tokens computed by `transformers` in float32) reproduced at tp = the MPI world size,
// on the GPU when the rank has one, else on the CPU.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "configs/model_config.h"
#include "gtest/gtest.h"
#include "layers/generate.h"
#include "layers/mamba_model.h"
#include "layers/safetensors.h"
#include "parallel/communicator.h"
#include "parallel/mpi_context.h"

namespace mambaserve {
namespace {

const std::string kGolden = std::string(MAMBASERVE_TEST_DATA_DIR) + "/golden/";

struct Golden {
  std::vector<int64_t> ids;   // [2, 40]
  std::vector<float> logits;  // [2, 40, V]
  std::vector<int64_t> greedy_prompt, greedy_out;
};

Golden ReadGolden(const std::string& dir) {
  Golden g;
  auto f = SafetensorsFile::Open(dir + "/golden.safetensors");
  EXPECT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE((*f)->ReadAsInt("input_ids", &g.ids).ok());
  EXPECT_TRUE((*f)->ReadAsFloat("logits", {}, &g.logits).ok());
  EXPECT_TRUE((*f)->ReadAsInt("greedy_prompt", &g.greedy_prompt).ok());
  EXPECT_TRUE((*f)->ReadAsInt("greedy_out", &g.greedy_out).ok());
  return g;
}

class GoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto comm = CreateTpCommunicator();
    ASSERT_TRUE(comm.ok()) << comm.status();
    comm_ = std::move(*comm);
    device_ = GetMpiContext()->device;
    dir_ = kGolden + GetParam();
    auto cfg = ReadModelConfig(dir_);
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    config_ = *cfg;
    auto src = CheckpointWeights::Open(dir_);
    ASSERT_TRUE(src.ok()) << src.status();
    auto model = MambaModel::Load(config_, **src, device_, DType::kF32, comm_.get());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    auto pc = model_->PoolConfig({DType::kF32, DType::kF32});
    ASSERT_TRUE(pc.ok()) << pc.status();
    auto pool = StatePool::Create(*pc, 8);
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = std::make_unique<StatePool>(std::move(*pool));
    golden_ = ReadGolden(dir_);
  }
  void TearDown() override {
    model_.reset();
    comm_.reset();
  }

  std::vector<int32_t> Prompt(int row, int begin, int end) const {
    std::vector<int32_t> p;
    for (int i = begin; i < end; ++i) p.push_back(static_cast<int32_t>(golden_.ids[row * 40 + i]));
    return p;
  }

  std::unique_ptr<Communicator> comm_;
  Device device_;
  std::string dir_;
  config::ModelConfig config_;
  std::unique_ptr<MambaModel> model_;
  std::unique_ptr<StatePool> pool_;
  Golden golden_;
};

// Relative L2 error of rows [row0, row0 + n) of `got` (n x V) against golden sequence s tokens.
double RelErr(const std::vector<float>& got, int64_t got_row0, const std::vector<float>& want,
              int64_t want_row0, int64_t n, int64_t V) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n * V; ++i) {
    const double d = got[got_row0 * V + i] - want[want_row0 * V + i];
    num += d * d;
    den += static_cast<double>(want[want_row0 * V + i]) * want[want_row0 * V + i];
  }
  return std::sqrt(num / den);
}

// fp32 end to end against fp32 PyTorch: differences come only from summation order (~1e-6
// relative per op, a few layers deep); 1e-4 leaves a wide margin while catching any layout or
// formula error (those give errors of order 1).
constexpr double kLogitsTol = 1e-4;

TEST_P(GoldenTest, PackedPrefillLogitsMatch) {
  ForwardInput in;
  for (int s = 0; s < 2; ++s) {
    auto p = Prompt(s, 0, 40);
    in.token_ids.insert(in.token_ids.end(), p.begin(), p.end());
    in.seq_lens.push_back(40);
    in.initial_blocks.push_back(0);
    in.final_blocks.push_back(1 + s);
  }
  in.all_logits = true;
  std::vector<float> logits;
  ASSERT_TRUE(model_->Forward(in, *pool_, &logits).ok());
  const int64_t V = config_.vocab_size();
  ASSERT_EQ(logits.size(), golden_.logits.size());
  EXPECT_LT(RelErr(logits, 0, golden_.logits, 0, 80, V), kLogitsTol);
}

TEST_P(GoldenTest, ChunkedPrefillAndDecodeContinueTheState) {
  // Prompt 1: prefill 17 tokens, prefill 13 more from the saved state (a chunk boundary that
  // is not a multiple of any chunk size), then decode the last 10 one at a time.
  const int64_t V = config_.vocab_size();
  std::vector<float> logits, all;
  ForwardInput a;
  a.token_ids = Prompt(1, 0, 17);
  a.seq_lens = {17};
  a.initial_blocks = {0};
  a.final_blocks = {3};
  a.all_logits = true;
  ASSERT_TRUE(model_->Forward(a, *pool_, &logits).ok());
  all = logits;
  ForwardInput b;
  b.token_ids = Prompt(1, 17, 30);
  b.seq_lens = {13};
  b.initial_blocks = {3};
  b.final_blocks = {4};
  b.all_logits = true;
  ASSERT_TRUE(model_->Forward(b, *pool_, &logits).ok());
  all.insert(all.end(), logits.begin(), logits.end());
  for (int t = 30; t < 40; ++t) {
    ForwardInput d;
    d.token_ids = Prompt(1, t, t + 1);
    d.seq_lens = {1};
    d.num_decode = 1;
    d.initial_blocks = {4};
    d.final_blocks = {4};
    ASSERT_TRUE(model_->Forward(d, *pool_, &logits).ok());
    all.insert(all.end(), logits.begin(), logits.end());
  }
  EXPECT_LT(RelErr(all, 0, golden_.logits, 40, 40, V), kLogitsTol);
}

TEST_P(GoldenTest, DsConvLayoutGivesTheSameTokens) {
  // The conv state stored channel-major (DS) instead of row-major (SD): same generation.
  auto pc = model_->PoolConfig({DType::kF32, DType::kF32}, ConvLayout::kDS);
  ASSERT_TRUE(pc.ok());
  auto pool = StatePool::Create(*pc, 4);
  ASSERT_TRUE(pool.ok());
  std::vector<int32_t> prompt(golden_.greedy_prompt.begin(), golden_.greedy_prompt.end());
  const int64_t new_tokens = static_cast<int64_t>(golden_.greedy_out.size() - prompt.size());
  auto out = GreedyGenerate(*model_, *pool, {prompt}, new_tokens);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0], std::vector<int32_t>(golden_.greedy_out.begin(), golden_.greedy_out.end()));
}

TEST_P(GoldenTest, GreedyTokensIdentical) {
  std::vector<int32_t> prompt(golden_.greedy_prompt.begin(), golden_.greedy_prompt.end());
  const int64_t new_tokens = static_cast<int64_t>(golden_.greedy_out.size() - prompt.size());
  auto out = GreedyGenerate(*model_, *pool_, {prompt}, new_tokens);
  ASSERT_TRUE(out.ok()) << out.status();
  std::vector<int32_t> want(golden_.greedy_out.begin(), golden_.greedy_out.end());
  EXPECT_EQ((*out)[0], want);
}

TEST_P(GoldenTest, BadInputIsRefusedAndStateUntouched) {
  ForwardInput in;
  in.token_ids = {1, static_cast<int32_t>(config_.vocab_size())};
  in.seq_lens = {2};
  in.initial_blocks = {0};
  in.final_blocks = {1};
  std::vector<float> logits;
  auto st = model_->Forward(in, *pool_, &logits);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("vocabulary"), absl::string_view::npos) << st.message();
  in.token_ids = {1, 2};
  in.final_blocks = {99};
  EXPECT_FALSE(model_->Forward(in, *pool_, &logits).ok());
  in.final_blocks = {1};
  in.seq_lens = {0, 2};
  in.initial_blocks = {0, 0};
  in.final_blocks = {1, 2};
  EXPECT_FALSE(model_->Forward(in, *pool_, &logits).ok());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenTest,
                         ::testing::Values("m1_tiny", "m2_g1", "m1_w3_bias_untied",
                                           "m2_g2_w3_untied", "m2_g4_dtlimit"));

}  // namespace
}  // namespace mambaserve
