#include "parallel/shard_plan.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"

namespace mambaserve {
namespace {

absl::Status CheckPositive(const char* field, int64_t v) {
  MS_CHECK_ARG(v > 0, field, " must be positive, got ", v);
  return absl::OkStatus();
}

absl::Status CheckTpRank(int64_t tp, int64_t rank) {
  MS_CHECK_ARG(tp > 0, "tp_size must be positive, got ", tp);
  MS_CHECK_ARG(rank >= 0 && rank < tp, "rank ", rank, " is outside [0, tp_size=", tp, ")");
  return absl::OkStatus();
}

void PushIfNonEmpty(std::vector<IndexRange>& v, IndexRange r) {
  if (r.size > 0) v.push_back(r);
}

std::string RangeToString(const IndexRange& r) {
  return absl::StrCat("[", r.begin, ",", r.end(), ")");
}

}  // namespace

int64_t TotalSize(const std::vector<IndexRange>& ranges) {
  int64_t n = 0;
  for (const IndexRange& r : ranges) n += r.size;
  return n;
}

std::string RangesToString(const std::vector<IndexRange>& ranges) {
  std::vector<std::string> parts;
  parts.reserve(ranges.size());
  for (const IndexRange& r : ranges) parts.push_back(RangeToString(r));
  return absl::StrCat("{", absl::StrJoin(parts, " "), "}");
}

absl::StatusOr<Mamba2ShardPlan> MakeMamba2ShardPlan(const Mamba2Dims& d, int64_t tp, int64_t rank) {
  RETURN_IF_ERROR(CheckPositive("d_model", d.d_model));
  RETURN_IF_ERROR(CheckPositive("d_inner", d.d_inner));
  RETURN_IF_ERROR(CheckPositive("num_heads", d.num_heads));
  RETURN_IF_ERROR(CheckPositive("head_dim", d.head_dim));
  RETURN_IF_ERROR(CheckPositive("n_groups", d.n_groups));
  RETURN_IF_ERROR(CheckPositive("d_state", d.d_state));
  RETURN_IF_ERROR(CheckPositive("d_conv", d.d_conv));
  MS_CHECK_ARG(d.d_mlp >= 0, "d_mlp must be >= 0, got ", d.d_mlp);
  RETURN_IF_ERROR(CheckTpRank(tp, rank));
  MS_CHECK_ARG(d.d_inner == d.num_heads * d.head_dim, "d_inner (", d.d_inner,
               ") must equal num_heads * head_dim (", d.num_heads, " * ", d.head_dim, ")");
  MS_CHECK_ARG(d.num_heads % tp == 0, "num_heads (", d.num_heads,
               ") must be divisible by tp_size (", tp, ")");
  MS_CHECK_ARG(d.num_heads % d.n_groups == 0, "num_heads (", d.num_heads,
               ") must be divisible by n_groups (", d.n_groups, ")");
  MS_CHECK_ARG(d.d_mlp % tp == 0, "d_mlp (", d.d_mlp, ") must be divisible by tp_size (", tp, ")");

  Mamba2ShardPlan p;
  p.global = d;
  p.tp = tp;
  p.rank = rank;
  ASSIGN_OR_RETURN(p.groups, ComputeMamba2RankSlice(d.num_heads, d.n_groups, tp, rank));
  const int64_t P = d.head_dim;
  const int64_t N = d.d_state;
  const int64_t I = d.d_inner;
  const int64_t G = d.n_groups;
  const int64_t H = d.num_heads;

  p.local_heads = p.groups.num_heads;
  p.local_d_inner = p.local_heads * P;
  p.local_groups = p.groups.num_groups;
  p.local_d_mlp = d.d_mlp / tp;
  p.local_conv_dim = p.local_d_inner + 2 * p.local_groups * N;
  p.local_in_proj_rows =
      2 * p.local_d_mlp + 2 * p.local_d_inner + 2 * p.local_groups * N + p.local_heads;
  p.local_out_proj_cols = p.local_d_mlp + p.local_d_inner;
  p.virtual_groups = G % tp == 0 ? G : (tp % G == 0 ? G + ExtraGroupsForHeadShards(G, tp) : 0);

  p.heads = {p.groups.first_head, p.local_heads};
  p.inner = {p.groups.first_head * P, p.local_d_inner};
  p.group_range = {p.groups.first_group, p.local_groups};

  // in_proj row offsets of each global piece: [z0 | x0 | z | x | B | C | dt].
  const int64_t off_z0 = 0;
  const int64_t off_x0 = d.d_mlp;
  const int64_t off_z = 2 * d.d_mlp;
  const int64_t off_x = off_z + I;
  const int64_t off_B = off_x + I;
  const int64_t off_C = off_B + G * N;
  const int64_t off_dt = off_C + G * N;
  p.in_proj_z0 = {off_z0 + rank * p.local_d_mlp, p.local_d_mlp};
  p.in_proj_x0 = {off_x0 + rank * p.local_d_mlp, p.local_d_mlp};
  p.in_proj_z = {off_z + p.inner.begin, p.inner.size};
  p.in_proj_x = {off_x + p.inner.begin, p.inner.size};
  p.in_proj_B = {off_B + p.group_range.begin * N, p.local_groups * N};
  p.in_proj_C = {off_C + p.group_range.begin * N, p.local_groups * N};
  p.in_proj_dt = {off_dt + p.heads.begin, p.heads.size};
  for (const IndexRange& r : {p.in_proj_z0, p.in_proj_x0, p.in_proj_z, p.in_proj_x, p.in_proj_B,
                              p.in_proj_C, p.in_proj_dt}) {
    PushIfNonEmpty(p.in_proj_rows, r);
  }

  // conv1d rows: [x (I) | B (G*N) | C (G*N)].
  PushIfNonEmpty(p.conv_channels, p.inner);
  PushIfNonEmpty(p.conv_channels, {I + p.group_range.begin * N, p.local_groups * N});
  PushIfNonEmpty(p.conv_channels, {I + G * N + p.group_range.begin * N, p.local_groups * N});

  // out_proj columns: [mlp (d_mlp) | y (I)].
  PushIfNonEmpty(p.out_proj_cols, {rank * p.local_d_mlp, p.local_d_mlp});
  PushIfNonEmpty(p.out_proj_cols, {d.d_mlp + p.inner.begin, p.inner.size});

  // Gated norm: cut the rank's channels at group boundaries.
  GatedNormLayout& n = p.norm;
  n.num_groups = G;
  n.group_size = I / G;
  n.first_group = p.group_range.begin;
  n.local_groups = p.local_groups;
  for (int64_t g = n.first_group; g < n.first_group + n.local_groups; ++g) {
    const int64_t lo = std::max(g * n.group_size, p.inner.begin);
    const int64_t hi = std::min((g + 1) * n.group_size, p.inner.end());
    n.channels_per_local_group.push_back(hi - lo);
  }
  // Uniform across ranks: rank 0 ends mid-group iff (H/tp) % (H/G) != 0, and then every rank
  // holds a partial group (see shard_plan_test); equivalently some group spans ranks.
  n.needs_cross_rank_sum = (H / tp) % (H / G) != 0;
  return p;
}

std::string Mamba2ShardPlan::DebugString() const {
  return absl::StrCat("Mamba2ShardPlan{tp=", tp, " rank=", rank, " heads=", RangeToString(heads),
                      " inner=", RangeToString(inner), " groups=", RangeToString(group_range),
                      " in_proj_rows=", RangesToString(in_proj_rows),
                      " conv_channels=", RangesToString(conv_channels),
                      " out_proj_cols=", RangesToString(out_proj_cols),
                      " norm_cross_rank=", norm.needs_cross_rank_sum, "}");
}

absl::StatusOr<Mamba1ShardPlan> MakeMamba1ShardPlan(const Mamba1Dims& d, int64_t tp, int64_t rank) {
  RETURN_IF_ERROR(CheckPositive("d_model", d.d_model));
  RETURN_IF_ERROR(CheckPositive("d_inner", d.d_inner));
  RETURN_IF_ERROR(CheckPositive("d_state", d.d_state));
  RETURN_IF_ERROR(CheckPositive("dt_rank", d.dt_rank));
  RETURN_IF_ERROR(CheckPositive("d_conv", d.d_conv));
  RETURN_IF_ERROR(CheckTpRank(tp, rank));
  MS_CHECK_ARG(d.d_inner % tp == 0, "d_inner (", d.d_inner, ") must be divisible by tp_size (", tp,
               ")");
  Mamba1ShardPlan p;
  p.global = d;
  p.tp = tp;
  p.rank = rank;
  p.local_d_inner = d.d_inner / tp;
  p.x_proj_out = d.dt_rank + 2 * d.d_state;
  p.inner = {rank * p.local_d_inner, p.local_d_inner};
  p.in_proj_rows = {p.inner, {d.d_inner + p.inner.begin, p.inner.size}};
  p.conv_channels = p.inner;
  p.x_proj_cols = p.inner;
  p.dt_proj_rows = p.inner;
  p.a_log_rows = p.inner;
  p.d_rows = p.inner;
  p.out_proj_cols = p.inner;
  return p;
}

std::string Mamba1ShardPlan::DebugString() const {
  return absl::StrCat("Mamba1ShardPlan{tp=", tp, " rank=", rank, " inner=", RangeToString(inner),
                      " in_proj_rows=", RangesToString(in_proj_rows), "}");
}

absl::StatusOr<VocabShardPlan> MakeVocabShardPlan(int64_t vocab_size, int64_t tp, int64_t rank,
                                                  int64_t pad_multiple) {
  RETURN_IF_ERROR(CheckPositive("vocab_size", vocab_size));
  RETURN_IF_ERROR(CheckPositive("pad_multiple", pad_multiple));
  RETURN_IF_ERROR(CheckTpRank(tp, rank));
  VocabShardPlan p;
  p.vocab_size = vocab_size;
  p.tp = tp;
  p.rank = rank;
  const int64_t m = tp * pad_multiple;
  p.padded_vocab = (vocab_size + m - 1) / m * m;
  const int64_t per = p.padded_vocab / tp;
  p.rows = {rank * per, per};
  p.valid_rows = std::clamp<int64_t>(vocab_size - p.rows.begin, 0, per);
  return p;
}

}  // namespace mambaserve
