// End-to-end bookkeeping test on a toy recurrent model: random request streams with shared
// prefixes run through SequenceStates + PrefixCache + StatePool + copy specs, and every output
// must be bit-identical to recomputing the request from scratch. The toy model has the same
// state structure as Mamba-2 (a conv window and an SSM state per layer, from the real shape
// calculator) and a deterministic recurrence, so exact equality is the right test: resuming
// from a cached state must replay exactly the same float operations. (The real-model test with
// logits tolerances comes with the model.)
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>

#include "core/random.h"
#include "core/status_macros.h"
#include "gtest/gtest.h"
#include "state_manager/copy_spec.h"
#include "state_manager/sequence_states.h"
#include "state_manager/state_pool.h"

namespace mambaserve {
namespace {

constexpr int64_t kLayers = 3;
constexpr int kVocab = 11;

// The toy model's state of one layer, logically: window[w][c] (oldest first) and h[i].
struct ToyLayer {
  std::vector<float> window;  // state_len * dim
  std::vector<float> h;
};
using ToyState = std::vector<ToyLayer>;

class ToyModel {
 public:
  ToyModel(const StatePoolConfig& c) : c_(c) {
    const auto& conv = c.shapes[0];
    const bool sd = c.conv_layout == ConvLayout::kSD;
    state_len_ = sd ? conv.dims[0] : conv.dims[1];
    dim_ = sd ? conv.dims[1] : conv.dims[0];
    ssm_numel_ = c.shapes[1].numel();
    conv_bf16_ = conv.dtype == DType::kBF16;
  }

  ToyState Zero() const {
    return ToyState(kLayers, ToyLayer{std::vector<float>(state_len_ * dim_, 0.0f),
                                      std::vector<float>(ssm_numel_, 0.0f)});
  }

  // Consumes one token; returns the last layer's output.
  float Step(ToyState& s, TokenId token) const {
    float u = static_cast<float>(token % 97) * 0.013f - 0.5f;
    for (int64_t l = 0; l < kLayers; ++l) {
      ToyLayer& L = s[l];
      std::memmove(L.window.data(), L.window.data() + dim_,
                   sizeof(float) * (state_len_ - 1) * dim_);
      float* last = L.window.data() + (state_len_ - 1) * dim_;
      for (int64_t c = 0; c < dim_; ++c) {
        float f = std::sin(0.37f * static_cast<float>(c + 1) * u + 0.11f * static_cast<float>(l));
        last[c] = conv_bf16_ ? ToFloat(ToBf16(f)) : f;
      }
      float y = 0.0f;
      for (int64_t i = 0; i < ssm_numel_; ++i) {
        const int64_t c = i % dim_;
        float g = 0.0f;
        for (int64_t w = 0; w < state_len_; ++w) {
          g += (0.5f + 0.1f * static_cast<float>(w)) * L.window[w * dim_ + c];
        }
        const float a = 0.9f - 0.01f * static_cast<float>(i % 7);
        L.h[i] = a * L.h[i] + 0.1f * g;
        y += L.h[i] * (static_cast<float>(i % 5) - 2.0f) * 0.3f;
      }
      u = std::tanh(y);
    }
    return u;
  }

  static TokenId Greedy(float y) {
    int best = 0;
    float best_v = -1e30f;
    for (int v = 0; v < kVocab; ++v) {
      const float s = std::sin(static_cast<float>(v + 1) * y * 7.1f);
      if (s > best_v) {
        best_v = s;
        best = v;
      }
    }
    return static_cast<TokenId>(best);
  }

  absl::StatusOr<ToyState> Load(const StatePool& pool, BlockId block) const {
    ToyState s = Zero();
    const bool sd = c_.conv_layout == ConvLayout::kSD;
    for (int64_t l = 0; l < kLayers; ++l) {
      BlockState::LayerValues v;
      RETURN_IF_ERROR(pool.ReadBlock(l, block, &v));
      for (int64_t w = 0; w < state_len_; ++w) {
        for (int64_t c = 0; c < dim_; ++c) {
          s[l].window[w * dim_ + c] = v[0][sd ? w * dim_ + c : c * state_len_ + w];
        }
      }
      s[l].h = v[1];
    }
    return s;
  }

  absl::Status Store(StatePool& pool, BlockId block, const ToyState& s) const {
    const bool sd = c_.conv_layout == ConvLayout::kSD;
    for (int64_t l = 0; l < kLayers; ++l) {
      BlockState::LayerValues v(2);
      v[0].resize(state_len_ * dim_);
      for (int64_t w = 0; w < state_len_; ++w) {
        for (int64_t c = 0; c < dim_; ++c) {
          v[0][sd ? w * dim_ + c : c * state_len_ + w] = s[l].window[w * dim_ + c];
        }
      }
      v[1] = s[l].h;
      RETURN_IF_ERROR(pool.WriteBlock(l, block, v));
    }
    return absl::OkStatus();
  }

  static bool BitEqual(const ToyState& a, const ToyState& b) {
    for (size_t l = 0; l < a.size(); ++l) {
      if (a[l].window.size() != b[l].window.size() || a[l].h.size() != b[l].h.size()) return false;
      if (std::memcmp(a[l].window.data(), b[l].window.data(), a[l].window.size() * 4) != 0 ||
          std::memcmp(a[l].h.data(), b[l].h.data(), a[l].h.size() * 4) != 0) {
        return false;
      }
    }
    return true;
  }

 private:
  StatePoolConfig c_;
  int64_t state_len_ = 0, dim_ = 0, ssm_numel_ = 0;
  bool conv_bf16_ = false;
};

struct Request {
  int64_t id = 0;
  std::vector<TokenId> prompt;
  int gen = 0;
  int arrival = 0;
};

struct Outcome {
  std::vector<float> outputs;  // y after each token at position >= prompt_len - 1
  std::vector<TokenId> generated;
};

Outcome Reference(const ToyModel& m, const Request& r) {
  Outcome o;
  ToyState s = m.Zero();
  float y = 0.0f;
  for (TokenId t : r.prompt) y = m.Step(s, t);
  o.outputs.push_back(y);
  for (int g = 0; g < r.gen; ++g) {
    TokenId next = ToyModel::Greedy(y);
    o.generated.push_back(next);
    if (g + 1 == r.gen) break;
    y = m.Step(s, next);
    o.outputs.push_back(y);
  }
  return o;
}

struct StreamParams {
  ConvLayout layout = ConvLayout::kSD;
  DType conv_dtype = DType::kF32;
  PrefixCachingMode mode = PrefixCachingMode::kAlign;
  int64_t num_blocks = 40;
  int num_requests = 60;
  uint64_t seed = 1;
};

struct StreamResult {
  PrefixCacheStats stats;
  int64_t verified_hits = 0;
};

void RunStream(const StreamParams& p, StreamResult* result) {
  Mamba2StateArgs a;
  a.num_heads = 2;
  a.head_dim = 2;
  a.n_groups = 1;
  a.d_state = 2;
  a.d_conv = 4;
  auto shapes = Mamba2StateShapes(a, p.layout, StateDTypes{p.conv_dtype, DType::kF32});
  ASSERT_TRUE(shapes.ok());
  StatePoolConfig pc{kLayers, *shapes, p.layout, Device::Cpu()};
  auto pool = *StatePool::Create(pc, p.num_blocks);
  ToyModel model(pc);
  constexpr int64_t kBlock = 8, kChunk = 4, kBudget = 24, kMaxActive = 5;
  auto alloc = *BlockAllocator::Create(p.num_blocks);
  auto cache = *PrefixCache::Create(&alloc, {kBlock, kChunk});
  auto states = *SequenceStates::Create(&alloc, &cache, {p.mode, kBlock});
  auto exec = *CopyExecutor::Create(Device::Cpu());

  // Requests: a few shared system prompts plus random suffixes; some exact repeats.
  Rng rng(p.seed);
  std::vector<std::vector<TokenId>> systems;
  for (int i = 0; i < 4; ++i) {
    std::vector<TokenId> s(static_cast<size_t>(rng.Int(0, 40)));
    for (auto& t : s) t = static_cast<TokenId>(rng.Int(0, 499));
    systems.push_back(s);
  }
  std::vector<Request> reqs;
  for (int i = 0; i < p.num_requests; ++i) {
    Request r;
    r.id = i;
    if (i > 0 && rng.Int(0, 5) == 0) {
      r.prompt = reqs[rng.Int(0, i - 1)].prompt;  // exact repeat
    } else {
      r.prompt = systems[rng.Int(0, 3)];
      const int64_t suffix = rng.Int(1, 20);
      for (int64_t j = 0; j < suffix; ++j)
        r.prompt.push_back(static_cast<TokenId>(rng.Int(0, 499)));
    }
    r.gen = static_cast<int>(rng.Int(1, 6));
    r.arrival = i / 2;
    reqs.push_back(r);
  }

  std::map<int64_t, Outcome> got;
  std::vector<int64_t> active, waiting;
  size_t next_arrival = 0;
  int64_t done = 0;
  for (int step = 0; done < p.num_requests; ++step) {
    ASSERT_LT(step, 5000) << "no progress";
    states.BeginStep();
    while (next_arrival < reqs.size() && reqs[next_arrival].arrival <= step) {
      waiting.push_back(static_cast<int64_t>(next_arrival++));
    }
    while (!waiting.empty() && static_cast<int64_t>(active.size()) < kMaxActive) {
      const Request& r = reqs[waiting.front()];
      waiting.erase(waiting.begin());
      auto hit = states.AddSequence(r.id, r.prompt);
      ASSERT_TRUE(hit.ok()) << hit.status();
      if (*hit > 0) {
        // The cached state equals the state recomputed from scratch, bit for bit.
        ToyState ref = model.Zero();
        for (int64_t t = 0; t < *hit; ++t) model.Step(ref, r.prompt[t]);
        auto cached = model.Load(pool, *states.StateBlock(r.id));
        ASSERT_TRUE(cached.ok());
        ASSERT_TRUE(ToyModel::BitEqual(ref, *cached)) << "request " << r.id << " hit " << *hit;
        ++result->verified_hits;
      }
      active.push_back(r.id);
    }
    // Schedule: decodes and prefill chunks in admission order within the token budget.
    int64_t budget = kBudget;
    for (int64_t id : active) {
      if (budget == 0) break;
      const int64_t left = *states.NumKnown(id) - *states.NumConsumed(id);
      if (left == 0) continue;
      int64_t t;
      if (p.mode == PrefixCachingMode::kAlign) {
        t = *states.AlignedChunk(id, budget);
      } else {
        t = std::min<int64_t>(left, rng.Int(1, budget));  // unaligned chunks on purpose
      }
      auto e = states.Schedule(id, t);
      if (!e.ok()) {
        ASSERT_EQ(e.status().code(), absl::StatusCode::kResourceExhausted) << e.status();
        continue;  // no block now; retry next step
      }
      budget -= t;
    }
    const StepPlan& plan = states.plan();
    auto specs = BuildStepCopySpecs(pool, plan.copies);
    ASSERT_TRUE(specs.ok()) << specs.status();
    ASSERT_TRUE(exec.Run(*specs, Stream()).ok());
    for (BlockId z : plan.zero_blocks) ASSERT_TRUE(pool.ZeroBlock(z).ok());
    // The toy "forward pass".
    for (const SequenceStepEntry& e : plan.entries) {
      const Request& r = reqs[e.seq_id];
      ToyState s = model.Zero();
      auto loaded = model.Load(pool, e.state_block);
      ASSERT_TRUE(loaded.ok());
      if (e.has_initial_state) {
        s = *loaded;
      } else {
        ASSERT_TRUE(ToyModel::BitEqual(s, *loaded)) << "fresh block not zeroed";
      }
      std::vector<TokenId> tokens = r.prompt;
      tokens.insert(tokens.end(), got[r.id].generated.begin(), got[r.id].generated.end());
      const auto writes = e.BoundaryWrites(kBlock);
      size_t wi = 0;
      for (int64_t pos = e.prefix_offset; pos < e.prefix_offset + e.num_tokens; ++pos) {
        const float y = model.Step(s, tokens[pos]);
        if (pos + 1 >= static_cast<int64_t>(r.prompt.size())) got[r.id].outputs.push_back(y);
        if (wi < writes.size() && writes[wi].position == pos + 1) {
          if (writes[wi].block != kNullBlock) {
            ASSERT_TRUE(model.Store(pool, writes[wi].block, s).ok());
          }
          ++wi;
        }
      }
      ASSERT_EQ(wi, writes.size());
      ASSERT_TRUE(model.Store(pool, e.state_block, s).ok());
    }
    ASSERT_TRUE(states.EndStep().ok());
    // Sample, finish.
    std::vector<int64_t> still;
    for (int64_t id : active) {
      const Request& r = reqs[id];
      Outcome& o = got[id];
      if (*states.NumConsumed(id) < *states.NumKnown(id)) {
        still.push_back(id);
        continue;
      }
      if (static_cast<int>(o.generated.size()) < r.gen) {
        const TokenId next = ToyModel::Greedy(o.outputs.back());
        o.generated.push_back(next);
        if (static_cast<int>(o.generated.size()) < r.gen) {
          ASSERT_TRUE(states.AppendTokens(id, std::span<const TokenId>(&next, 1)).ok());
          still.push_back(id);
          continue;
        }
      }
      ASSERT_TRUE(states.FreeSequence(id).ok());
      ++done;
      const Outcome ref = Reference(model, r);
      ASSERT_EQ(o.generated, ref.generated) << "request " << id;
      ASSERT_EQ(o.outputs.size(), ref.outputs.size()) << "request " << id;
      ASSERT_EQ(std::memcmp(o.outputs.data(), ref.outputs.data(), ref.outputs.size() * 4), 0)
          << "request " << id << ": outputs differ from recomputation";
    }
    active = still;
  }
  // The null block was never written.
  auto null_state = model.Load(pool, kNullBlock);
  ASSERT_TRUE(ToyModel::BitEqual(*null_state, model.Zero()));
  // No leak: only the cache holds blocks now; clearing it frees everything.
  result->stats = cache.stats();
  std::printf(
      "[toy stream] layout %s conv %s mode %s blocks %lld seed %llu: lookups %lld hits "
      "%lld hit_tokens %lld / %lld inserts %lld evictions %lld verified hits %lld\n",
      p.layout == ConvLayout::kSD ? "SD" : "DS", DTypeName(p.conv_dtype),
      p.mode == PrefixCachingMode::kAlign ? "align" : "all", static_cast<long long>(p.num_blocks),
      static_cast<unsigned long long>(p.seed), static_cast<long long>(result->stats.lookups),
      static_cast<long long>(result->stats.hits), static_cast<long long>(result->stats.hit_tokens),
      static_cast<long long>(result->stats.queried_tokens),
      static_cast<long long>(result->stats.inserts),
      static_cast<long long>(result->stats.evictions),
      static_cast<long long>(result->verified_hits));
  EXPECT_EQ(result->stats.free_blocks + result->stats.cached_blocks, alloc.num_allocatable());
  EXPECT_EQ(result->stats.evictable_blocks, result->stats.cached_blocks);
  ASSERT_TRUE(cache.Clear().ok());
  EXPECT_EQ(alloc.num_free(), alloc.num_allocatable());
}

struct Case {
  ConvLayout layout;
  DType conv_dtype;
  PrefixCachingMode mode;
};

class ToyRecompute : public ::testing::TestWithParam<Case> {};

TEST_P(ToyRecompute, CachedEqualsRecomputed) {
  for (uint64_t seed : {1, 2, 3}) {
    StreamParams p;
    p.layout = GetParam().layout;
    p.conv_dtype = GetParam().conv_dtype;
    p.mode = GetParam().mode;
    p.seed = seed;
    p.num_blocks = 200;  // roomy: few or no evictions
    StreamResult r;
    RunStream(p, &r);
    if (HasFatalFailure()) return;
    EXPECT_GT(r.stats.hits, 0);
    EXPECT_GT(r.verified_hits, 0);
    EXPECT_GT(r.stats.hit_tokens, 0);
  }
}

TEST_P(ToyRecompute, UnderMemoryPressureEvicts) {
  StreamParams p;
  p.layout = GetParam().layout;
  p.conv_dtype = GetParam().conv_dtype;
  p.mode = GetParam().mode;
  p.seed = 9;
  p.num_blocks = 16;  // ~5 active sequences need ~10 blocks: the cache must keep evicting
  p.num_requests = 80;
  StreamResult r;
  RunStream(p, &r);
  if (HasFatalFailure()) return;
  EXPECT_GT(r.stats.evictions, 0);
  EXPECT_GT(r.stats.hits, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, ToyRecompute,
    ::testing::Values(Case{ConvLayout::kSD, DType::kF32, PrefixCachingMode::kAlign},
                      Case{ConvLayout::kDS, DType::kF32, PrefixCachingMode::kAlign},
                      Case{ConvLayout::kSD, DType::kBF16, PrefixCachingMode::kAlign},
                      Case{ConvLayout::kDS, DType::kBF16, PrefixCachingMode::kAll},
                      Case{ConvLayout::kSD, DType::kF32, PrefixCachingMode::kAll}));

}  // namespace
}  // namespace mambaserve
