// Copy specs: the state moves of one engine step (prefix-cache copies into a sequence's new
// block, speculative-decoding acceptance), with the semantics of vLLM's get_conv_copy_spec /
// get_temporal_copy_spec, generalised to strided copies so the DS conv layout works for any
// accepted count.
//
// A spec copies `num_rows` runs of `row_elems` elements; run r reads from
// src + r * src_row_stride elements and writes to dst + r * dst_row_stride elements. The
// destination of a state copy is always the start of the destination block.
//  - conv state, accepting k tokens (1 <= k <= 1 + num_spec, k <= state_len): rows [k-1,
//    state_len) of the source block's window go to the destination's row 0. SD layout
//    (state_len, dim): one contiguous run of (state_len-k+1)*dim elements. DS layout
//    (dim, state_len): dim runs of (state_len-k+1) elements read from offset k-1 of each row and
//    written to the start of the same row (k = 1 is one contiguous run of the whole block).
//    The conv source is block_ids[cur].
//  - every other state tensor ("ssm", "recurrent", ...): the whole state of block
//    block_ids[cur + k - 1].
//
// Batch rule (ValidateCopyBatch): the copies of one batch run in no defined order, so a batch is
// refused (InvalidArgument) when any destination range overlaps another destination or any
// source range (its own included), except that a spec whose source and destination are
// identical is a no-op and is dropped. Ranges are each spec's bounding byte range.
#ifndef MAMBASERVE_STATE_MANAGER_COPY_SPEC_H_
#define MAMBASERVE_STATE_MANAGER_COPY_SPEC_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "core/buffer.h"
#include "core/device.h"
#include "core/stream.h"
#include "state_manager/block_allocator.h"
#include "state_manager/state_pool.h"

namespace mambaserve {

struct CopySpec {
  uint64_t src = 0;  // byte addresses (host or device)
  uint64_t dst = 0;
  int64_t num_rows = 1;
  int64_t src_row_stride = 0;  // elements
  int64_t dst_row_stride = 0;  // elements
  int64_t row_elems = 0;       // elements per run
  int32_t elem_bytes = 4;

  int64_t numel() const { return num_rows * row_elems; }
  int64_t nbytes() const { return numel() * elem_bytes; }
  bool is_contiguous() const { return num_rows == 1; }
  bool operator==(const CopySpec&) const = default;
};

// One state move of a sequence: for every layer and tensor of the pool, copy from the blocks
// named by (block_ids, cur, num_accepted) into block `dst`.
struct BlockCopy {
  std::vector<BlockId> block_ids;  // the sequence's blocks (speculative slots follow `cur`)
  int64_t cur = 0;
  int64_t num_accepted = 1;
  BlockId dst = kNullBlock;

  // The whole state of block src into block dst (k = 1).
  static BlockCopy Whole(BlockId src, BlockId dst) { return BlockCopy{{src}, 0, 1, dst}; }
};

// True for tensors that hold a conv window (name starts with "conv").
bool IsConvStateTensor(const StateTensorShape& shape);

// The conv / temporal spec of one layer's tensor, as above. Errors for bad indices, k out of
// range, a null source or destination block.
absl::StatusOr<CopySpec> ConvCopySpec(const StatePool& pool, int64_t layer, int64_t tensor,
                                      std::span<const BlockId> block_ids, int64_t cur,
                                      int64_t num_accepted, BlockId dst);
absl::StatusOr<CopySpec> TemporalCopySpec(const StatePool& pool, int64_t layer, int64_t tensor,
                                          std::span<const BlockId> block_ids, int64_t cur,
                                          int64_t num_accepted, BlockId dst);

// All specs of a step: for each BlockCopy, every layer, every tensor (conv tensors by
// ConvCopySpec, the others by TemporalCopySpec), in that order. The result is validated.
absl::StatusOr<std::vector<CopySpec>> BuildStepCopySpecs(const StatePool& pool,
                                                         std::span<const BlockCopy> copies);

// Applies the batch rule; returns the specs without no-ops.
absl::StatusOr<std::vector<CopySpec>> ValidateCopyBatch(std::span<const CopySpec> specs);

// Runs validated specs on host memory (memcpy per run).
absl::Status ExecuteCopySpecsCpu(std::span<const CopySpec> specs);

// Runs a step's specs on one device: on the CPU by memcpy; on a GPU as ONE kernel launch over
// all specs (descriptors are uploaded to a device array owned by the executor, reused across
// steps; use one executor per stream). Validates the batch first.
class CopyExecutor {
 public:
  static absl::StatusOr<CopyExecutor> Create(Device device);
  CopyExecutor(CopyExecutor&&) = default;
  CopyExecutor& operator=(CopyExecutor&&) = default;

  absl::Status Run(std::span<const CopySpec> specs, const Stream& stream);
  Device device() const { return device_; }
  int64_t num_launches() const { return num_launches_; }  // GPU kernel launches so far

 private:
  CopyExecutor() = default;
  Device device_;
  Buffer descriptors_;                  // device array of copy descriptors (CUDA only)
  std::vector<char> host_descriptors_;  // their host copy, kept until the next Run
  int64_t num_launches_ = 0;
};

}  // namespace mambaserve

#endif  // MAMBASERVE_STATE_MANAGER_COPY_SPEC_H_
