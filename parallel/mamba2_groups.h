// Which Mamba-2 heads and groups a tensor-parallel rank holds. This is the single place that
// maps heads to groups across ranks; the shard plan and the state shape calculator both use it.
//
// Heads are split contiguously: rank r holds heads [r*H/tp, (r+1)*H/tp). Head h reads group
// h / (H/G). A rank holds exactly the groups its heads read, which covers every case of
// DESIGN.md at once:
//   G % tp == 0            -> G/tp groups per rank, disjoint.
//   tp % G == 0 (G < tp)   -> one group per rank, a copy of group r / (tp/G) (the extra-group
//                             replication rule: G + (tp - G) virtual groups).
//   otherwise              -> a rank's heads may straddle groups; it holds every group they read.
#ifndef MAMBASERVE_PARALLEL_MAMBA2_GROUPS_H_
#define MAMBASERVE_PARALLEL_MAMBA2_GROUPS_H_

#include <cstdint>

#include "absl/status/statusor.h"

namespace mambaserve {

struct Mamba2RankSlice {
  int64_t first_head = 0;
  int64_t num_heads = 0;
  int64_t first_group = 0;  // global index of the rank's first group
  int64_t num_groups = 0;   // groups held by this rank
  int64_t heads_per_group = 0;
  // The rank-local group of local head j.
  int64_t LocalGroupOfHead(int64_t j) const {
    return (first_head + j) / heads_per_group - first_group;
  }
  // True when a group's channels span more than one rank, so the gated RMSNorm needs the
  // cross-rank partial-sum all-reduce.
  bool group_spans_ranks = false;
};

// Validates H, G, tp and rank (H % tp == 0, H % G == 0, 0 <= rank < tp) with errors that name
// the offending field.
absl::StatusOr<Mamba2RankSlice> ComputeMamba2RankSlice(int64_t num_heads, int64_t num_groups,
                                                       int64_t tp, int64_t rank);

// vLLM's extra_groups_for_head_shards: 0 when tp divides G, else tp - G (replication rule).
int64_t ExtraGroupsForHeadShards(int64_t num_groups, int64_t tp);

}  // namespace mambaserve

#endif  // MAMBASERVE_PARALLEL_MAMBA2_GROUPS_H_
