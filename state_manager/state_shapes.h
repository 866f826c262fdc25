// The state shape calculators: the one place that decides the shape and dtype of every per-rank,
// per-layer, per-block recurrent state tensor. Sizes are those of one tensor-parallel rank.
#ifndef MAMBASERVE_STATE_MANAGER_STATE_SHAPES_H_
#define MAMBASERVE_STATE_MANAGER_STATE_SHAPES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/dtype.h"

namespace mambaserve {

// How a conv state window is stored: SD = (state_len, dim), dim contiguous (default);
// DS = (dim, state_len).
enum class ConvLayout { kSD = 0, kDS = 1 };

struct StateTensorShape {
  std::string name;           // "conv", "ssm", "conv_q", "recurrent", ...
  std::vector<int64_t> dims;  // per block
  DType dtype = DType::kF32;
  int64_t numel() const;
  int64_t nbytes() const { return numel() * DTypeSize(dtype); }
  bool operator==(const StateTensorShape&) const = default;
};

// The state tensors of one layer, in a fixed order (conv state(s) first).
using LayerStateShapes = std::vector<StateTensorShape>;

struct StateDTypes {
  DType conv = DType::kBF16;
  DType ssm = DType::kF32;
};

// The state dtype rule: each state takes the model dtype unless a cache dtype is forced (vLLM's
// mamba_cache_dtype / mamba_ssm_cache_dtype; "auto" or empty = model dtype). The SSM state
// override wins over the general one.
absl::StatusOr<StateDTypes> ResolveStateDTypes(DType model_dtype, const std::string& cache_dtype,
                                               const std::string& ssm_cache_dtype);

// Mamba-1: conv (d_conv - 1, d_inner/tp), ssm (d_inner/tp, d_state).
absl::StatusOr<LayerStateShapes> Mamba1StateShapes(int64_t d_inner, int64_t d_state, int64_t d_conv,
                                                   int64_t tp, ConvLayout layout,
                                                   StateDTypes dtypes);

struct Mamba2StateArgs {
  int64_t num_heads = 0;
  int64_t head_dim = 0;
  int64_t n_groups = 1;
  int64_t d_state = 0;
  int64_t d_conv = 4;
  int64_t num_spec = 0;  // speculative tokens kept in the conv window
  int64_t tp = 1;
  int64_t rank = 0;  // matters only when heads straddle groups
};

// Mamba-2: conv (d_conv - 1 + num_spec, local heads * P + 2 * local groups * N),
// ssm (H/tp, P, N). Local groups follow parallel/mamba2_groups.h (replication and straddling).
absl::StatusOr<LayerStateShapes> Mamba2StateShapes(const Mamba2StateArgs& a, ConvLayout layout,
                                                   StateDTypes dtypes);

// Short convolution: (d_conv - 1, dim/tp).
absl::StatusOr<LayerStateShapes> ShortConvStateShapes(int64_t dim, int64_t d_conv, int64_t tp,
                                                      ConvLayout layout, DType dtype);

// Linear attention: (heads/tp, head_dim, head_dim).
absl::StatusOr<LayerStateShapes> LinearAttentionStateShapes(int64_t num_heads, int64_t head_dim,
                                                            int64_t tp, DType dtype);

// Gated delta net: conv (d_conv - 1 + num_spec, (2*k_heads*k_dim + v_heads*v_dim)/tp),
// recurrent (v_heads/tp, k_dim, v_dim).
absl::StatusOr<LayerStateShapes> GatedDeltaNetStateShapes(int64_t num_k_heads, int64_t num_v_heads,
                                                          int64_t head_k_dim, int64_t head_v_dim,
                                                          int64_t d_conv, int64_t num_spec,
                                                          int64_t tp, ConvLayout layout,
                                                          StateDTypes dtypes);

// Kimi delta attention: three conv states (q, k, v) of (d_conv - 1, heads*head_dim/tp) and a
// recurrent state (heads/tp, head_dim, head_dim).
absl::StatusOr<LayerStateShapes> KdaStateShapes(int64_t num_heads, int64_t head_dim, int64_t d_conv,
                                                int64_t tp, ConvLayout layout, StateDTypes dtypes);

}  // namespace mambaserve

#endif  // MAMBASERVE_STATE_MANAGER_STATE_SHAPES_H_
