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

}  // namespace
}  // namespace mambaserve
