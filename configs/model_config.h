// Reading and validating configuration: Hugging Face / state-spaces `config.json` files into a
// ModelConfig, and text-format MambaServeConfig files (configs/presets/*.textproto).
#ifndef MAMBASERVE_CONFIGS_MODEL_CONFIG_H_
#define MAMBASERVE_CONFIGS_MODEL_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "configs/mambaserve_config.pb.h"
#include "core/dtype.h"
#include "kernels/mamba_math.h"

namespace mambaserve {

// Parses the text of a config.json: Hugging Face MambaForCausalLM / Mamba2ForCausalLM (also
// `time_step_limit` given as {"__float__": "Infinity"} and `time_step_rank: "auto"`), or an
// original state-spaces checkpoint config (d_model, n_layer, ssm_cfg). The result is validated.
// `origin` names the file in errors.
absl::StatusOr<config::ModelConfig> ParseModelConfigJson(const std::string& json_text,
                                                         const std::string& origin = "config.json");

// Reads `path`, which is a config.json file or a directory holding one.
absl::StatusOr<config::ModelConfig> ReadModelConfig(const std::string& path);

// Refuses a config that cannot describe a model: unknown architecture, non-positive sizes,
// non-divisible sizes. Errors name the field.
absl::Status ValidateModelConfig(const config::ModelConfig& m);

// Parses a text-format MambaServeConfig, on top of the built-in defaults (presets/defaults).
absl::StatusOr<config::MambaServeConfig> ParseServeConfigText(const std::string& text,
                                                              const std::string& origin);
absl::StatusOr<config::MambaServeConfig> ReadServeConfig(const std::string& path);
// The built-in defaults alone.
config::MambaServeConfig DefaultServeConfig();

Discretization ToDiscretization(config::Discretization d);
absl::StatusOr<DType> CheckpointDType(const config::ModelConfig& m);

}  // namespace mambaserve

#endif  // MAMBASERVE_CONFIGS_MODEL_CONFIG_H_
