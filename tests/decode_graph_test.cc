// CUDA-graph decode: a model replaying captured decode graphs gives the same logits as the same
// model decoding eagerly, over batches that hit every kind of bucket (exact sizes and padded
// ones), graphs replayed many times with new tokens and blocks, a second pool (captured
// again), Mamba-1 and Mamba-2, fp32 and bf16. Padding decodes from the null block must leave it
// zero. GPU only: skipped where there is no CUDA device.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/dependent_launch.h"
#include "core/rel_error.h"
#include "core/status_macros.h"
#include "gtest/gtest.h"
#include "layers/mamba_model.h"
#include "layers/weight_source.h"

namespace mambaserve {
namespace {

struct Case {
  const char* name;
  config::Architecture arch;
  DType dtype;
};

config::ModelConfig MakeConfig(config::Architecture arch) {
  config::ModelConfig m;
  m.set_architecture(arch);
  m.set_vocab_size(301);
  m.set_d_model(64);
  m.set_n_layers(3);
  m.set_d_state(16);
  m.set_d_conv(4);
  m.set_expand(2);
  m.set_d_inner(128);
  m.set_norm_eps(1e-5);
  m.set_residual_in_fp32(true);
  m.set_tie_embeddings(true);
  m.set_conv_bias(true);
  if (arch == config::MAMBA2) {
    m.set_num_heads(8);
    m.set_head_dim(16);
    m.set_n_groups(2);
    m.set_chunk_size(16);
    m.set_dt_limit_min(0.0);
    m.set_dt_limit_max(INFINITY);
  } else {
    m.set_dt_rank(8);
  }
  return m;
}

// The same weights on the GPU (in gpu_dtype) and on the CPU (f32), each with a pool of `blocks`
// blocks of f32 state: the GPU-against-CPU model tests.
struct GpuAndCpuModels {
  std::unique_ptr<MambaModel> gpu, cpu;
  StatePool pool_g, pool_c;
};

absl::StatusOr<GpuAndCpuModels> LoadGpuAndCpu(const config::ModelConfig& m,
                                              const WeightSource& weights, DType gpu_dtype,
                                              int64_t blocks) {
  ASSIGN_OR_RETURN(auto gpu, MambaModel::Load(m, weights, Device::Cuda(0), gpu_dtype, nullptr));
  ASSIGN_OR_RETURN(auto cpu, MambaModel::Load(m, weights, Device::Cpu(), DType::kF32, nullptr));
  ASSIGN_OR_RETURN(StatePoolConfig pc_g, gpu->PoolConfig({DType::kF32, DType::kF32}));
  ASSIGN_OR_RETURN(StatePoolConfig pc_c, cpu->PoolConfig({DType::kF32, DType::kF32}));
  ASSIGN_OR_RETURN(StatePool pool_g, StatePool::Create(pc_g, blocks));
  ASSIGN_OR_RETURN(StatePool pool_c, StatePool::Create(pc_c, blocks));
  return GpuAndCpuModels{std::move(gpu), std::move(cpu), std::move(pool_g), std::move(pool_c)};
}

class DecodeGraphTest : public ::testing::TestWithParam<Case> {};

TEST_P(DecodeGraphTest, GraphDecodeEqualsEagerDecode) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device; this test runs on the GPU machine";
  const Case& c = GetParam();
  const config::ModelConfig m = MakeConfig(c.arch);
  RandomWeights weights(m, /*seed=*/99);
  auto eager = MambaModel::Load(m, weights, Device::Cuda(0), c.dtype, nullptr);
  ASSERT_TRUE(eager.ok()) << eager.status();
  auto graphed = MambaModel::Load(m, weights, Device::Cuda(0), c.dtype, nullptr);
  ASSERT_TRUE(graphed.ok()) << graphed.status();
  (*eager)->SetDecodeGraphMaxBatch(0);
  (*graphed)->SetDecodeGraphMaxBatch(16);

  // bf16 activations round after every op and a padded batch may change the GEMM's
  // summation order, so single roundings can differ: ~2^-8 relative per op over 3 layers.
  const double tol = c.dtype == DType::kF32 ? 1e-5 : 3e-2;
  const int kSeqs = 13;
  auto pc = (*eager)->PoolConfig({c.dtype, DType::kF32});
  ASSERT_TRUE(pc.ok()) << pc.status();
  std::vector<StatePool> pools;  // all alive at once: the second round's pool is a new one
  for (int i = 0; i < 4; ++i) {
    auto p = StatePool::Create(*pc, kSeqs + 1);
    ASSERT_TRUE(p.ok()) << p.status();
    pools.push_back(*std::move(p));
  }
  for (int pool_round = 0; pool_round < 2; ++pool_round) {
    StatePool* pool_e = &pools[2 * pool_round];
    StatePool* pool_g = &pools[2 * pool_round + 1];
    // Prefill 13 sequences of different lengths (eager in both models: not a decode step).
    ForwardInput pre;
    for (int s = 0; s < kSeqs; ++s) {
      const int len = 1 + (s * 7) % 20;
      for (int t = 0; t < len; ++t) pre.token_ids.push_back((s * 31 + t * 17 + pool_round) % 301);
      pre.seq_lens.push_back(len);
      pre.initial_blocks.push_back(0);
      pre.final_blocks.push_back(1 + s);
    }
    std::vector<float> le, lg;
    ASSERT_TRUE((*eager)->Forward(pre, *pool_e, &le).ok());
    ASSERT_TRUE((*graphed)->Forward(pre, *pool_g, &lg).ok());
    // Decode steps over subsets: 13 -> bucket 16, 5 -> 8, 1, 3 -> 4, 8 (exact), 16 is never
    // exceeded; every subset starts at a different sequence so blocks move between slots.
    const int sizes[] = {13, 5, 1, 3, 8, 13, 2, 5, 1, 13};
    int step = 0;
    for (int n : sizes) {
      ForwardInput d;
      d.num_decode = n;
      for (int i = 0; i < n; ++i) {
        const int s = (step * 3 + i) % kSeqs;
        d.token_ids.push_back((step * 11 + s * 5) % 301);
        d.seq_lens.push_back(1);
        d.initial_blocks.push_back(1 + s);
        d.final_blocks.push_back(1 + s);
      }
      ASSERT_TRUE((*eager)->Forward(d, *pool_e, &le).ok());
      absl::Status st = (*graphed)->Forward(d, *pool_g, &lg);
      ASSERT_TRUE(st.ok()) << st;
      ASSERT_EQ(le.size(), lg.size());
      EXPECT_LT(RelRmsError(lg, le), tol)
          << c.name << " pool " << pool_round << " step " << step << " batch " << n;
      ++step;
    }
    // The padding decoded from the null block and must not have written it.
    auto null_state = pool_g->ReadBlockState(0);
    ASSERT_TRUE(null_state.ok()) << null_state.status();
    for (int64_t l = 0; l < null_state->num_layers(); ++l) {
      auto layer = null_state->GetLayer(l);
      ASSERT_TRUE(layer.ok());
      for (const auto& tensor : **layer) {
        for (float v : tensor) ASSERT_EQ(v, 0.0f) << "null block written in layer " << l;
      }
    }
  }
  // Buckets 16, 8, 1, 4, 2 captured once per pool; every decode step replayed a graph.
  EXPECT_EQ((*graphed)->decode_graph_captures(), 2 * 5);
  EXPECT_EQ((*graphed)->decode_graph_replays(), 2 * 10);
  EXPECT_EQ((*eager)->decode_graph_replays(), 0);
}

// A model of realistic width (d_model 1024, 32 heads of 64, 2 groups, vocabulary 1031) decoding
// on the GPU in f32 (cuBLAS's small-batch GEMM kernels, the CUDA decode kernels, graphs) equals
// the CPU model (OpenBLAS, CPU kernels) on the same weights: prefill, then decode batches of 1,
// 3 and 8.
TEST(DecodeGpu, WideModelEqualsCpuModel) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device; this test runs on the GPU machine";
  config::ModelConfig m = MakeConfig(config::MAMBA2);
  m.set_vocab_size(1031);
  m.set_d_model(1024);
  m.set_d_inner(2048);
  m.set_num_heads(32);
  m.set_head_dim(64);
  m.set_n_groups(2);
  m.set_n_layers(2);
  RandomWeights weights(m, /*seed=*/5);
  auto models = LoadGpuAndCpu(m, weights, DType::kF32, 9);
  ASSERT_TRUE(models.ok()) << models.status();
  auto& [gpu, cpu, pool_g, pool_c] = *models;
  ForwardInput pre;
  for (int s = 0; s < 8; ++s) {
    for (int t = 0; t < 5 + s; ++t) pre.token_ids.push_back((s * 97 + t * 13) % 1031);
    pre.seq_lens.push_back(5 + s);
    pre.initial_blocks.push_back(0);
    pre.final_blocks.push_back(1 + s);
  }
  std::vector<float> lg, lc;
  ASSERT_TRUE(gpu->Forward(pre, pool_g, &lg).ok());
  ASSERT_TRUE(cpu->Forward(pre, pool_c, &lc).ok());
  EXPECT_LT(RelRmsError(lg, lc), 1e-4) << "prefill";
  int step = 0;
  for (int n : {1, 3, 8, 8, 3}) {
    ForwardInput d;
    d.num_decode = n;
    for (int i = 0; i < n; ++i) {
      d.token_ids.push_back((step * 31 + i * 7) % 1031);
      d.seq_lens.push_back(1);
      d.initial_blocks.push_back(1 + i);
      d.final_blocks.push_back(1 + i);
    }
    ASSERT_TRUE(gpu->Forward(d, pool_g, &lg).ok());
    ASSERT_TRUE(cpu->Forward(d, pool_c, &lc).ok());
    // fp32 everywhere; only the orders of summation differ (cuBLAS vs OpenBLAS, kernels).
    EXPECT_LT(RelRmsError(lg, lc), 1e-4) << "decode step " << step << " batch " << n;
    ++step;
  }
}

// Decode in bf16 on the GPU (the one-row GEMV at batch 1, the few-row tensor-core product for
// in_proj at batch 5 - its 1024+ outputs - and cuBLAS for the rest, dependent launches, graphs)
// stays near the CPU model in f32 on the same weights: 1 norm group (at batch 1 with
// norm_before_gate false the norm rides on the state update and out_proj's GEMV) and 2, both gate
// orders, 3 layers. bf16 rounds every activation (2^-8 relative), so 3e-2 relative RMS error; a
// wrong kernel errs by O(1).
TEST(DecodeGpu, Bf16DecodeNearCpuModel) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device; this test runs on the GPU machine";
  for (int64_t groups : {1, 2}) {
    for (bool norm_before_gate : {false, true}) {
      for (int32_t seqs : {1, 5}) {
        SCOPED_TRACE(absl::StrCat("groups ", groups, " nbg ", norm_before_gate, " seqs ", seqs));
        config::ModelConfig m = MakeConfig(config::MAMBA2);
        m.set_d_model(256);
        m.set_d_inner(512);
        m.set_num_heads(32);
        m.set_n_groups(groups);
        m.set_norm_before_gate(norm_before_gate);
        RandomWeights weights(m, /*seed=*/8);
        auto models = LoadGpuAndCpu(m, weights, DType::kBF16, seqs + 1);
        ASSERT_TRUE(models.ok()) << models.status();
        auto& [gpu, cpu, pool_g, pool_c] = *models;
        ForwardInput f;
        for (int32_t q = 0; q < seqs; ++q) {
          for (int32_t t = 0; t < 3 + q; ++t) f.token_ids.push_back((q * 53 + t * 29 + 5) % 301);
          f.seq_lens.push_back(3 + q);
          f.initial_blocks.push_back(0);
          f.final_blocks.push_back(1 + q);
        }
        std::vector<float> lg, lc;
        for (int step = 0; step < 6; ++step) {
          ASSERT_TRUE(gpu->Forward(f, pool_g, &lg).ok());
          ASSERT_TRUE(cpu->Forward(f, pool_c, &lc).ok());
          EXPECT_LT(RelRmsError(lg, lc), 3e-2) << "step " << step;
          f.num_decode = seqs;
          f.token_ids.clear();
          f.seq_lens.assign(seqs, 1);
          f.initial_blocks = f.final_blocks;
          for (int32_t q = 0; q < seqs; ++q) f.token_ids.push_back((step * 37 + q * 7 + 11) % 301);
        }
        EXPECT_GT(gpu->decode_graph_replays(), 0);
      }
    }
  }
}

// Capturing every bucket up front (as the server does at startup) captures each once; later
// decode steps only replay, and still equal eager decoding.
TEST(DecodeGraphTest2, CaptureUpFrontThenOnlyReplay) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device; this test runs on the GPU machine";
  const config::ModelConfig m = MakeConfig(config::MAMBA2);
  RandomWeights weights(m, /*seed=*/3);
  auto eager = MambaModel::Load(m, weights, Device::Cuda(0), DType::kF32, nullptr);
  auto graphed = MambaModel::Load(m, weights, Device::Cuda(0), DType::kF32, nullptr);
  ASSERT_TRUE(eager.ok() && graphed.ok());
  (*eager)->SetDecodeGraphMaxBatch(0);
  (*graphed)->SetDecodeGraphMaxBatch(12);  // buckets 1, 2, 4, 8, 16
  auto pc = (*eager)->PoolConfig({DType::kF32, DType::kF32});
  ASSERT_TRUE(pc.ok());
  auto pool_e = StatePool::Create(*pc, 8);
  auto pool_g = StatePool::Create(*pc, 8);
  ASSERT_TRUE(pool_e.ok() && pool_g.ok());
  ASSERT_TRUE((*graphed)->CaptureDecodeGraphs(*pool_g).ok());
  EXPECT_EQ((*graphed)->decode_graph_captures(), 5);
  ForwardInput pre;
  for (int s = 0; s < 7; ++s) {
    pre.token_ids.insert(pre.token_ids.end(), {s + 1, 2 * s + 3, 40 + s});
    pre.seq_lens.push_back(3);
    pre.initial_blocks.push_back(0);
    pre.final_blocks.push_back(1 + s);
  }
  std::vector<float> le, lg;
  ASSERT_TRUE((*eager)->Forward(pre, *pool_e, &le).ok());
  ASSERT_TRUE((*graphed)->Forward(pre, *pool_g, &lg).ok());
  for (int n : {7, 1, 3, 7}) {
    ForwardInput d;
    d.num_decode = n;
    for (int i = 0; i < n; ++i) {
      d.token_ids.push_back(10 * n + i);
      d.seq_lens.push_back(1);
      d.initial_blocks.push_back(1 + i);
      d.final_blocks.push_back(1 + i);
    }
    ASSERT_TRUE((*eager)->Forward(d, *pool_e, &le).ok());
    ASSERT_TRUE((*graphed)->Forward(d, *pool_g, &lg).ok());
    EXPECT_LT(RelRmsError(lg, le), 1e-5) << "batch " << n;
  }
  EXPECT_EQ((*graphed)->decode_graph_captures(), 5);
  EXPECT_EQ((*graphed)->decode_graph_replays(), 4);
}

// Dependent launches (core/dependent_launch.h; on by default on an H100) only let kernels start
// early and wait inside: a model computes exactly the same logits with them switched off,
// eagerly and in graphs, at batch 1 (the GEMV) and 3 (in_proj on the few-row tensor-core
// product, the rest on cuBLAS), Mamba-1 and Mamba-2, bf16.
TEST(DependentLaunch, SameLogitsWithAndWithout) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device; this test runs on the GPU machine";
  struct Restore {  // the switch is process-wide: back on however the test ends
    ~Restore() { SetDependentLaunch(true); }
  } restore;
  for (config::Architecture arch : {config::MAMBA2, config::MAMBA1}) {
    config::ModelConfig m = MakeConfig(arch);
    m.set_d_model(256);  // a multiple of 256: the one-pass AddRmsNorm
    m.set_d_inner(512);
    if (arch == config::MAMBA2) m.set_num_heads(32);
    RandomWeights weights(m, /*seed=*/21);
    std::vector<std::vector<float>> runs[2];
    for (int on = 1; on >= 0; --on) {
      SetDependentLaunch(on == 1);
      auto model = MambaModel::Load(m, weights, Device::Cuda(0), DType::kBF16, nullptr);
      ASSERT_TRUE(model.ok()) << model.status();
      auto pc = (*model)->PoolConfig({DType::kBF16, DType::kF32});
      ASSERT_TRUE(pc.ok());
      auto pool = StatePool::Create(*pc, 5);
      ASSERT_TRUE(pool.ok());
      ForwardInput pre;
      for (int s = 0; s < 3; ++s) {
        for (int t = 0; t < 9; ++t) pre.token_ids.push_back((s * 41 + t * 7) % 301);
        pre.seq_lens.push_back(9);
        pre.initial_blocks.push_back(0);
        pre.final_blocks.push_back(1 + s);
      }
      std::vector<float> logits;
      ASSERT_TRUE((*model)->Forward(pre, *pool, &logits).ok());
      runs[on].push_back(logits);
      for (int64_t graph_max : {int64_t{0}, int64_t{4}}) {
        (*model)->SetDecodeGraphMaxBatch(graph_max);
        for (int n : {1, 3, 1, 3}) {
          ForwardInput d;
          d.num_decode = n;
          for (int i = 0; i < n; ++i) {
            d.token_ids.push_back((n * 13 + i) % 301);
            d.seq_lens.push_back(1);
            d.initial_blocks.push_back(1 + i);
            d.final_blocks.push_back(1 + i);
          }
          absl::Status st = (*model)->Forward(d, *pool, &logits);
          ASSERT_TRUE(st.ok()) << st;
          runs[on].push_back(logits);
        }
      }
    }
    ASSERT_EQ(runs[0].size(), runs[1].size());
    for (size_t i = 0; i < runs[0].size(); ++i)
      EXPECT_EQ(runs[1][i], runs[0][i]) << "arch " << arch << " step " << i;
  }
}

TEST(DecodeGraphBuckets, PowersOfTwoThenMultiplesOfEight) {
  const int64_t want[][2] = {{1, 1}, {2, 2},  {3, 4},   {4, 4},   {5, 8},
                             {8, 8}, {9, 16}, {17, 24}, {63, 64}, {65, 72}};
  for (const auto& w : want) EXPECT_EQ(MambaModel::DecodeGraphBucket(w[0]), w[1]) << w[0];
}

INSTANTIATE_TEST_SUITE_P(Models, DecodeGraphTest,
                         ::testing::Values(Case{"m2_f32", config::MAMBA2, DType::kF32},
                                           Case{"m2_bf16", config::MAMBA2, DType::kBF16},
                                           Case{"m1_f32", config::MAMBA1, DType::kF32},
                                           Case{"m1_bf16", config::MAMBA1, DType::kBF16}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace mambaserve
