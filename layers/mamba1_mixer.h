// The tensor-parallel Mamba-1 mixer of one layer: in_proj (column-parallel, [x_r | z_r]), causal
// conv, x_proj (row-parallel, its small output all-reduced in fp32), dt_proj, the selective scan
// (prefill) or decode update with the configured discretisation, and out_proj (row-parallel) with
// its all-reduce.
#ifndef MAMBASERVE_LAYERS_MAMBA1_MIXER_H_
#define MAMBASERVE_LAYERS_MAMBA1_MIXER_H_

#include <string>

#include "absl/status/statusor.h"
#include "configs/mambaserve_config.pb.h"
#include "core/buffer.h"
#include "kernels/mamba_math.h"
#include "layers/linear.h"
#include "layers/step_context.h"
#include "layers/weight_source.h"
#include "parallel/shard_plan.h"
#include "state_manager/state_pool.h"

namespace mambaserve {

class Mamba1Mixer {
 public:
  static absl::StatusOr<Mamba1Mixer> Load(const config::ModelConfig& m, const Mamba1ShardPlan& plan,
                                          const WeightSource& src, const std::string& prefix,
                                          Device device, DType dtype);

  absl::Status Forward(const void* hidden, void* out, const StateTensorRef& conv,
                       const StateTensorRef& ssm, StepContext& ctx) const;

 private:
  Mamba1ShardPlan plan_;
  DType dtype_ = DType::kF32;
  int64_t d_conv_ = 4;
  Discretization mode_ = Discretization::kDefault;
  Linear in_proj_, x_proj_, dt_proj_, out_proj_;
  Buffer conv_weight_, conv_bias_, dt_bias_, A_, D_;
};

}  // namespace mambaserve

#endif  // MAMBASERVE_LAYERS_MAMBA1_MIXER_H_
