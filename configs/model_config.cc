#include "configs/model_config.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "google/protobuf/text_format.h"
#include "nlohmann/json.hpp"

namespace mambaserve {
namespace {

using json = nlohmann::json;

// Built into the binary so a user's machine needs no preset files; kept equal to
// configs/presets/defaults.textproto by config_test.
constexpr char kDefaultsText[] = R"pb(
  parallel { tp_size: 0 backend: "auto" collective_timeout_s: 60 }
  cache {
    block_size: 256
    gpu_memory_fraction: 0.3
    memory_budget_mb: 0
    conv_layout: "SD"
    cache_dtype: "auto"
    ssm_cache_dtype: "float32"
    enable_prefix_caching: true
    num_speculative_tokens: 0
  }
  server {
    listen_address: "127.0.0.1:50051"
    serving_dtype: "bfloat16"
    max_batch_size: 64
    max_num_batched_tokens: 4096
    max_queue_length: 1024
    max_new_tokens_limit: 4096
    max_prompt_tokens: 65536
  }
)pb";

absl::Status FieldError(const std::string& origin, const std::string& field,
                        const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(origin, ": field '", field, "' ", what));
}

// Reads a JSON number, also in the {"__float__": "Infinity"} form.
absl::StatusOr<double> AsDouble(const json& v, const std::string& origin,
                                const std::string& field) {
  if (v.is_number()) return v.get<double>();
  if (v.is_object() && v.contains("__float__") && v["__float__"].is_string()) {
    const std::string s = v["__float__"].get<std::string>();
    if (s == "Infinity" || s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-Infinity" || s == "-inf") return -std::numeric_limits<double>::infinity();
    if (s == "NaN" || s == "nan") return std::numeric_limits<double>::quiet_NaN();
    return FieldError(origin, field, absl::StrCat("has an unknown __float__ value '", s, "'"));
  }
  return FieldError(origin, field, "must be a number");
}

class JsonFields {
 public:
  JsonFields(const json& j, std::string origin) : j_(j), origin_(std::move(origin)) {}

  absl::StatusOr<int64_t> Int(const std::string& name, std::optional<int64_t> dflt) const {
    if (!j_.contains(name) || j_[name].is_null()) {
      if (dflt) return *dflt;
      return FieldError(origin_, name, "is missing");
    }
    const json& v = j_[name];
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()) {
      return static_cast<int64_t>(v.get<double>());
    }
    return FieldError(origin_, name, "must be an integer");
  }
  absl::StatusOr<double> Double(const std::string& name, double dflt) const {
    if (!j_.contains(name) || j_[name].is_null()) return dflt;
    return AsDouble(j_[name], origin_, name);
  }
  absl::StatusOr<bool> Bool(const std::string& name, bool dflt) const {
    if (!j_.contains(name) || j_[name].is_null()) return dflt;
    if (!j_[name].is_boolean()) return FieldError(origin_, name, "must be true or false");
    return j_[name].get<bool>();
  }
  bool Has(const std::string& name) const { return j_.contains(name) && !j_[name].is_null(); }
  const json& Get(const std::string& name) const { return j_[name]; }
  const std::string& origin() const { return origin_; }

 private:
  const json& j_;
  std::string origin_;
};

absl::StatusOr<config::Architecture> DetectArchitecture(const json& j, const std::string& origin) {
  if (j.contains("architectures") && j["architectures"].is_array()) {
    for (const auto& a : j["architectures"]) {
      if (!a.is_string()) continue;
      const std::string s = a.get<std::string>();
      if (s == "MambaForCausalLM" || s == "MambaLMHeadModel") return config::MAMBA1;
      if (s == "Mamba2ForCausalLM") return config::MAMBA2;
    }
    return FieldError(origin, "architectures",
                      absl::StrCat("names no supported architecture (", j["architectures"].dump(),
                                   "); expected MambaForCausalLM or Mamba2ForCausalLM"));
  }
  if (j.contains("model_type") && j["model_type"].is_string()) {
    const std::string t = j["model_type"].get<std::string>();
    if (t == "mamba") return config::MAMBA1;
    if (t == "mamba2") return config::MAMBA2;
    return FieldError(origin, "model_type", absl::StrCat("'", t, "' is not mamba or mamba2"));
  }
  return FieldError(origin, "architectures", "is missing (and no model_type or d_model given)");
}

// The original state-spaces format: {"d_model", "n_layer", "vocab_size", "ssm_cfg": {...}, ...}.
absl::StatusOr<config::ModelConfig> ParseStateSpacesConfig(const json& j,
                                                           const std::string& origin) {
  JsonFields f(j, origin);
  config::ModelConfig m;
  json ssm = j.contains("ssm_cfg") && j["ssm_cfg"].is_object() ? j["ssm_cfg"] : json::object();
  JsonFields s(ssm, origin + " ssm_cfg");
  const bool is_m2 = ssm.contains("layer") && ssm["layer"] == "Mamba2";
  m.set_architecture(is_m2 ? config::MAMBA2 : config::MAMBA1);
  ASSIGN_OR_RETURN(int64_t d_model, f.Int("d_model", std::nullopt));
  ASSIGN_OR_RETURN(int64_t n_layer, f.Int("n_layer", std::nullopt));
  ASSIGN_OR_RETURN(int64_t vocab, f.Int("vocab_size", std::nullopt));
  ASSIGN_OR_RETURN(int64_t pad, f.Int("pad_vocab_size_multiple", 8));
  if (pad <= 0) return FieldError(origin, "pad_vocab_size_multiple", "must be positive");
  if (vocab % pad != 0) vocab += pad - vocab % pad;  // the checkpoint's embedding is padded
  m.set_d_model(d_model);
  m.set_n_layers(n_layer);
  m.set_vocab_size(vocab);
  ASSIGN_OR_RETURN(int64_t d_state, s.Int("d_state", is_m2 ? 128 : 16));
  ASSIGN_OR_RETURN(int64_t d_conv, s.Int("d_conv", 4));
  ASSIGN_OR_RETURN(int64_t expand, s.Int("expand", 2));
  m.set_d_state(d_state);
  m.set_d_conv(d_conv);
  m.set_expand(expand);
  m.set_d_inner(expand * d_model);
  ASSIGN_OR_RETURN(bool conv_bias, s.Bool("conv_bias", true));
  ASSIGN_OR_RETURN(bool bias, s.Bool("bias", false));
  m.set_conv_bias(conv_bias);
  m.set_proj_bias(bias);
  ASSIGN_OR_RETURN(bool rif, f.Bool("residual_in_fp32", true));
  ASSIGN_OR_RETURN(bool tie, f.Bool("tie_embeddings", true));
  m.set_residual_in_fp32(rif);
  m.set_tie_embeddings(tie);
  m.set_norm_eps(1e-5);
  if (is_m2) {
    ASSIGN_OR_RETURN(int64_t headdim, s.Int("headdim", 64));
    ASSIGN_OR_RETURN(int64_t ngroups, s.Int("ngroups", 1));
    ASSIGN_OR_RETURN(int64_t chunk, s.Int("chunk_size", 256));
    ASSIGN_OR_RETURN(bool nbg, s.Bool("norm_before_gate", false));
    m.set_head_dim(headdim);
    m.set_num_heads(headdim > 0 ? m.d_inner() / headdim : 0);
    m.set_n_groups(ngroups);
    m.set_chunk_size(chunk);
    m.set_norm_before_gate(nbg);
    m.set_dt_limit_min(0.0);
    m.set_dt_limit_max(std::numeric_limits<double>::infinity());
    if (ssm.contains("dt_limit") && ssm["dt_limit"].is_array() && ssm["dt_limit"].size() == 2) {
      ASSIGN_OR_RETURN(double lo, AsDouble(ssm["dt_limit"][0], origin, "ssm_cfg.dt_limit"));
      ASSIGN_OR_RETURN(double hi, AsDouble(ssm["dt_limit"][1], origin, "ssm_cfg.dt_limit"));
      m.set_dt_limit_min(lo);
      m.set_dt_limit_max(hi);
    }
  } else {
    m.set_dt_rank((d_model + 15) / 16);
    if (s.Has("dt_rank") && !s.Get("dt_rank").is_string()) {
      ASSIGN_OR_RETURN(int64_t r, s.Int("dt_rank", std::nullopt));
      m.set_dt_rank(r);
    }
  }
  m.set_dtype("float32");
  return m;
}

absl::StatusOr<config::ModelConfig> ParseHfConfig(const json& j, const std::string& origin) {
  JsonFields f(j, origin);
  config::ModelConfig m;
  ASSIGN_OR_RETURN(config::Architecture arch, DetectArchitecture(j, origin));
  m.set_architecture(arch);
  const bool is_m2 = arch == config::MAMBA2;
  ASSIGN_OR_RETURN(int64_t vocab, f.Int("vocab_size", std::nullopt));
  ASSIGN_OR_RETURN(int64_t hidden, f.Int("hidden_size", std::nullopt));
  ASSIGN_OR_RETURN(int64_t layers, f.Int("num_hidden_layers", std::nullopt));
  ASSIGN_OR_RETURN(int64_t state, f.Int("state_size", std::nullopt));
  ASSIGN_OR_RETURN(int64_t conv, f.Int("conv_kernel", 4));
  ASSIGN_OR_RETURN(int64_t expand, f.Int("expand", 2));
  m.set_vocab_size(vocab);
  m.set_d_model(hidden);
  m.set_n_layers(layers);
  m.set_d_state(state);
  m.set_d_conv(conv);
  m.set_expand(expand);
  ASSIGN_OR_RETURN(int64_t inner, f.Int("intermediate_size", expand * hidden));
  m.set_d_inner(inner);
  ASSIGN_OR_RETURN(double eps, f.Double("layer_norm_epsilon", 1e-5));
  m.set_norm_eps(eps);
  ASSIGN_OR_RETURN(bool tie, f.Bool("tie_word_embeddings", true));
  ASSIGN_OR_RETURN(bool rif, f.Bool("residual_in_fp32", true));
  ASSIGN_OR_RETURN(bool conv_bias, f.Bool("use_conv_bias", true));
  ASSIGN_OR_RETURN(bool bias, f.Bool("use_bias", false));
  m.set_tie_embeddings(tie);
  m.set_residual_in_fp32(rif);
  m.set_conv_bias(conv_bias);
  m.set_proj_bias(bias);
  std::string dtype = "float32";
  for (const char* key : {"dtype", "torch_dtype"}) {
    if (j.contains(key) && j[key].is_string()) dtype = j[key].get<std::string>();
  }
  m.set_dtype(dtype);
  if (is_m2) {
    ASSIGN_OR_RETURN(int64_t heads, f.Int("num_heads", std::nullopt));
    ASSIGN_OR_RETURN(int64_t head_dim, f.Int("head_dim", std::nullopt));
    ASSIGN_OR_RETURN(int64_t groups, f.Int("n_groups", 1));
    ASSIGN_OR_RETURN(int64_t chunk, f.Int("chunk_size", 256));
    ASSIGN_OR_RETURN(bool nbg, f.Bool("norm_before_gate", false));
    m.set_num_heads(heads);
    m.set_head_dim(head_dim);
    m.set_n_groups(groups);
    m.set_chunk_size(chunk);
    m.set_norm_before_gate(nbg);
    // Mamba-2's intermediate width is heads * head_dim.
    if (!f.Has("intermediate_size")) m.set_d_inner(heads * head_dim);
    m.set_dt_limit_min(0.0);
    m.set_dt_limit_max(std::numeric_limits<double>::infinity());
    if (f.Has("time_step_limit")) {
      const json& lim = f.Get("time_step_limit");
      if (!lim.is_array() || lim.size() != 2) {
        return FieldError(origin, "time_step_limit", "must be a list [min, max]");
      }
      ASSIGN_OR_RETURN(double lo, AsDouble(lim[0], origin, "time_step_limit"));
      ASSIGN_OR_RETURN(double hi, AsDouble(lim[1], origin, "time_step_limit"));
      m.set_dt_limit_min(lo);
      m.set_dt_limit_max(hi);
    }
  } else {
    const int64_t auto_rank = (hidden + 15) / 16;
    if (f.Has("time_step_rank") && f.Get("time_step_rank").is_string()) {
      if (f.Get("time_step_rank").get<std::string>() != "auto") {
        return FieldError(origin, "time_step_rank", "must be an integer or \"auto\"");
      }
      m.set_dt_rank(auto_rank);
    } else {
      ASSIGN_OR_RETURN(int64_t r, f.Int("time_step_rank", auto_rank));
      m.set_dt_rank(r);
    }
  }
  return m;
}

absl::Status Positive(const char* field, int64_t v) {
  if (v <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model config: field '", field, "' must be positive, got ", v));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

absl::Status ValidateModelConfig(const config::ModelConfig& m) {
  if (m.architecture() != config::MAMBA1 && m.architecture() != config::MAMBA2) {
    return absl::InvalidArgumentError(
        "model config: field 'architecture' must be MAMBA1 or MAMBA2");
  }
  RETURN_IF_ERROR(Positive("vocab_size", m.vocab_size()));
  RETURN_IF_ERROR(Positive("d_model", m.d_model()));
  RETURN_IF_ERROR(Positive("n_layers", m.n_layers()));
  RETURN_IF_ERROR(Positive("d_state", m.d_state()));
  RETURN_IF_ERROR(Positive("d_inner", m.d_inner()));
  if (m.d_conv() < 2 || m.d_conv() > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("model config: field 'd_conv' must be in [2, 8], got ", m.d_conv()));
  }
  if (!(m.norm_eps() > 0)) {
    return absl::InvalidArgumentError("model config: field 'norm_eps' must be positive");
  }
  if (m.architecture() == config::MAMBA1) {
    RETURN_IF_ERROR(Positive("dt_rank", m.dt_rank()));
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(Positive("num_heads", m.num_heads()));
  RETURN_IF_ERROR(Positive("head_dim", m.head_dim()));
  RETURN_IF_ERROR(Positive("n_groups", m.n_groups()));
  RETURN_IF_ERROR(Positive("chunk_size", m.chunk_size()));
  if (m.num_heads() * m.head_dim() != m.d_inner()) {
    return absl::InvalidArgumentError(absl::StrCat("model config: num_heads * head_dim (",
                                                   m.num_heads() * m.head_dim(),
                                                   ") must equal d_inner (", m.d_inner(), ")"));
  }
  if (m.num_heads() % m.n_groups() != 0) {
    return absl::InvalidArgumentError(absl::StrCat("model config: field 'n_groups' (", m.n_groups(),
                                                   ") must divide num_heads (", m.num_heads(),
                                                   ")"));
  }
  if (!(m.dt_limit_min() >= 0) || !(m.dt_limit_max() > m.dt_limit_min())) {
    return absl::InvalidArgumentError(
        absl::StrCat("model config: field 'dt_limit' must satisfy 0 <= min < max, got (",
                     m.dt_limit_min(), ", ", m.dt_limit_max(), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<config::ModelConfig> ParseModelConfigJson(const std::string& json_text,
                                                         const std::string& origin) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": not a JSON object"));
  }
  config::ModelConfig m;
  if (!j.contains("architectures") && !j.contains("model_type") && j.contains("d_model")) {
    ASSIGN_OR_RETURN(m, ParseStateSpacesConfig(j, origin));
  } else {
    ASSIGN_OR_RETURN(m, ParseHfConfig(j, origin));
  }
  if (auto st = ValidateModelConfig(m); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": ", st.message()));
  }
  return m;
}

absl::StatusOr<config::ModelConfig> ReadModelConfig(const std::string& path) {
  std::string file = path;
  if (std::ifstream(path + "/config.json").good()) file = path + "/config.json";
  ASSIGN_OR_RETURN(std::string text, ReadFile(file));
  return ParseModelConfigJson(text, file);
}

config::MambaServeConfig DefaultServeConfig() {
  config::MambaServeConfig c;
  google::protobuf::TextFormat::ParseFromString(kDefaultsText, &c);
  return c;
}

absl::StatusOr<config::MambaServeConfig> ParseServeConfigText(const std::string& text,
                                                              const std::string& origin) {
  config::MambaServeConfig overrides;
  if (!google::protobuf::TextFormat::ParseFromString(text, &overrides)) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": not a valid text-format MambaServeConfig (see stderr)"));
  }
  config::MambaServeConfig c = DefaultServeConfig();
  c.MergeFrom(overrides);  // proto3: only fields set to non-default values override
  if (c.has_model() && c.model().architecture() != config::ARCHITECTURE_UNSPECIFIED) {
    if (auto st = ValidateModelConfig(c.model()); !st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(origin, ": ", st.message()));
    }
  }
  const auto& cache = c.cache();
  if (cache.block_size() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": field 'cache.block_size' must be positive"));
  }
  if (cache.conv_layout() != "SD" && cache.conv_layout() != "DS") {
    return absl::InvalidArgumentError(absl::StrCat(
        origin, ": field 'cache.conv_layout' must be SD or DS, got '", cache.conv_layout(), "'"));
  }
  if (!cache.prefix_caching_mode().empty() && cache.prefix_caching_mode() != "align" &&
      cache.prefix_caching_mode() != "all") {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": field 'cache.prefix_caching_mode' must be align or all, got '",
                     cache.prefix_caching_mode(), "'"));
  }
  if (cache.num_speculative_tokens() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": field 'cache.num_speculative_tokens' must be >= 0"));
  }
  if (c.parallel().tp_size() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": field 'parallel.tp_size' must be >= 0"));
  }
  const auto& s = c.server();
  for (auto [name, v] :
       {std::pair<const char*, int64_t>{"server.max_batch_size", s.max_batch_size()},
        {"server.max_num_batched_tokens", s.max_num_batched_tokens()},
        {"server.max_new_tokens_limit", s.max_new_tokens_limit()}}) {
    if (v <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": field '", name, "' must be positive"));
    }
  }
  return c;
}

absl::StatusOr<config::MambaServeConfig> ReadServeConfig(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseServeConfigText(text, path);
}

Discretization ToDiscretization(config::Discretization d) {
  switch (d) {
    case config::DISCRETIZATION_ZOH:
      return Discretization::kZoh;
    case config::DISCRETIZATION_BILINEAR:
      return Discretization::kBilinear;
    case config::DISCRETIZATION_DIRAC:
      return Discretization::kDirac;
    case config::DISCRETIZATION_EVENT_DRIVEN:
      return Discretization::kEventDriven;
    default:
      return Discretization::kDefault;
  }
}

absl::StatusOr<DType> CheckpointDType(const config::ModelConfig& m) {
  if (m.dtype().empty()) return DType::kF32;
  return ParseDType(m.dtype());
}

}  // namespace mambaserve
