#include "state_manager/sequence_states.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace mambaserve {

std::vector<int64_t> InteriorBoundaries(int64_t prefix_offset, int64_t num_tokens,
                                        int64_t block_size) {
  std::vector<int64_t> out;
  if (block_size <= 0) return out;
  for (int64_t b = (prefix_offset / block_size + 1) * block_size; b < prefix_offset + num_tokens;
       b += block_size) {
    out.push_back(b);
  }
  return out;
}

std::vector<BoundaryWrite> SequenceStepEntry::BoundaryWrites(int64_t block_size) const {
  std::vector<BoundaryWrite> out;
  const int64_t first = (prefix_offset / block_size + 1) * block_size;
  for (size_t j = 0; j < boundary_blocks.size(); ++j) {
    out.push_back({first + static_cast<int64_t>(j) * block_size, boundary_blocks[j]});
  }
  return out;
}

KernelBlockArrays ToKernelArrays(const StepPlan& plan) {
  KernelBlockArrays k;
  k.boundary_offsets.push_back(0);
  for (const SequenceStepEntry& e : plan.entries) {
    k.state_blocks.push_back(e.state_block);
    k.has_initial_state.push_back(e.has_initial_state ? 1 : 0);
    k.prefix_offsets.push_back(e.prefix_offset);
    k.boundary_blocks.insert(k.boundary_blocks.end(), e.boundary_blocks.begin(),
                             e.boundary_blocks.end());
    k.boundary_offsets.push_back(static_cast<int64_t>(k.boundary_blocks.size()));
  }
  return k;
}

absl::StatusOr<SequenceStates> SequenceStates::Create(BlockAllocator* allocator, PrefixCache* cache,
                                                      const SequenceStatesConfig& config) {
  MS_CHECK_ARG(allocator != nullptr, "SequenceStates needs an allocator");
  SequenceStates s;
  s.allocator_ = allocator;
  s.config_ = config;
  if (config.mode != PrefixCachingMode::kNone) {
    MS_CHECK_ARG(cache != nullptr, "prefix caching needs a PrefixCache");
    MS_CHECK_ARG(config.block_size == cache->block_size(), "block size ", config.block_size,
                 " differs from the prefix cache's ", cache->block_size());
    s.cache_ = cache;
  }
  return s;
}

void SequenceStates::ExtendHashes(Seq& s) {
  if (cache_ == nullptr) return;
  const int64_t bs = config_.block_size;
  while (static_cast<int64_t>(s.hashes.size() + 1) * bs <= static_cast<int64_t>(s.tokens.size())) {
    const int64_t i = static_cast<int64_t>(s.hashes.size());
    const PrefixHash parent = i == 0 ? kRootPrefixHash : s.hashes.back();
    s.hashes.push_back(
        HashBlock(parent, std::span<const TokenId>(s.tokens).subspan(static_cast<size_t>(i * bs),
                                                                     static_cast<size_t>(bs))));
  }
}

absl::StatusOr<int64_t> SequenceStates::AddSequence(int64_t seq_id, std::vector<TokenId> prompt) {
  MS_CHECK_ARG(!seqs_.contains(seq_id), "sequence ", seq_id, " already exists");
  MS_CHECK_ARG(!prompt.empty(), "sequence ", seq_id, " has an empty prompt");
  Seq s;
  s.tokens = std::move(prompt);
  ExtendHashes(s);
  if (cache_ != nullptr) {
    ASSIGN_OR_RETURN(PrefixHit hit, cache_->LookupHashes(s.tokens, s.hashes));
    if (hit.hit_tokens > 0) {
      s.consumed = hit.hit_tokens;
      s.running = hit.block;  // our reference from the lookup; cached, so sealed
      s.sealed = true;
    }
  }
  const int64_t consumed = s.consumed;
  seqs_.emplace(seq_id, std::move(s));
  return consumed;
}

absl::Status SequenceStates::AppendTokens(int64_t seq_id, std::span<const TokenId> tokens) {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("no sequence ", seq_id));
  it->second.tokens.insert(it->second.tokens.end(), tokens.begin(), tokens.end());
  ExtendHashes(it->second);
  return absl::OkStatus();
}

absl::Status SequenceStates::FreeSequence(int64_t seq_id) {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("no sequence ", seq_id));
  if (it->second.scheduled) {
    return absl::FailedPreconditionError(
        absl::StrCat("sequence ", seq_id,
                     " is scheduled in the current step; free it after "
                     "EndStep()"));
  }
  if (it->second.running != kNullBlock) {
    RETURN_IF_ERROR(allocator_->Decref(it->second.running).status());
  }
  seqs_.erase(it);
  return absl::OkStatus();
}

void SequenceStates::BeginStep() {
  if (cache_ != nullptr) cache_->BeginStep();
  plan_ = StepPlan{};
  in_step_ = true;
}

absl::StatusOr<BlockId> SequenceStates::NewBlock() {
  if (cache_ != nullptr) return cache_->AllocateBlock();
  return allocator_->Allocate();
}

absl::StatusOr<SequenceStepEntry> SequenceStates::Schedule(int64_t seq_id, int64_t num_tokens) {
  if (!in_step_) return absl::FailedPreconditionError("Schedule() outside BeginStep/EndStep");
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("no sequence ", seq_id));
  Seq& s = it->second;
  MS_CHECK_ARG(!s.scheduled, "sequence ", seq_id, " is already scheduled in this step");
  const int64_t known = static_cast<int64_t>(s.tokens.size());
  MS_CHECK_ARG(num_tokens >= 1 && s.consumed + num_tokens <= known, "sequence ", seq_id,
               ": cannot schedule ", num_tokens, " tokens (", s.consumed, " of ", known,
               " consumed)");

  // Take every block first, so a failure leaves nothing changed.
  std::vector<BlockId> taken;
  auto take = [&]() -> absl::StatusOr<BlockId> {
    auto b = NewBlock();
    if (b.ok()) taken.push_back(*b);
    return b;
  };
  auto roll_back = [&](absl::Status st) -> absl::Status {
    for (BlockId b : taken) (void)allocator_->Decref(b);
    return st;
  };

  SequenceStepEntry e;
  e.seq_id = seq_id;
  e.prefix_offset = s.consumed;
  e.num_tokens = num_tokens;
  e.has_initial_state = s.consumed > 0;
  BlockId fresh = kNullBlock;
  if (s.running == kNullBlock || s.sealed) {
    auto b = take();
    if (!b.ok()) return roll_back(b.status());
    fresh = *b;
  }
  std::vector<PendingInsert> inserts;
  if (config_.mode == PrefixCachingMode::kAll) {
    const int64_t bs = config_.block_size;
    for (int64_t pos : InteriorBoundaries(s.consumed, num_tokens, bs)) {
      const int64_t idx = pos / bs - 1;
      if (cache_->Contains(s.hashes[idx])) {
        e.boundary_blocks.push_back(kNullBlock);
        continue;
      }
      auto b = take();
      if (!b.ok()) return roll_back(b.status());
      e.boundary_blocks.push_back(*b);
      PendingInsert p;
      p.hash = s.hashes[idx];
      p.parent = idx == 0 ? kRootPrefixHash : s.hashes[idx - 1];
      p.tokens.assign(s.tokens.begin() + idx * bs, s.tokens.begin() + (idx + 1) * bs);
      p.block = *b;
      inserts.push_back(std::move(p));
    }
  }

  // Commit.
  if (fresh != kNullBlock) {
    if (s.running == kNullBlock) {
      plan_.zero_blocks.push_back(fresh);
    } else {
      // Copy-into-the-new-block: the sealed block stays immutable (and cached).
      plan_.copies.push_back(BlockCopy::Whole(s.running, fresh));
      deferred_decrefs_.push_back(s.running);
    }
    s.running = fresh;
    s.sealed = false;
  }
  for (auto& p : inserts) pending_inserts_.push_back(std::move(p));
  e.state_block = s.running;
  s.scheduled = true;
  s.step_tokens = num_tokens;
  plan_.entries.push_back(e);
  return e;
}

absl::Status SequenceStates::EndStep() {
  if (!in_step_) return absl::FailedPreconditionError("EndStep() without BeginStep()");
  const int64_t bs = config_.block_size;
  for (const SequenceStepEntry& e : plan_.entries) {
    auto it = seqs_.find(e.seq_id);
    if (it == seqs_.end()) continue;
    Seq& s = it->second;
    s.consumed += s.step_tokens;
    s.scheduled = false;
    s.step_tokens = 0;
    if (cache_ != nullptr && s.consumed % bs == 0) {
      const int64_t idx = s.consumed / bs - 1;
      const PrefixHash parent = idx == 0 ? kRootPrefixHash : s.hashes[idx - 1];
      ASSIGN_OR_RETURN(bool inserted,
                       cache_->Insert(s.hashes[idx], parent,
                                      std::span<const TokenId>(s.tokens).subspan(
                                          static_cast<size_t>(idx * bs), static_cast<size_t>(bs)),
                                      s.running));
      if (inserted) s.sealed = true;  // otherwise the prefix is cached already: keep writing
    }
  }
  for (const PendingInsert& p : pending_inserts_) {
    RETURN_IF_ERROR(cache_->Insert(p.hash, p.parent, p.tokens, p.block).status());
    RETURN_IF_ERROR(allocator_->Decref(p.block).status());
  }
  pending_inserts_.clear();
  for (BlockId b : deferred_decrefs_) RETURN_IF_ERROR(allocator_->Decref(b).status());
  deferred_decrefs_.clear();
  in_step_ = false;
  return absl::OkStatus();
}

absl::StatusOr<int64_t> SequenceStates::AlignedChunk(int64_t seq_id, int64_t budget) const {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("no sequence ", seq_id));
  const Seq& s = it->second;
  const int64_t remaining = static_cast<int64_t>(s.tokens.size()) - s.consumed;
  const int64_t limit = std::min(budget, remaining);
  if (limit <= 0 || limit == remaining || cache_ == nullptr) return std::max<int64_t>(limit, 0);
  const int64_t bs = config_.block_size;
  const int64_t to_boundary = bs - s.consumed % bs;
  if (limit < to_boundary) return limit;
  return to_boundary + (limit - to_boundary) / bs * bs;
}

absl::StatusOr<int64_t> SequenceStates::NumConsumed(int64_t seq_id) const {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("no sequence ", seq_id));
  return it->second.consumed;
}

absl::StatusOr<int64_t> SequenceStates::NumKnown(int64_t seq_id) const {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("no sequence ", seq_id));
  return static_cast<int64_t>(it->second.tokens.size());
}

absl::StatusOr<BlockId> SequenceStates::StateBlock(int64_t seq_id) const {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("no sequence ", seq_id));
  return it->second.running;
}

}  // namespace mambaserve
