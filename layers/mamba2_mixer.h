// The tensor-parallel Mamba-2 mixer of one layer: in_proj (column-parallel, re-sliced piece by
// piece), causal conv over [x | B | C], SSD scan (prefill) or state update (decode), gated
// RMSNorm (with cross-rank partial sums when a group spans ranks), out_proj (row-parallel) and
// its all-reduce. Every per-rank size comes from the shard plan.
//
// The norm's weight is folded into out_proj's columns at load (out_proj(v r w) = (W w)(v r) for
// the per-channel weight w and the per-group scale r), so the norm kernel runs without one; a
// decode step at batch 1 (tp = 1, one norm group) then runs no norm kernel at all: the state
// update gates y by silu(z) and out_proj normalises its input inside the product (on the GPU,
// the one-row GEMV; bench/RESULTS.md, twelfth session).
#ifndef MAMBASERVE_LAYERS_MAMBA2_MIXER_H_
#define MAMBASERVE_LAYERS_MAMBA2_MIXER_H_

#include <string>

#include "absl/status/statusor.h"
#include "configs/mambaserve_config.pb.h"
#include "core/buffer.h"
#include "kernels/gated_rmsnorm.h"
#include "kernels/mamba2_state_update.h"
#include "layers/linear.h"
#include "layers/step_context.h"
#include "layers/weight_source.h"
#include "parallel/shard_plan.h"
#include "state_manager/state_pool.h"

namespace mambaserve {

class Mamba2Mixer {
 public:
  // Loads this rank's shard of layer `prefix` ("backbone.layers.3.mixer.").
  static absl::StatusOr<Mamba2Mixer> Load(const config::ModelConfig& m, const Mamba2ShardPlan& plan,
                                          const WeightSource& src, const std::string& prefix,
                                          Device device, DType dtype);

  // hidden (T, d_model) in the activation dtype -> out (T, d_model), all-reduced over the tp
  // group. `conv` and `ssm` address this layer's state tensors in the pool.
  absl::Status Forward(const void* hidden, void* out, const StateTensorRef& conv,
                       const StateTensorRef& ssm, StepContext& ctx) const;

  const Mamba2ShardPlan& plan() const { return plan_; }

 private:
  struct Columns {  // of the local in_proj output row
    int64_t z, xbc, dt;
  };
  Columns columns() const;
  // The decode rows' state update (reading the conv output xb, writing y) and the fused-mode
  // gated norm of y over T rows.
  Mamba2StateUpdateParams DecodeStateParams(const char* zx, const char* xb, void* y,
                                            const StateTensorRef& ssm, const StepBatch& bt) const;
  GatedRmsNormParams NormParams(const char* zx, void* y, int64_t T) const;
  // Whether this step's gated norm can ride on the state update and out_proj (see above).
  bool FusesDecodeNorm(const StepBatch& bt, const void* y) const;

  Mamba2ShardPlan plan_;
  DType dtype_ = DType::kF32;
  int64_t d_conv_ = 4;
  int64_t chunk_size_ = 256;
  float eps_ = 1e-5f;
  bool norm_before_gate_ = false;
  float dt_min_ = 0.0f, dt_max_ = 0.0f;
  bool d_per_channel_ = false;
  Linear in_proj_, out_proj_;
  Buffer conv_weight_, conv_bias_, dt_bias_, A_, D_;
};

}  // namespace mambaserve

#endif  // MAMBASERVE_LAYERS_MAMBA2_MIXER_H_
