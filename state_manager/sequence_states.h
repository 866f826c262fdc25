// Per-sequence state blocks for the scheduler (rank 0): the block table of every sequence,
// prefix-cache admission, the copy-into-the-new-block rule, and the block-boundary bookkeeping of
// both prefix-caching modes. It decides block ids and copy lists only; the engine runs the
// copies (copy_spec.h), zeroes blocks (StatePool::ZeroBlock) and the kernels.
//
// One engine step:
//   states.BeginStep();
//   for each sequence in the step: states.Schedule(id, num_tokens)  -> SequenceStepEntry
//   const StepPlan& plan = states.plan();
//   run BuildStepCopySpecs(pool, plan.copies) (one batched launch), zero plan.zero_blocks,
//   then the forward pass (each sequence reads its initial state from entry.state_block unless
//   !has_initial_state, writes its final state there; in kAll mode the scan also stores the
//   state at each interior block boundary into entry.boundary_blocks);
//   states.EndStep();   // registers the step's block-boundary states in the prefix cache
//
// Each sequence has one running block holding its current state. In kAlign mode, when a step
// ends exactly on a block boundary (processed tokens % B == 0) the running block is registered
// under that prefix's hash and becomes immutable ("sealed"); the next Schedule() of the sequence
// allocates a new block and emits the copy sealed -> new (BlockCopy::Whole) before the step's
// kernels run. A prefix-cache hit at admission starts the sequence on the (sealed) hit block,
// so the same rule copies it into the sequence's own block. A chunk may span several blocks;
// in kAlign mode only a chunk end on a boundary is cacheable, so schedulers should cut prefill
// chunks at block boundaries (AlignedChunk helps). kAll mode additionally gets every interior
// boundary state from the kernels (they must align their scan chunks to absolute positions, i.e.
// cut a sequence's first chunk at the next multiple of chunk_size, so that every block boundary,
// a multiple of B and hence of chunk_size, is a chunk end). Sources of this step's copies are
// released only at EndStep(), so a block read by a copy is never reallocated within the step.
#ifndef MAMBASERVE_STATE_MANAGER_SEQUENCE_STATES_H_
#define MAMBASERVE_STATE_MANAGER_SEQUENCE_STATES_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "state_manager/block_allocator.h"
#include "state_manager/copy_spec.h"
#include "state_manager/prefix_cache.h"

namespace mambaserve {

enum class PrefixCachingMode {
  kNone = 0,   // no prefix cache
  kAlign = 1,  // vLLM "align": the state at a chunk end on a block boundary is cached
  kAll = 2,    // vLLM "all": the scan writes the state at every block boundary
};

struct SequenceStatesConfig {
  PrefixCachingMode mode = PrefixCachingMode::kAlign;
  // Block size B in tokens (the cache's); used only when mode != kNone.
  int64_t block_size = 0;
};

// The state of one sequence after `position` tokens (a multiple of B) goes to `block`
// (kNullBlock: no store wanted, the prefix is already cached).
struct BoundaryWrite {
  int64_t position = 0;
  BlockId block = kNullBlock;
};

struct SequenceStepEntry {
  int64_t seq_id = 0;
  BlockId state_block = kNullBlock;  // initial state in, final state out
  bool has_initial_state = false;    // false: start from zero (the block is also zeroed)
  int64_t prefix_offset = 0;         // tokens consumed before this step (absolute position)
  int64_t num_tokens = 0;
  // kAll mode: one entry per block boundary strictly inside (prefix_offset,
  // prefix_offset + num_tokens), in order: boundary j is at position
  // (prefix_offset / B + 1 + j) * B. This is the scan's per-sequence destination list; 0 = skip.
  std::vector<BlockId> boundary_blocks;
  std::vector<BoundaryWrite> BoundaryWrites(int64_t block_size) const;
};

struct StepPlan {
  std::vector<SequenceStepEntry> entries;  // in Schedule() order
  std::vector<BlockCopy> copies;           // run before the step's kernels
  std::vector<BlockId> zero_blocks;        // zero before the step's kernels
};

// A step's per-sequence block indices flattened for the kernels (entries in plan order, which
// is the order of the packed batch when the scheduler packs in Schedule() order).
struct KernelBlockArrays {
  std::vector<int32_t> state_blocks;       // initial/final state block per sequence
  std::vector<uint8_t> has_initial_state;  // 0: start from zero
  std::vector<int64_t> prefix_offsets;     // absolute position of each sequence's first token
  std::vector<int64_t> boundary_offsets;   // entries + 1: sequence i's kAll destination blocks
  std::vector<int32_t> boundary_blocks;    // are boundary_blocks[off[i], off[i+1]) (0 = skip)
};
KernelBlockArrays ToKernelArrays(const StepPlan& plan);

// kAll mode: the block boundaries strictly inside (prefix_offset, prefix_offset + num_tokens).
std::vector<int64_t> InteriorBoundaries(int64_t prefix_offset, int64_t num_tokens,
                                        int64_t block_size);

class SequenceStates {
 public:
  // `allocator` must outlive this; `cache` too, and it is required unless mode is kNone (its
  // block size is used).
  static absl::StatusOr<SequenceStates> Create(BlockAllocator* allocator, PrefixCache* cache,
                                               const SequenceStatesConfig& config);
  SequenceStates(SequenceStates&&) = default;
  SequenceStates& operator=(SequenceStates&&) = default;

  // Admits a sequence with its prompt (>= 1 token). With a cache, looks up the longest cached
  // prefix (<= n-1 tokens); the sequence then starts with that many tokens consumed. Returns the
  // hit token count. Allocates nothing yet (blocks come at the first Schedule()).
  absl::StatusOr<int64_t> AddSequence(int64_t seq_id, std::vector<TokenId> prompt);
  // Appends tokens (e.g. sampled ones) to a sequence's known tokens.
  absl::Status AppendTokens(int64_t seq_id, std::span<const TokenId> tokens);
  // Releases all of a sequence's blocks (cached ones stay with the cache). Allowed mid-step only
  // for sequences not scheduled in it.
  absl::Status FreeSequence(int64_t seq_id);

  void BeginStep();
  // Schedules the next `num_tokens` unconsumed known tokens of a sequence in this step (once per
  // sequence per step). ResourceExhausted when no block can be had (nothing is changed then).
  absl::StatusOr<SequenceStepEntry> Schedule(int64_t seq_id, int64_t num_tokens);
  const StepPlan& plan() const { return plan_; }
  absl::Status EndStep();

  // Largest chunk <= budget whose end is a block boundary, or the end of the known tokens when
  // that comes first; a chunk shorter than one block when the sequence is mid-block.
  absl::StatusOr<int64_t> AlignedChunk(int64_t seq_id, int64_t budget) const;

  absl::StatusOr<int64_t> NumConsumed(int64_t seq_id) const;
  absl::StatusOr<int64_t> NumKnown(int64_t seq_id) const;
  // The running block (kNullBlock before the first Schedule()).
  absl::StatusOr<BlockId> StateBlock(int64_t seq_id) const;
  int64_t num_sequences() const { return static_cast<int64_t>(seqs_.size()); }

 private:
  struct Seq {
    std::vector<TokenId> tokens;
    std::vector<PrefixHash> hashes;  // chain hashes of the full blocks of `tokens`
    int64_t consumed = 0;
    BlockId running = kNullBlock;
    bool sealed = false;     // running block is cached: copy before writing
    bool scheduled = false;  // in this step
    int64_t step_tokens = 0;
  };
  struct PendingInsert {  // kAll mode: a boundary block to register at EndStep()
    PrefixHash hash;
    PrefixHash parent;
    std::vector<TokenId> tokens;  // the block's tokens
    BlockId block;                // this manager holds one reference, dropped after the insert
  };
  SequenceStates() = default;
  absl::StatusOr<BlockId> NewBlock();
  void ExtendHashes(Seq& s);

  BlockAllocator* allocator_ = nullptr;
  PrefixCache* cache_ = nullptr;
  SequenceStatesConfig config_;
  absl::flat_hash_map<int64_t, Seq> seqs_;
  StepPlan plan_;
  std::vector<BlockId> deferred_decrefs_;
  std::vector<PendingInsert> pending_inserts_;
  bool in_step_ = false;
};

}  // namespace mambaserve

#endif  // MAMBASERVE_STATE_MANAGER_SEQUENCE_STATES_H_
