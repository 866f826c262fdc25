// Loading refuses a checkpoint that does not match its config, naming the tensor.
#include <string>

#include "configs/model_config.h"
#include "gtest/gtest.h"
#include "layers/mamba_model.h"

namespace mambaserve {
namespace {

const std::string kGolden = std::string(MAMBASERVE_TEST_DATA_DIR) + "/golden/";

// Hides one tensor of another source.
class Without : public WeightSource {
 public:
  Without(const WeightSource& src, std::string hidden) : src_(src), hidden_(std::move(hidden)) {}
  bool Has(const std::string& n) const override { return n != hidden_ && src_.Has(n); }
  absl::StatusOr<std::vector<int64_t>> Shape(const std::string& n) const override {
    if (n == hidden_) return absl::NotFoundError("checkpoint has no tensor '" + n + "'");
    return src_.Shape(n);
  }
  absl::Status Read(const std::string& n, const std::vector<DimRange>& r,
                    std::vector<float>* out) const override {
    if (n == hidden_) return absl::NotFoundError("checkpoint has no tensor '" + n + "'");
    return src_.Read(n, r, out);
  }

 private:
  const WeightSource& src_;
  std::string hidden_;
};

// Presents a Hugging Face checkpoint under the original state-spaces names
// (backbone.embedding.weight instead of backbone.embeddings.weight).
class StateSpacesNames : public WeightSource {
 public:
  explicit StateSpacesNames(const WeightSource& src) : src_(src) {}
  bool Has(const std::string& n) const override {
    return n != kHf && (n == kSs ? src_.Has(kHf) : src_.Has(n));
  }
  absl::StatusOr<std::vector<int64_t>> Shape(const std::string& n) const override {
    if (n == kHf) return absl::NotFoundError(n);
    return src_.Shape(n == kSs ? kHf : n);
  }
  absl::Status Read(const std::string& n, const std::vector<DimRange>& r,
                    std::vector<float>* out) const override {
    if (n == kHf) return absl::NotFoundError(n);
    return src_.Read(n == kSs ? kHf : n, r, out);
  }

 private:
  static constexpr char kHf[] = "backbone.embeddings.weight";
  static constexpr char kSs[] = "backbone.embedding.weight";
  const WeightSource& src_;
};

absl::Status Load(const config::ModelConfig& m, const WeightSource& src) {
  return MambaModel::Load(m, src, Device::Cpu(), DType::kF32, nullptr).status();
}

TEST(ModelLoad, ConfigCheckpointMismatchNamesTheTensor) {
  auto m2 = ReadModelConfig(kGolden + "m2_g1");
  auto w2 = CheckpointWeights::Open(kGolden + "m2_g1");
  ASSERT_TRUE(m2.ok() && w2.ok());
  ASSERT_TRUE(Load(*m2, **w2).ok());
  config::ModelConfig bad = *m2;
  bad.set_d_state(32);  // the checkpoint has 64
  auto st = Load(bad, **w2);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("backbone.layers.0.mixer.in_proj.weight"), absl::string_view::npos)
      << st.message();
  bad = *m2;
  bad.set_d_conv(3);
  st = Load(bad, **w2);
  EXPECT_NE(st.message().find("conv1d.weight"), absl::string_view::npos) << st.message();

  auto m1 = ReadModelConfig(kGolden + "m1_tiny");
  auto w1 = CheckpointWeights::Open(kGolden + "m1_tiny");
  ASSERT_TRUE(m1.ok() && w1.ok());
  config::ModelConfig bad1 = *m1;
  bad1.set_dt_rank(5);
  st = Load(bad1, **w1);
  EXPECT_NE(st.message().find("x_proj.weight"), absl::string_view::npos) << st.message();
  bad1 = *m1;
  bad1.set_n_layers(4);  // the checkpoint has 3
  st = Load(bad1, **w1);
  EXPECT_NE(st.message().find("backbone.layers.3."), absl::string_view::npos) << st.message();
}

TEST(ModelLoad, MissingTensorIsNamed) {
  auto m2 = ReadModelConfig(kGolden + "m2_g1");
  auto w2 = CheckpointWeights::Open(kGolden + "m2_g1");
  ASSERT_TRUE(m2.ok() && w2.ok());
  for (const std::string name : {"backbone.layers.1.mixer.dt_bias", "backbone.norm_f.weight",
                                 "backbone.layers.0.norm.weight"}) {
    Without src(**w2, name);
    auto st = Load(*m2, src);
    EXPECT_FALSE(st.ok()) << name;
    EXPECT_NE(st.message().find(name), absl::string_view::npos) << st.message();
  }
  // An untied config needs lm_head.weight, which a tied checkpoint lacks.
  config::ModelConfig untied = *m2;
  untied.set_tie_embeddings(false);
  auto st = Load(untied, **w2);
  EXPECT_NE(st.message().find("lm_head.weight"), absl::string_view::npos) << st.message();
}

TEST(ModelLoad, StateSpacesNamesGiveTheSameLogits) {
  auto m = ReadModelConfig(kGolden + "m1_tiny");
  auto w = CheckpointWeights::Open(kGolden + "m1_tiny");
  ASSERT_TRUE(m.ok() && w.ok());
  StateSpacesNames renamed(**w);
  std::vector<float> a, b;
  for (const WeightSource* src :
       {static_cast<const WeightSource*>(w->get()), static_cast<const WeightSource*>(&renamed)}) {
    auto model = MambaModel::Load(*m, *src, Device::Cpu(), DType::kF32, nullptr);
    ASSERT_TRUE(model.ok()) << model.status();
    auto pc = (*model)->PoolConfig({DType::kF32, DType::kF32});
    auto pool = StatePool::Create(*pc, 2);
    ASSERT_TRUE(pool.ok());
    ForwardInput in;
    in.token_ids = {5, 9, 200, 17};
    in.seq_lens = {4};
    in.initial_blocks = {0};
    in.final_blocks = {1};
    ASSERT_TRUE((*model)->Forward(in, *pool, src == &renamed ? &b : &a).ok());
  }
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace mambaserve
