#include "configs/model_config.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace mambaserve {
namespace {

const std::string kGolden = std::string(MAMBASERVE_TEST_DATA_DIR) + "/golden";

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void ExpectErrorNames(const absl::Status& st, const std::string& field) {
  ASSERT_FALSE(st.ok()) << "expected an error naming " << field;
  EXPECT_NE(st.message().find(field), absl::string_view::npos) << st.message();
}

TEST(ModelConfig, ReadsGoldenMamba1) {
  auto m = ReadModelConfig(kGolden + "/m1_tiny");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->architecture(), config::MAMBA1);
  EXPECT_EQ(m->d_model(), 64);
  EXPECT_EQ(m->d_inner(), 128);
  EXPECT_EQ(m->d_state(), 16);
  EXPECT_EQ(m->dt_rank(), 4);
  EXPECT_EQ(m->n_layers(), 3);
  EXPECT_EQ(m->vocab_size(), 512);
  EXPECT_TRUE(m->tie_embeddings());
  EXPECT_TRUE(m->conv_bias());
  EXPECT_FALSE(m->proj_bias());
  EXPECT_DOUBLE_EQ(m->norm_eps(), 1e-5);
}

TEST(ModelConfig, ReadsGoldenMamba2WithInfinityLimit) {
  auto m = ReadModelConfig(kGolden + "/m2_g1/config.json");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->architecture(), config::MAMBA2);
  EXPECT_EQ(m->num_heads(), 8);
  EXPECT_EQ(m->head_dim(), 32);
  EXPECT_EQ(m->d_inner(), 256);
  EXPECT_EQ(m->n_groups(), 1);
  EXPECT_EQ(m->chunk_size(), 32);
  EXPECT_EQ(m->dt_limit_min(), 0.0);
  EXPECT_TRUE(std::isinf(m->dt_limit_max()) && m->dt_limit_max() > 0);
}

TEST(ModelConfig, TimeStepRankAuto) {
  auto m = ParseModelConfigJson(R"({"architectures": ["MambaForCausalLM"], "vocab_size": 100,
      "hidden_size": 768, "num_hidden_layers": 2, "state_size": 16, "time_step_rank": "auto"})");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->dt_rank(), 48);  // ceil(768 / 16)
  EXPECT_EQ(m->d_inner(), 1536);
  ExpectErrorNames(ParseModelConfigJson(R"({"architectures": ["MambaForCausalLM"],
      "vocab_size": 100, "hidden_size": 768, "num_hidden_layers": 2, "state_size": 16,
      "time_step_rank": "big"})")
                       .status(),
                   "time_step_rank");
}

TEST(ModelConfig, StateSpacesFormat) {
  auto m = ParseModelConfigJson(R"({"d_model": 2560, "n_layer": 64, "vocab_size": 50277,
      "ssm_cfg": {"layer": "Mamba2"}, "rms_norm": true, "residual_in_fp32": true,
      "fused_add_norm": true, "pad_vocab_size_multiple": 16, "tie_embeddings": true})");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->architecture(), config::MAMBA2);
  EXPECT_EQ(m->vocab_size(), 50288);  // padded to a multiple of 16
  EXPECT_EQ(m->num_heads(), 80);
  EXPECT_EQ(m->d_state(), 128);
  EXPECT_EQ(m->chunk_size(), 256);
  auto m1 = ParseModelConfigJson(R"({"d_model": 768, "n_layer": 24, "vocab_size": 50277})");
  ASSERT_TRUE(m1.ok()) << m1.status();
  EXPECT_EQ(m1->architecture(), config::MAMBA1);
  EXPECT_EQ(m1->dt_rank(), 48);
  EXPECT_EQ(m1->vocab_size(), 50280);
}

TEST(ModelConfig, BadConfigsNameTheField) {
  const std::string base = R"("architectures": ["Mamba2ForCausalLM"], "vocab_size": 512,
      "num_hidden_layers": 2, "state_size": 64, "num_heads": 8, "head_dim": 32)";
  ExpectErrorNames(ParseModelConfigJson("{" + base + "}").status(), "hidden_size");  // missing
  ExpectErrorNames(
      ParseModelConfigJson("{" + base + R"(, "hidden_size": 128, "n_groups": 3})").status(),
      "n_groups");  // does not divide num_heads
  ExpectErrorNames(
      ParseModelConfigJson(R"({"architectures": ["Mamba2ForCausalLM"], "vocab_size": -5,
        "hidden_size": 128, "num_hidden_layers": 2, "state_size": 64, "num_heads": 8,
        "head_dim": 32})")
          .status(),
      "vocab_size");  // negative
  ExpectErrorNames(
      ParseModelConfigJson("{" + base + R"(, "hidden_size": 100, "intermediate_size": 250})")
          .status(),
      "d_inner");  // heads * head_dim != d_inner
  ExpectErrorNames(ParseModelConfigJson(R"({"architectures": ["LlamaForCausalLM"]})").status(),
                   "architectures");
  ExpectErrorNames(
      ParseModelConfigJson("{" + base + R"(, "hidden_size": 128, "conv_kernel": 1})").status(),
      "d_conv");
  ExpectErrorNames(ParseModelConfigJson("{" + base + R"(, "hidden_size": "wide"})").status(),
                   "hidden_size");
  ExpectErrorNames(
      ParseModelConfigJson("{" + base + R"(, "hidden_size": 128, "time_step_limit": [1.0, 0.5]})")
          .status(),
      "dt_limit");
  EXPECT_FALSE(ParseModelConfigJson("{not json").ok());
  EXPECT_EQ(ReadModelConfig("/nonexistent/dir").status().code(), absl::StatusCode::kNotFound);
}

TEST(ServeConfig, EmbeddedDefaultsEqualThePresetFile) {
  config::MambaServeConfig from_file;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      Slurp(std::string(MAMBASERVE_PRESETS_DIR) + "/defaults.textproto"), &from_file));
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(from_file, DefaultServeConfig()));
}

TEST(ServeConfig, PresetsParseAndOverride) {
  for (const char* name : {"cpu_small", "mamba2_2p7b", "mamba_2p8b"}) {
    auto c = ReadServeConfig(std::string(MAMBASERVE_PRESETS_DIR) + "/" + name + ".textproto");
    ASSERT_TRUE(c.ok()) << name << ": " << c.status();
  }
  auto c = ReadServeConfig(std::string(MAMBASERVE_PRESETS_DIR) + "/cpu_small.textproto");
  EXPECT_EQ(c->cache().block_size(), 32);
  EXPECT_EQ(c->server().max_queue_length(), 64);
  auto big = ReadServeConfig(std::string(MAMBASERVE_PRESETS_DIR) + "/mamba2_2p7b.textproto");
  EXPECT_EQ(big->model().num_heads(), 80);
  EXPECT_TRUE(std::isinf(big->model().dt_limit_max()));
  EXPECT_EQ(big->server().max_batch_size(), 64);  // from the defaults
}

TEST(ServeConfig, BadServeConfigsNameTheField) {
  ExpectErrorNames(ParseServeConfigText("cache { conv_layout: \"XY\" }", "t").status(),
                   "conv_layout");
  ExpectErrorNames(ParseServeConfigText("server { max_batch_size: -1 }", "t").status(),
                   "max_batch_size");
  ExpectErrorNames(ParseServeConfigText("model { architecture: MAMBA2 d_model: 64 }", "t").status(),
                   "vocab_size");
  EXPECT_FALSE(ParseServeConfigText("cache { no_such_field: 1 }", "t").ok());
  ExpectErrorNames(ParseServeConfigText("cache { prefix_caching_mode: \"some\" }", "t").status(),
                   "prefix_caching_mode");
  EXPECT_TRUE(ParseServeConfigText("cache { prefix_caching_mode: \"all\" }", "t").ok());
}

}  // namespace
}  // namespace mambaserve
