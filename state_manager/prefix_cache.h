// Prefix cache of recurrent states (vLLM's "align" mode semantics; the "all" mode bookkeeping is
// in sequence_states.h).
//
// Tokens are cut into blocks of B = block_size tokens (B a multiple of the prefill chunk size,
// checked). Block i (0-based) covers tokens [i*B, (i+1)*B); its chained hash is
//   hash_i = HashBlock(hash_{i-1}, tokens of block i),  hash_{-1} = kRootPrefixHash,
// so hash_i names the whole prefix [0, (i+1)*B). A cache entry under hash_i holds a pool block
// with the state after token (i+1)*B - 1 (all (i+1)*B tokens consumed). A recurrent model needs
// only the state at the hit point, so intermediate prefixes need not be cached.
//
// Hashing: deterministic across runs and machines (no absl::Hash / std::hash): a 128-bit value
// from two independently seeded FNV-1a-64 streams over the parent hash and the token ids (as
// little-endian int32), each finished with the splitmix64 mixer. Collision handling: an entry
// also stores its block's tokens and its parent hash, and a lookup matches only when the 128-bit
// hash, the parent hash and the block's tokens are all equal. A false hit thus needs a 128-bit
// collision of the parent chain (~2^-128 per pair), which we accept.
//
// References: the cache holds one reference (BlockAllocator) on every cached block. A cached
// block referenced by nobody else is "evictable": it stays hit-able until AllocateBlock() runs
// out of free blocks and evicts the least recently used evictable entries. Entries inserted
// during a step are pending and served only after the next BeginStep() (the state is written by
// that step's kernels).
#ifndef MAMBASERVE_STATE_MANAGER_PREFIX_CACHE_H_
#define MAMBASERVE_STATE_MANAGER_PREFIX_CACHE_H_

#include <cstdint>
#include <list>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "state_manager/block_allocator.h"

namespace mambaserve {

using TokenId = int32_t;

struct PrefixHash {
  uint64_t hi = 0;
  uint64_t lo = 0;
  bool operator==(const PrefixHash&) const = default;
};
inline constexpr PrefixHash kRootPrefixHash{0x6d616d6261736572ull, 0x7665707265666978ull};

PrefixHash HashBlock(const PrefixHash& parent, std::span<const TokenId> tokens);
// hash_0 .. hash_{m-1} for the m = tokens.size() / block_size full blocks.
std::vector<PrefixHash> ChainHashes(std::span<const TokenId> tokens, int64_t block_size);

struct PrefixCacheConfig {
  int64_t block_size = 0;  // tokens per cache block (B)
  int64_t chunk_size = 0;  // the scan's chunk size; B % chunk_size == 0 required
};

struct PrefixCacheStats {
  int64_t lookups = 0;
  int64_t hits = 0;            // lookups that found a prefix
  int64_t hit_tokens = 0;      // sum of hit lengths
  int64_t queried_tokens = 0;  // sum of prompt lengths looked up
  int64_t inserts = 0;
  int64_t evictions = 0;
  int64_t cached_blocks = 0;     // entries now (pending included)
  int64_t evictable_blocks = 0;  // entries referenced only by the cache
  int64_t free_blocks = 0;       // allocator free count
};

struct PrefixHit {
  int64_t hit_tokens = 0;      // multiple of block_size, <= n - 1
  BlockId block = kNullBlock;  // state after hit_tokens tokens; kNullBlock on a miss
  // blocks[i]: the committed cached block for prefix [0, (i+1)*B), kNullBlock where not cached;
  // i < hit_tokens / B.
  std::vector<BlockId> blocks;
};

class PrefixCache {
 public:
  // `allocator` must outlive the cache.
  static absl::StatusOr<PrefixCache> Create(BlockAllocator* allocator,
                                            const PrefixCacheConfig& config);
  PrefixCache(PrefixCache&&) = default;
  PrefixCache& operator=(PrefixCache&&) = default;

  int64_t block_size() const { return config_.block_size; }

  // Longest committed cached prefix of `tokens` (length n) that is at most n - 1 tokens. On a
  // hit the returned block carries a new reference owned by the caller (Decref it when done)
  // and the entry becomes most recently used. Counts in the statistics.
  absl::StatusOr<PrefixHit> Lookup(std::span<const TokenId> tokens);
  // Like Lookup with precomputed chain hashes (hashes[i] = hash_i of tokens).
  absl::StatusOr<PrefixHit> LookupHashes(std::span<const TokenId> tokens,
                                         std::span<const PrefixHash> hashes);

  // Registers `block` as holding the state after prefix [0, (index+1)*B) of `tokens`
  // (hash = hash_index, parent = hash_{index-1}, tokens of block `index` stored). Takes its own
  // reference on the block. Pending until the next BeginStep(). Returns false (and takes nothing)
  // when that prefix is already cached (pending or committed).
  absl::StatusOr<bool> Insert(const PrefixHash& hash, const PrefixHash& parent,
                              std::span<const TokenId> block_tokens, BlockId block);
  // Whether a prefix is cached, pending entries included.
  bool Contains(const PrefixHash& hash) const;

  // Start of an engine step: entries inserted before now become servable.
  void BeginStep();

  // A free block (reference count 1, owned by the caller), evicting least recently used
  // evictable entries while the allocator is empty. ResourceExhausted when nothing is free or
  // evictable.
  absl::StatusOr<BlockId> AllocateBlock();
  // Evicts the least recently used evictable entry; false when none is evictable.
  absl::StatusOr<bool> EvictOne();
  // Drops every entry (and the cache's references). Blocks still referenced by sequences stay.
  absl::Status Clear();

  PrefixCacheStats stats() const;
  void ResetCounters();  // zeroes lookups/hits/hit_tokens/queried_tokens/inserts/evictions

 private:
  struct PrefixHashHasher {
    size_t operator()(const PrefixHash& h) const { return static_cast<size_t>(h.lo ^ h.hi); }
  };
  struct Entry {
    BlockId block = kNullBlock;
    PrefixHash parent;
    std::vector<TokenId> tokens;
    bool committed = false;
    std::list<PrefixHash>::iterator lru_pos;  // position in lru_ (front = most recent)
  };
  PrefixCache() = default;
  absl::Status Erase(const PrefixHash& hash);

  BlockAllocator* allocator_ = nullptr;
  PrefixCacheConfig config_;
  absl::flat_hash_map<PrefixHash, Entry, PrefixHashHasher> entries_;
  std::list<PrefixHash> lru_;
  std::vector<PrefixHash> pending_;  // inserted since the last BeginStep()
  PrefixCacheStats counters_;
};

}  // namespace mambaserve

#endif  // MAMBASERVE_STATE_MANAGER_PREFIX_CACHE_H_
