#include "state_manager/prefix_cache.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace mambaserve {
namespace {

constexpr uint64_t kFnvPrime = 0x100000001b3ull;

// FNV-1a 64 over little-endian bytes of a 64-bit value.
inline uint64_t FnvU64(uint64_t h, uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    h ^= (v >> (8 * i)) & 0xff;
    h *= kFnvPrime;
  }
  return h;
}
inline uint64_t FnvU32(uint64_t h, uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    h ^= (v >> (8 * i)) & 0xff;
    h *= kFnvPrime;
  }
  return h;
}
// splitmix64's finaliser.
inline uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

PrefixHash HashBlock(const PrefixHash& parent, std::span<const TokenId> tokens) {
  // Two streams with different offset bases and different input framing.
  uint64_t a = 0xcbf29ce484222325ull;  // the standard FNV-1a 64 offset basis
  uint64_t b = 0x84222325cbf29ce4ull ^ 0x5bd1e9955bd1e995ull;
  a = FnvU64(a, parent.hi);
  a = FnvU64(a, parent.lo);
  a = FnvU64(a, static_cast<uint64_t>(tokens.size()));
  b = FnvU64(b, static_cast<uint64_t>(tokens.size()) ^ 0xa5a5a5a5a5a5a5a5ull);
  b = FnvU64(b, parent.lo);
  b = FnvU64(b, parent.hi);
  for (TokenId t : tokens) {
    a = FnvU32(a, static_cast<uint32_t>(t));
    b = FnvU32(b, static_cast<uint32_t>(t) ^ 0x9e3779b9u);
  }
  return PrefixHash{Mix(a), Mix(b ^ 0x243f6a8885a308d3ull)};
}

std::vector<PrefixHash> ChainHashes(std::span<const TokenId> tokens, int64_t block_size) {
  std::vector<PrefixHash> out;
  if (block_size <= 0) return out;
  const int64_t m = static_cast<int64_t>(tokens.size()) / block_size;
  out.reserve(static_cast<size_t>(m));
  PrefixHash h = kRootPrefixHash;
  for (int64_t i = 0; i < m; ++i) {
    h = HashBlock(
        h, tokens.subspan(static_cast<size_t>(i * block_size), static_cast<size_t>(block_size)));
    out.push_back(h);
  }
  return out;
}

absl::StatusOr<PrefixCache> PrefixCache::Create(BlockAllocator* allocator,
                                                const PrefixCacheConfig& config) {
  MS_CHECK_ARG(allocator != nullptr, "PrefixCache needs an allocator");
  MS_CHECK_ARG(config.block_size >= 1, "prefix cache block size must be >= 1, got ",
               config.block_size);
  MS_CHECK_ARG(config.chunk_size >= 1, "chunk size must be >= 1, got ", config.chunk_size);
  MS_CHECK_ARG(config.block_size % config.chunk_size == 0, "prefix cache block size ",
               config.block_size, " must be a multiple of the chunk size ", config.chunk_size);
  PrefixCache c;
  c.allocator_ = allocator;
  c.config_ = config;
  return c;
}

absl::StatusOr<PrefixHit> PrefixCache::Lookup(std::span<const TokenId> tokens) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t max_blocks = n > 0 ? (n - 1) / config_.block_size : 0;
  std::vector<PrefixHash> hashes = ChainHashes(
      tokens.first(static_cast<size_t>(max_blocks * config_.block_size)), config_.block_size);
  return LookupHashes(tokens, hashes);
}

absl::StatusOr<PrefixHit> PrefixCache::LookupHashes(std::span<const TokenId> tokens,
                                                    std::span<const PrefixHash> hashes) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t bs = config_.block_size;
  const int64_t max_blocks =
      std::min<int64_t>(n > 0 ? (n - 1) / bs : 0, static_cast<int64_t>(hashes.size()));
  ++counters_.lookups;
  counters_.queried_tokens += n;
  PrefixHit hit;
  std::vector<BlockId> blocks(static_cast<size_t>(max_blocks), kNullBlock);
  int64_t best = -1;
  for (int64_t i = 0; i < max_blocks; ++i) {
    auto it = entries_.find(hashes[i]);
    if (it == entries_.end() || !it->second.committed) continue;
    const Entry& e = it->second;
    const PrefixHash parent = i == 0 ? kRootPrefixHash : hashes[i - 1];
    auto block_tokens = tokens.subspan(static_cast<size_t>(i * bs), static_cast<size_t>(bs));
    if (!(e.parent == parent) ||
        !std::equal(block_tokens.begin(), block_tokens.end(), e.tokens.begin(), e.tokens.end())) {
      continue;  // a hash collision: treat as a miss
    }
    blocks[i] = e.block;
    best = i;
  }
  if (best < 0) return hit;
  auto it = entries_.find(hashes[best]);
  RETURN_IF_ERROR(allocator_->Incref(it->second.block));
  lru_.splice(lru_.begin(), lru_, it->second.lru_pos);
  hit.hit_tokens = (best + 1) * bs;
  hit.block = it->second.block;
  blocks.resize(static_cast<size_t>(best + 1));
  hit.blocks = std::move(blocks);
  ++counters_.hits;
  counters_.hit_tokens += hit.hit_tokens;
  return hit;
}

absl::StatusOr<bool> PrefixCache::Insert(const PrefixHash& hash, const PrefixHash& parent,
                                         std::span<const TokenId> block_tokens, BlockId block) {
  MS_CHECK_ARG(static_cast<int64_t>(block_tokens.size()) == config_.block_size,
               "prefix cache insert: a block holds ", config_.block_size, " tokens, got ",
               block_tokens.size());
  ASSIGN_OR_RETURN(int32_t refs, allocator_->RefCount(block));
  MS_CHECK_ARG(refs >= 1, "prefix cache insert of free block ", block);
  if (entries_.contains(hash)) return false;
  RETURN_IF_ERROR(allocator_->Incref(block));
  lru_.push_front(hash);
  Entry e;
  e.block = block;
  e.parent = parent;
  e.tokens.assign(block_tokens.begin(), block_tokens.end());
  e.committed = false;
  e.lru_pos = lru_.begin();
  entries_.emplace(hash, std::move(e));
  pending_.push_back(hash);
  ++counters_.inserts;
  return true;
}

bool PrefixCache::Contains(const PrefixHash& hash) const { return entries_.contains(hash); }

void PrefixCache::BeginStep() {
  for (const PrefixHash& h : pending_) {
    auto it = entries_.find(h);
    if (it != entries_.end()) it->second.committed = true;
  }
  pending_.clear();
}

absl::Status PrefixCache::Erase(const PrefixHash& hash) {
  auto it = entries_.find(hash);
  if (it == entries_.end()) return absl::NotFoundError("prefix cache entry not found");
  const BlockId block = it->second.block;
  lru_.erase(it->second.lru_pos);
  entries_.erase(it);
  return allocator_->Decref(block).status();
}

absl::StatusOr<bool> PrefixCache::EvictOne() {
  for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) {
    const Entry& e = entries_.find(*it)->second;
    ASSIGN_OR_RETURN(int32_t refs, allocator_->RefCount(e.block));
    if (refs == 1) {
      RETURN_IF_ERROR(Erase(PrefixHash(*it)));
      ++counters_.evictions;
      return true;
    }
  }
  return false;
}

absl::StatusOr<BlockId> PrefixCache::AllocateBlock() {
  while (allocator_->num_free() == 0) {
    ASSIGN_OR_RETURN(bool evicted, EvictOne());
    if (!evicted) {
      return absl::ResourceExhaustedError(
          absl::StrCat("no free state block: all ", allocator_->num_allocatable(),
                       " blocks are in use (", entries_.size(), " cached, none evictable)"));
    }
  }
  return allocator_->Allocate();
}

absl::Status PrefixCache::Clear() {
  for (auto& [hash, e] : entries_) RETURN_IF_ERROR(allocator_->Decref(e.block).status());
  entries_.clear();
  lru_.clear();
  pending_.clear();
  return absl::OkStatus();
}

PrefixCacheStats PrefixCache::stats() const {
  PrefixCacheStats s = counters_;
  s.cached_blocks = static_cast<int64_t>(entries_.size());
  s.evictable_blocks = 0;
  for (const auto& [hash, e] : entries_) {
    auto refs = allocator_->RefCount(e.block);
    if (refs.ok() && *refs == 1) ++s.evictable_blocks;
  }
  s.free_blocks = allocator_->num_free();
  return s;
}

void PrefixCache::ResetCounters() { counters_ = PrefixCacheStats{}; }

}  // namespace mambaserve
