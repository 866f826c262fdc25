#include "state_manager/state_shapes.h"

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "parallel/mamba2_groups.h"

namespace mambaserve {
namespace {

absl::Status Positive(const char* field, int64_t v) {
  if (v <= 0) return absl::InvalidArgumentError(absl::StrCat(field, " must be positive, got ", v));
  return absl::OkStatus();
}

absl::Status DivisibleByTp(const char* field, int64_t v, int64_t tp) {
  RETURN_IF_ERROR(Positive(field, v));
  RETURN_IF_ERROR(Positive("tp_size", tp));
  if (v % tp != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " (", v, ") must be divisible by tp_size (", tp, ")"));
  }
  return absl::OkStatus();
}

StateTensorShape ConvShape(const char* name, int64_t state_len, int64_t dim, ConvLayout layout,
                           DType dtype) {
  if (layout == ConvLayout::kSD) return {name, {state_len, dim}, dtype};
  return {name, {dim, state_len}, dtype};
}

absl::Status CheckConvWidth(int64_t d_conv, int64_t num_spec) {
  if (d_conv < 2)
    return absl::InvalidArgumentError(absl::StrCat("d_conv must be at least 2, got ", d_conv));
  if (num_spec < 0)
    return absl::InvalidArgumentError(absl::StrCat("num_spec must be >= 0, got ", num_spec));
  return absl::OkStatus();
}

}  // namespace

int64_t StateTensorShape::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

absl::StatusOr<StateDTypes> ResolveStateDTypes(DType model_dtype, const std::string& cache_dtype,
                                               const std::string& ssm_cache_dtype) {
  StateDTypes d{model_dtype, model_dtype};
  if (!cache_dtype.empty() && cache_dtype != "auto") {
    auto t = ParseDType(cache_dtype);
    if (!t.ok())
      return absl::InvalidArgumentError(absl::StrCat("mamba_cache_dtype: ", t.status().message()));
    d.conv = d.ssm = *t;
  }
  if (!ssm_cache_dtype.empty() && ssm_cache_dtype != "auto") {
    auto t = ParseDType(ssm_cache_dtype);
    if (!t.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("mamba_ssm_cache_dtype: ", t.status().message()));
    d.ssm = *t;
  }
  return d;
}

absl::StatusOr<LayerStateShapes> Mamba1StateShapes(int64_t d_inner, int64_t d_state, int64_t d_conv,
                                                   int64_t tp, ConvLayout layout,
                                                   StateDTypes dtypes) {
  RETURN_IF_ERROR(DivisibleByTp("d_inner", d_inner, tp));
  RETURN_IF_ERROR(Positive("d_state", d_state));
  RETURN_IF_ERROR(CheckConvWidth(d_conv, 0));
  return LayerStateShapes{ConvShape("conv", d_conv - 1, d_inner / tp, layout, dtypes.conv),
                          {"ssm", {d_inner / tp, d_state}, dtypes.ssm}};
}

absl::StatusOr<LayerStateShapes> Mamba2StateShapes(const Mamba2StateArgs& a, ConvLayout layout,
                                                   StateDTypes dtypes) {
  RETURN_IF_ERROR(Positive("head_dim", a.head_dim));
  RETURN_IF_ERROR(Positive("d_state", a.d_state));
  RETURN_IF_ERROR(CheckConvWidth(a.d_conv, a.num_spec));
  ASSIGN_OR_RETURN(Mamba2RankSlice s,
                   ComputeMamba2RankSlice(a.num_heads, a.n_groups, a.tp, a.rank));
  const int64_t conv_dim = s.num_heads * a.head_dim + 2 * s.num_groups * a.d_state;
  return LayerStateShapes{
      ConvShape("conv", a.d_conv - 1 + a.num_spec, conv_dim, layout, dtypes.conv),
      {"ssm", {s.num_heads, a.head_dim, a.d_state}, dtypes.ssm}};
}

absl::StatusOr<LayerStateShapes> ShortConvStateShapes(int64_t dim, int64_t d_conv, int64_t tp,
                                                      ConvLayout layout, DType dtype) {
  RETURN_IF_ERROR(DivisibleByTp("dim", dim, tp));
  RETURN_IF_ERROR(CheckConvWidth(d_conv, 0));
  return LayerStateShapes{ConvShape("conv", d_conv - 1, dim / tp, layout, dtype)};
}

absl::StatusOr<LayerStateShapes> LinearAttentionStateShapes(int64_t num_heads, int64_t head_dim,
                                                            int64_t tp, DType dtype) {
  RETURN_IF_ERROR(DivisibleByTp("num_heads", num_heads, tp));
  RETURN_IF_ERROR(Positive("head_dim", head_dim));
  return LayerStateShapes{{"recurrent", {num_heads / tp, head_dim, head_dim}, dtype}};
}

absl::StatusOr<LayerStateShapes> GatedDeltaNetStateShapes(int64_t num_k_heads, int64_t num_v_heads,
                                                          int64_t head_k_dim, int64_t head_v_dim,
                                                          int64_t d_conv, int64_t num_spec,
                                                          int64_t tp, ConvLayout layout,
                                                          StateDTypes dtypes) {
  RETURN_IF_ERROR(DivisibleByTp("num_k_heads", num_k_heads, tp));
  RETURN_IF_ERROR(DivisibleByTp("num_v_heads", num_v_heads, tp));
  RETURN_IF_ERROR(Positive("head_k_dim", head_k_dim));
  RETURN_IF_ERROR(Positive("head_v_dim", head_v_dim));
  RETURN_IF_ERROR(CheckConvWidth(d_conv, num_spec));
  const int64_t conv_dim = 2 * num_k_heads * head_k_dim + num_v_heads * head_v_dim;
  return LayerStateShapes{
      ConvShape("conv", d_conv - 1 + num_spec, conv_dim / tp, layout, dtypes.conv),
      {"recurrent", {num_v_heads / tp, head_k_dim, head_v_dim}, dtypes.ssm}};
}

absl::StatusOr<LayerStateShapes> KdaStateShapes(int64_t num_heads, int64_t head_dim, int64_t d_conv,
                                                int64_t tp, ConvLayout layout, StateDTypes dtypes) {
  RETURN_IF_ERROR(DivisibleByTp("num_heads", num_heads, tp));
  RETURN_IF_ERROR(Positive("head_dim", head_dim));
  RETURN_IF_ERROR(CheckConvWidth(d_conv, 0));
  const int64_t proj = num_heads * head_dim / tp;
  return LayerStateShapes{ConvShape("conv_q", d_conv - 1, proj, layout, dtypes.conv),
                          ConvShape("conv_k", d_conv - 1, proj, layout, dtypes.conv),
                          ConvShape("conv_v", d_conv - 1, proj, layout, dtypes.conv),
                          {"recurrent", {num_heads / tp, head_dim, head_dim}, dtypes.ssm}};
}

}  // namespace mambaserve
