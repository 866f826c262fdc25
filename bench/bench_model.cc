// Whole-model benchmarks on one GPU with random weights of the Mamba2-2.7B shape, or with --arch 1
// of the Mamba-2.8B (Mamba-1) shape (bf16 weights and activations, fp32 SSM state):
//  1. decode step time and tokens/s at batch 1, 16, 64 against the roofline: bytes of weights
//     plus state read and written per step over the measured copy bandwidth;
//  2. time to first token of an 8K-token prompt whose first 7K tokens are cached (one state copy
//     into a new block, then a 1K-token prefill from it) against the same prompt uncached.
//   bench_model [--layers 64] [--batch N: decode at this batch only] [--decode_only 1]
//               [--steps 23] (a short run to profile: ncu --print-summary per-kernel ...)
//               [--dependent_launch 0: every kernel launched plainly, to compare]
//               [--arch 1: Mamba-1, the Mamba-2.8B shape]
//               [--few_row 0: cuBLAS for 2-16 rows instead of Linear's few-row kernel]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "configs/model_config.h"
#include "core/cuda_status.h"
#include "core/dependent_launch.h"
#include "core/status_macros.h"
#include "layers/linear_skinny.h"
#include "layers/mamba_model.h"
#include "layers/weight_source.h"
#include "state_manager/copy_spec.h"

namespace mambaserve {
namespace {

config::ModelConfig Mamba2_2p7b(int64_t layers) {
  config::ModelConfig m;
  m.set_architecture(config::MAMBA2);
  m.set_vocab_size(50288);
  m.set_d_model(2560);
  m.set_n_layers(layers);
  m.set_d_state(128);
  m.set_d_conv(4);
  m.set_expand(2);
  m.set_d_inner(5120);
  m.set_num_heads(80);
  m.set_head_dim(64);
  m.set_n_groups(1);
  m.set_chunk_size(256);
  m.set_dt_limit_min(0);
  m.set_dt_limit_max(INFINITY);
  m.set_norm_eps(1e-5);
  m.set_tie_embeddings(true);
  m.set_residual_in_fp32(true);
  m.set_conv_bias(true);
  return m;
}

config::ModelConfig Mamba_2p8b(int64_t layers) {  // configs/presets/mamba_2p8b.textproto
  config::ModelConfig m;
  m.set_architecture(config::MAMBA1);
  m.set_vocab_size(50280);
  m.set_d_model(2560);
  m.set_n_layers(layers);
  m.set_d_state(16);
  m.set_d_conv(4);
  m.set_expand(2);
  m.set_d_inner(5120);
  m.set_dt_rank(160);
  m.set_norm_eps(1e-5);
  m.set_tie_embeddings(true);
  m.set_residual_in_fp32(true);
  m.set_conv_bias(true);
  return m;
}

// Parameter bytes a decode step reads: every layer's weights in the layout the model keeps them
// (bf16; Mamba-1's dt_proj, A and D in f32) and the tied embedding / LM head.
int64_t WeightBytes(const config::ModelConfig& m) {
  const int64_t dm = m.d_model(), di = m.d_inner(), n = m.d_state(), k = m.d_conv();
  int64_t layer = 0;
  if (m.architecture() == config::MAMBA1) {
    const int64_t r = m.dt_rank();
    layer = 2 * (2 * di * dm + di * (k + 1) + (r + 2 * n) * di + dm * di + dm) +
            4 * (di * r + di + di * n + di);
  } else {
    const int64_t h = m.num_heads(), conv_dim = di + 2 * n;
    layer = 2 * ((2 * di + 2 * n + h) * dm + di * dm + conv_dim * (k + 1));
  }
  return m.n_layers() * layer + 2 * m.vocab_size() * dm;
}

absl::StatusOr<double> CopyBandwidthGBs() {
  const size_t bytes = size_t{1} << 30;
  void *a, *b;
  CUDA_RETURN_IF_ERROR(cudaMalloc(&a, bytes));
  CUDA_RETURN_IF_ERROR(cudaMalloc(&b, bytes));
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  CUDA_RETURN_IF_ERROR(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
  std::vector<float> ms;
  for (int i = 0; i < 10; ++i) {
    cudaEventRecord(e0);
    cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float t;
    cudaEventElapsedTime(&t, e0, e1);
    ms.push_back(t);
  }
  cudaFree(a);
  cudaFree(b);
  std::sort(ms.begin(), ms.end());
  return 2.0 * bytes / (ms[ms.size() / 2] * 1e-3) / 1e9;  // read + write
}

struct Flags {
  int64_t layers = 64, batch = 0, decode_only = 0, steps = 23;
  int64_t dependent_launch = 1;
  int64_t arch = 2;
  int64_t few_row = 1;
};

absl::Status Run(const Flags& f) {
  const int64_t layers = f.layers;
  SetDependentLaunch(f.dependent_launch != 0);
  SetSkinnyEnabled(f.few_row != 0);
  ASSIGN_OR_RETURN(double bw, CopyBandwidthGBs());
  const config::ModelConfig m = f.arch == 1 ? Mamba_2p8b(layers) : Mamba2_2p7b(layers);
  RandomWeights weights(m, 7);
  const absl::Time t0 = absl::Now();
  ASSIGN_OR_RETURN(auto model,
                   MambaModel::Load(m, weights, Device::Cuda(0), DType::kBF16, nullptr));
  std::printf("model: %s shape, %lld layers, random bf16 weights (loaded in %.1f s)\n",
              f.arch == 1 ? "Mamba-2.8B" : "Mamba2-2.7B", static_cast<long long>(layers),
              absl::ToDoubleSeconds(absl::Now() - t0));
  ASSIGN_OR_RETURN(StatePoolConfig pc, model->PoolConfig({DType::kBF16, DType::kF32}));
  const int64_t block_bytes = StatePool::BytesPerBlock(pc);
  ASSIGN_OR_RETURN(StatePool pool, StatePool::Create(pc, 68));
  const int64_t weight_bytes = WeightBytes(m);
  std::printf(
      "copy bandwidth (cudaMemcpy D2D, 1 GiB): %.0f GB/s; weights %.2f GB; state %.1f MB "
      "per sequence\n\n",
      bw, weight_bytes / 1e9, block_bytes / 1e6);

  std::printf(
      "| batch | decode | step ms | tokens/s | bytes/step GB | roofline ms | %% of roofline |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  std::vector<float> logits;
  std::vector<int64_t> batches{1, 16, 64};
  if (f.batch > 0) batches = {f.batch};
  for (int64_t batch : batches) {
    ForwardInput pre;
    for (int64_t s = 0; s < batch; ++s) {
      for (int t = 0; t < 8; ++t)
        pre.token_ids.push_back(static_cast<int32_t>((s * 31 + t) % 50000));
      pre.seq_lens.push_back(8);
      pre.initial_blocks.push_back(0);
      pre.final_blocks.push_back(static_cast<int32_t>(1 + s));
    }
    RETURN_IF_ERROR(model->Forward(pre, pool, &logits));
    ForwardInput dec;
    dec.num_decode = batch;
    for (int64_t s = 0; s < batch; ++s) {
      dec.token_ids.push_back(static_cast<int32_t>(s + 3));
      dec.seq_lens.push_back(1);
      dec.initial_blocks.push_back(static_cast<int32_t>(1 + s));
      dec.final_blocks.push_back(static_cast<int32_t>(1 + s));
    }
    for (const bool graphs : {false, true}) {
      model->SetDecodeGraphMaxBatch(graphs ? MambaModel::kDefaultDecodeGraphMaxBatch : 0);
      std::vector<double> ms;
      for (int64_t i = 0; i < f.steps; ++i) {  // the first steps capture the graph
        const absl::Time a = absl::Now();
        RETURN_IF_ERROR(model->Forward(dec, pool, &logits));  // synchronises (logits to host)
        if (i >= std::min<int64_t>(3, f.steps - 1)) {
          ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - a));
        }
      }
      const double step = Median(ms);
      // Weights once, each sequence's state read and written once (conv + ssm, all layers).
      const double bytes = weight_bytes + 2.0 * batch * block_bytes;
      const double roof = bytes / (bw * 1e9) * 1e3;
      std::printf("| %lld | %s | %.3f | %.0f | %.2f | %.3f | %.0f%% |\n",
                  static_cast<long long>(batch), graphs ? "CUDA graph" : "eager", step,
                  batch / step * 1e3, bytes / 1e9, roof, 100.0 * roof / step);
    }
  }

  if (f.decode_only) return absl::OkStatus();
  // Prefix caching: 8192-token prompt, 7168 tokens cached.
  const int64_t L = 8192, cached = 7168;
  ForwardInput full;
  for (int64_t t = 0; t < L; ++t)
    full.token_ids.push_back(static_cast<int32_t>((t * 7919) % 50000));
  full.seq_lens = {static_cast<int32_t>(L)};
  full.initial_blocks = {0};
  full.final_blocks = {1};
  ForwardInput prefix = full;
  prefix.token_ids.resize(cached);
  prefix.seq_lens = {static_cast<int32_t>(cached)};
  prefix.final_blocks = {2};  // the cached block
  RETURN_IF_ERROR(model->Forward(prefix, pool, &logits));
  ForwardInput tail;
  tail.token_ids.assign(full.token_ids.begin() + cached, full.token_ids.end());
  tail.seq_lens = {static_cast<int32_t>(L - cached)};
  tail.initial_blocks = {3};
  tail.final_blocks = {3};
  ASSIGN_OR_RETURN(CopyExecutor copier, CopyExecutor::Create(Device::Cuda(0)));
  std::vector<double> miss, hit;
  for (int i = 0; i < 6; ++i) {
    absl::Time a = absl::Now();
    RETURN_IF_ERROR(model->Forward(full, pool, &logits));
    if (i > 0) miss.push_back(absl::ToDoubleMilliseconds(absl::Now() - a));
    a = absl::Now();
    // The engine's hit path: copy the cached block into the sequence's own block, then prefill
    // the uncached tail from it.
    std::vector<BlockCopy> copies{BlockCopy::Whole(2, 3)};
    ASSIGN_OR_RETURN(std::vector<CopySpec> specs, BuildStepCopySpecs(pool, copies));
    RETURN_IF_ERROR(copier.Run(specs, model->stream()));
    RETURN_IF_ERROR(model->Forward(tail, pool, &logits));
    if (i > 0) hit.push_back(absl::ToDoubleMilliseconds(absl::Now() - a));
  }
  std::printf("\n| prompt | cached | TTFT uncached ms | TTFT with hit ms | speedup | target |\n");
  std::printf("|---|---|---|---|---|---|\n");
  std::printf("| %lld | %lld | %.2f | %.2f | %.2fx | >= 6x |\n", static_cast<long long>(L),
              static_cast<long long>(cached), Median(miss), Median(hit),
              Median(miss) / Median(hit));
  return absl::OkStatus();
}

}  // namespace
}  // namespace mambaserve

int main(int argc, char** argv) {
  mambaserve::Flags f;
  for (int i = 1; i + 1 < argc; ++i) {
    const int64_t v = std::atoll(argv[i + 1]);
    if (std::strcmp(argv[i], "--layers") == 0) f.layers = v;
    if (std::strcmp(argv[i], "--batch") == 0) f.batch = v;
    if (std::strcmp(argv[i], "--decode_only") == 0) f.decode_only = v;
    if (std::strcmp(argv[i], "--steps") == 0) f.steps = v;
    if (std::strcmp(argv[i], "--dependent_launch") == 0) f.dependent_launch = v;
    if (std::strcmp(argv[i], "--arch") == 0) f.arch = v;
    if (std::strcmp(argv[i], "--few_row") == 0) f.few_row = v;
  }
  absl::Status st = mambaserve::Run(f);
  if (!st.ok()) {
    std::fprintf(stderr, "bench_model: %s\n", st.ToString().c_str());
    return 1;
  }
  return 0;
}
