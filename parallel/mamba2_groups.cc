#include "parallel/mamba2_groups.h"

#include "absl/strings/str_cat.h"

namespace mambaserve {

int64_t ExtraGroupsForHeadShards(int64_t num_groups, int64_t tp) {
  if (num_groups % tp == 0) return 0;
  return tp - num_groups;
}

absl::StatusOr<Mamba2RankSlice> ComputeMamba2RankSlice(int64_t num_heads, int64_t num_groups,
                                                       int64_t tp, int64_t rank) {
  if (num_heads <= 0)
    return absl::InvalidArgumentError(absl::StrCat("num_heads must be positive, got ", num_heads));
  if (num_groups <= 0)
    return absl::InvalidArgumentError(absl::StrCat("n_groups must be positive, got ", num_groups));
  if (tp <= 0)
    return absl::InvalidArgumentError(absl::StrCat("tp_size must be positive, got ", tp));
  if (rank < 0 || rank >= tp) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " is outside [0, ", tp, ")"));
  }
  if (num_heads % tp != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_heads (", num_heads, ") must be divisible by tp_size (", tp, ")"));
  }
  if (num_heads % num_groups != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_heads (", num_heads, ") must be divisible by n_groups (", num_groups, ")"));
  }
  Mamba2RankSlice s;
  s.heads_per_group = num_heads / num_groups;
  s.num_heads = num_heads / tp;
  s.first_head = rank * s.num_heads;
  const int64_t last_head = s.first_head + s.num_heads - 1;
  s.first_group = s.first_head / s.heads_per_group;
  s.num_groups = last_head / s.heads_per_group - s.first_group + 1;
  // A group spans ranks when this rank holds only part of the heads of one of its groups.
  const bool starts_mid_group = s.first_head % s.heads_per_group != 0;
  const bool ends_mid_group = (last_head + 1) % s.heads_per_group != 0;
  s.group_spans_ranks = starts_mid_group || ends_mid_group;
  return s;
}

}  // namespace mambaserve
