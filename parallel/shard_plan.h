// The shard plan: the one source of truth for every per-rank size and slice of a tensor-parallel
// Mamba layer, built from the global sizes, tp and the rank. Layers and the weight loader read
// slices of the global (checkpoint) tensors through it and size their buffers from it; nothing
// else computes a per-rank size. Head and group ownership comes from parallel/mamba2_groups.h.
//
// All ranges are [begin, begin + size) in GLOBAL (unsharded) coordinates of the named tensor.
// Pieces that a rank concatenates are given as an ordered list of ranges; the local tensor is the
// concatenation of those global ranges, in order (zero-size pieces are left out of the lists).
//
// Mamba-2 (H heads of P channels, I = H*P, G groups, N = d_state; see DESIGN.md):
//   in_proj weight (2*d_mlp + 2*I + 2*G*N + H, d_model), rows [z0 | x0 | z | x | B | C | dt].
//   Rank r holds rows [z0_r | x0_r | z_r | x_r | B_r | C_r | dt_r] (in_proj_rows, in this order):
//   z_r/x_r/dt_r follow its heads, B_r/C_r are the rows of the groups its heads read
//   (mamba2_groups.h: disjoint groups when G % tp == 0, a copy of group r/(tp/G) when tp % G == 0,
//   every group its heads touch when heads straddle groups). z0_r/x0_r are an even split of d_mlp
//   (usually 0). Column-parallel: no communication.
//   conv1d weight (I + 2*G*N, 1, d_conv) and bias (I + 2*G*N), rows [x | B | C]: rank r holds
//   [x_r | B_r | C_r] (conv_channels). Local conv channels: local_conv_dim.
//   A_log, D (per head), dt_bias: `heads`. D per channel (D_has_hdim) and norm.weight: `inner`.
//   out_proj weight (d_model, d_mlp + I), columns [mlp | y]: rank r holds out_proj_cols;
//   row-parallel: its output is a partial sum, all-reduced over the tp group.
//   Gated RMSNorm: see GatedNormLayout.
// Mamba-1 (d_inner split evenly, rank r holds channels [r*d_inner/tp, (r+1)*d_inner/tp)):
//   in_proj weight (2*d_inner, d_model) rows [x | z] -> [x_r | z_r]; conv1d weight
//   (d_inner, 1, d_conv)/bias rows -> inner; x_proj weight (dt_rank + 2N, d_inner) columns ->
//   inner (row-parallel: its [tokens, dt_rank + 2N] output is all-reduced, in fp32);
//   dt_proj weight (d_inner, dt_rank)/bias rows, A_log (d_inner, N) rows, D rows -> inner;
//   out_proj weight (d_model, d_inner) columns -> inner (row-parallel, all-reduced).
// Vocab-parallel embedding / LM head: the vocabulary is padded up to a multiple of
//   tp * pad_multiple (padded rows are zero weights; their logits must be masked to -inf / cut
//   off after the gather), and rank r holds padded rows [r*V_p/tp, (r+1)*V_p/tp).
#ifndef MAMBASERVE_PARALLEL_SHARD_PLAN_H_
#define MAMBASERVE_PARALLEL_SHARD_PLAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/mamba2_groups.h"

namespace mambaserve {

// [begin, begin + size) of one dimension of a global tensor.
struct IndexRange {
  int64_t begin = 0;
  int64_t size = 0;
  int64_t end() const { return begin + size; }
  bool operator==(const IndexRange&) const = default;
};
// Sum of sizes.
int64_t TotalSize(const std::vector<IndexRange>& ranges);
std::string RangesToString(const std::vector<IndexRange>& ranges);

struct Mamba2Dims {
  int64_t d_model = 0;
  int64_t d_inner = 0;  // must equal num_heads * head_dim
  int64_t num_heads = 0;
  int64_t head_dim = 0;
  int64_t n_groups = 0;
  int64_t d_state = 0;
  int64_t d_conv = 0;
  int64_t d_mlp = 0;  // the optional [z0 | x0] gated-MLP rows of in_proj; usually 0
};

struct Mamba1Dims {
  int64_t d_model = 0;
  int64_t d_inner = 0;
  int64_t d_state = 0;
  int64_t dt_rank = 0;
  int64_t d_conv = 0;
};

// How rank r computes the gated RMSNorm (normalised per ORIGINAL group of I/G channels).
// The rank's channels (its `inner` range, local_d_inner of them) are cut, in order, into
// `local_groups` runs: run j holds channels_per_local_group[j] channels of global group
// first_group + j. When needs_cross_rank_sum is false every run is a whole group
// (channels_per_local_group[j] == group_size) and the norm is rank-local. Otherwise the rank
// writes its partial sums of squares into a [tokens, num_groups] fp32 buffer (zero for groups it
// does not hold), all-reduces it over the tp group, and divides by group_size (the global count).
// needs_cross_rank_sum is the same on every rank of a plan (all ranks must join the all-reduce).
struct GatedNormLayout {
  int64_t num_groups = 0;   // G, the width of the partial-sum all-reduce
  int64_t group_size = 0;   // I / G channels per group (the RMS denominator)
  int64_t first_group = 0;  // global group of local run 0
  int64_t local_groups = 0;
  std::vector<int64_t> channels_per_local_group;
  bool needs_cross_rank_sum = false;
};

struct Mamba2ShardPlan {
  Mamba2Dims global;
  int64_t tp = 1;
  int64_t rank = 0;
  Mamba2RankSlice groups;  // from ComputeMamba2RankSlice

  // Local sizes.
  int64_t local_heads = 0;     // H / tp
  int64_t local_d_inner = 0;   // local_heads * P
  int64_t local_groups = 0;    // groups whose B/C rows this rank holds
  int64_t local_d_mlp = 0;     // d_mlp / tp
  int64_t local_conv_dim = 0;  // local_d_inner + 2 * local_groups * N
  int64_t local_in_proj_rows =
      0;  // 2*local_d_mlp + 2*local_d_inner + 2*local_groups*N + local_heads
  int64_t local_out_proj_cols = 0;  // local_d_mlp + local_d_inner
  // Virtual group count: G when G % tp == 0; G + (tp - G) = tp under the replication rule
  // (tp % G == 0); 0 when heads straddle groups, where there is no uniform virtual layout (the
  // number of local groups, hence local_conv_dim, can differ between ranks, e.g. H=12, G=3,
  // tp=4 gives 1, 2, 2, 1). For information; state shapes come from state_manager.
  int64_t virtual_groups = 0;

  IndexRange heads;        // A_log, D (per head), dt_bias, dt rows of this rank
  IndexRange inner;        // channels of this rank's heads: x, z, norm.weight, D per channel
  IndexRange group_range;  // global groups [first_group, first_group + local_groups)

  // Global rows of each in_proj piece held by this rank (size 0 when empty).
  IndexRange in_proj_z0, in_proj_x0, in_proj_z, in_proj_x, in_proj_B, in_proj_C, in_proj_dt;
  std::vector<IndexRange> in_proj_rows;   // [z0_r | x0_r | z_r | x_r | B_r | C_r | dt_r]
  std::vector<IndexRange> conv_channels;  // [x_r | B_r | C_r] rows of conv1d weight and bias
  std::vector<IndexRange> out_proj_cols;  // [mlp_r | y_r] columns of out_proj weight
  GatedNormLayout norm;

  // Local head j reads local group (first_head + j) / heads_per_group - first_group.
  int64_t LocalGroupOfHead(int64_t j) const { return groups.LocalGroupOfHead(j); }
  std::string DebugString() const;
};

struct Mamba1ShardPlan {
  Mamba1Dims global;
  int64_t tp = 1;
  int64_t rank = 0;

  int64_t local_d_inner = 0;  // d_inner / tp
  int64_t x_proj_out = 0;     // dt_rank + 2 * d_state: per-token width of the x_proj all-reduce

  IndexRange inner;  // conv channels, x_proj columns, dt_proj rows, A_log/D rows, out_proj columns
  std::vector<IndexRange> in_proj_rows;  // [x_r | z_r]
  IndexRange conv_channels;
  IndexRange x_proj_cols;
  IndexRange dt_proj_rows;
  IndexRange a_log_rows;
  IndexRange d_rows;
  IndexRange out_proj_cols;

  std::string DebugString() const;
};

struct VocabShardPlan {
  int64_t vocab_size = 0;    // real vocabulary
  int64_t padded_vocab = 0;  // multiple of tp * pad_multiple, >= vocab_size
  int64_t tp = 1;
  int64_t rank = 0;
  IndexRange rows;         // this rank's rows of the padded embedding / LM head
  int64_t valid_rows = 0;  // rows of `rows` below vocab_size (the rest are padding)
};

// Errors (InvalidArgument) name the offending field: non-positive sizes, d_inner != H*P,
// H % tp, H % G, d_mlp % tp, rank outside [0, tp).
absl::StatusOr<Mamba2ShardPlan> MakeMamba2ShardPlan(const Mamba2Dims& dims, int64_t tp,
                                                    int64_t rank);
// Errors: non-positive sizes, d_inner % tp, rank outside [0, tp).
absl::StatusOr<Mamba1ShardPlan> MakeMamba1ShardPlan(const Mamba1Dims& dims, int64_t tp,
                                                    int64_t rank);
// pad_multiple >= 1 (e.g. 64 for aligned GEMMs); padded_vocab = round_up(V, tp * pad_multiple).
absl::StatusOr<VocabShardPlan> MakeVocabShardPlan(int64_t vocab_size, int64_t tp, int64_t rank,
                                                  int64_t pad_multiple = 1);

}  // namespace mambaserve

#endif  // MAMBASERVE_PARALLEL_SHARD_PLAN_H_
