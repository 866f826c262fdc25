// One Mamba-2 layer (Mamba2-2.7B shape: d_model 2560, 80 heads x 64, G = 1, N = 128) sharded over
// the MPI ranks: prefill and decode time at this tp, and how much of a decode step the
// all-reduces take. Run at tp = 1, 2, 4 and compare (issue: tensor parallelism benchmark):
//   mpirun -np N bench_tp_layer [--layers 1] [--prefill_len 4096] [--d_model 2560] [--vocab 256]
// The vocabulary is small by default so that the step times are the layer's, not the LM head's
// (50288 x 2560 bf16 would be 257 MB, three times one layer's weights).
// Random bf16 weights on GPU (one GPU per rank), f32 on the CPU backend.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "core/status_macros.h"
#include "layers/mamba_model.h"
#include "layers/weight_source.h"
#include "parallel/communicator.h"
#include "parallel/mpi_context.h"

namespace mambaserve {
namespace {

struct Flags {
  int64_t layers = 1, prefill_len = 4096, d_model = 2560, vocab = 256, iters = 10;
};

absl::Status Run(const Flags& f, int argc, char** argv) {
  ASSIGN_OR_RETURN(const MpiContext* mpi, InitMpi(&argc, &argv));
  ASSIGN_OR_RETURN(auto comm, CreateTpCommunicator());
  config::ModelConfig m;
  m.set_architecture(config::MAMBA2);
  m.set_vocab_size(f.vocab);
  m.set_d_model(f.d_model);
  m.set_n_layers(f.layers);
  m.set_d_state(128);
  m.set_d_conv(4);
  m.set_expand(2);
  m.set_d_inner(2 * f.d_model);
  m.set_head_dim(64);
  m.set_num_heads(2 * f.d_model / 64);
  m.set_n_groups(1);
  m.set_chunk_size(256);
  m.set_dt_limit_min(0);
  m.set_dt_limit_max(INFINITY);
  m.set_norm_eps(1e-5);
  m.set_tie_embeddings(true);
  m.set_residual_in_fp32(true);
  m.set_conv_bias(true);
  const Device dev = mpi->device;
  const DType dtype = dev.is_cuda() ? DType::kBF16 : DType::kF32;
  RandomWeights weights(m, 11);
  ASSIGN_OR_RETURN(auto model, MambaModel::Load(m, weights, dev, dtype, comm.get()));
  ASSIGN_OR_RETURN(StatePoolConfig pc, model->PoolConfig({dtype, DType::kF32}));
  ASSIGN_OR_RETURN(StatePool pool, StatePool::Create(pc, 66));
  std::vector<float> logits;
  auto time_step = [&](const ForwardInput& in) -> absl::StatusOr<double> {
    std::vector<double> ms;
    for (int64_t i = 0; i < f.iters + 2; ++i) {
      RETURN_IF_ERROR(comm->Barrier(model->stream()));
      const absl::Time a = absl::Now();
      RETURN_IF_ERROR(model->Forward(in, pool, &logits));
      if (i >= 2) ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - a));
    }
    return Median(ms);
  };
  ForwardInput pre;
  for (int64_t t = 0; t < f.prefill_len; ++t)
    pre.token_ids.push_back(static_cast<int32_t>(t % f.vocab));
  pre.seq_lens = {static_cast<int32_t>(f.prefill_len)};
  pre.initial_blocks = {0};
  pre.final_blocks = {65};
  ASSIGN_OR_RETURN(double prefill_ms, time_step(pre));
  if (mpi->world_rank == 0) {
    std::printf("tp %d on %s (%s), %lld layer(s), d_model %lld\n\n", mpi->world_size,
                dev.ToString().c_str(), DTypeName(dtype), static_cast<long long>(f.layers),
                static_cast<long long>(f.d_model));
    std::printf(
        "| step | tp | ms | eager ms | all-reduce ms (same bytes, alone) | all-reduce share |\n");
    std::printf("|---|---|---|---|---|---|\n");
    std::printf("| prefill b=1 L=%lld | %d | %.3f | | | |\n", static_cast<long long>(f.prefill_len),
                mpi->world_size, prefill_ms);
  }
  for (int64_t batch : {1, 16, 64}) {
    ForwardInput dec;
    dec.num_decode = batch;
    for (int64_t s = 0; s < batch; ++s) {
      dec.token_ids.push_back(static_cast<int32_t>(s % f.vocab));
      dec.seq_lens.push_back(1);
      dec.initial_blocks.push_back(static_cast<int32_t>(1 + s));
      dec.final_blocks.push_back(static_cast<int32_t>(1 + s));
    }
    model->SetDecodeGraphMaxBatch(0);
    ASSIGN_OR_RETURN(double eager_ms, time_step(dec));
    model->SetDecodeGraphMaxBatch(MambaModel::kDefaultDecodeGraphMaxBatch);
    ASSIGN_OR_RETURN(double step_ms, time_step(dec));  // CUDA graph where the backend allows
    // The step's collectives: per layer the gated-norm sums (batch x G f32, G = 1 here spans
    // ranks) and out_proj (batch x d_model); plus the embedding (batch x d_model).
    double ar_ms = 0;
    if (mpi->world_size > 1) {
      ASSIGN_OR_RETURN(Buffer buf, Buffer::Allocate(dev, batch * f.d_model * 4));
      std::vector<double> ms;
      for (int i = 0; i < f.iters + 2; ++i) {
        RETURN_IF_ERROR(comm->Barrier(model->stream()));
        const absl::Time a = absl::Now();
        RETURN_IF_ERROR(comm->AllReduceSum(buf.data(), batch * f.d_model, dtype, model->stream()));
        for (int64_t l = 0; l < f.layers; ++l) {
          RETURN_IF_ERROR(comm->AllReduceSum(buf.data(), batch, DType::kF32, model->stream()));
          RETURN_IF_ERROR(
              comm->AllReduceSum(buf.data(), batch * f.d_model, dtype, model->stream()));
        }
        RETURN_IF_ERROR(model->stream().Synchronize());
        if (i >= 2) ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - a));
      }
      ar_ms = Median(ms);
    }
    if (mpi->world_rank == 0) {
      std::printf("| decode b=%lld | %d | %.3f | %.3f | %.3f | %.0f%% |\n",
                  static_cast<long long>(batch), mpi->world_size, step_ms, eager_ms, ar_ms,
                  step_ms > 0 ? 100.0 * ar_ms / step_ms : 0.0);
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace mambaserve

int main(int argc, char** argv) {
  mambaserve::Flags f;
  for (int i = 1; i + 1 < argc; ++i) {
    const std::string a = argv[i];
    const int64_t v = std::atoll(argv[i + 1]);
    if (a == "--layers") f.layers = v;
    if (a == "--prefill_len") f.prefill_len = v;
    if (a == "--d_model") f.d_model = v;
    if (a == "--iters") f.iters = v;
    if (a == "--vocab") f.vocab = v;
  }
  absl::Status st = mambaserve::Run(f, argc, argv);
  if (!st.ok()) {
    std::fprintf(stderr, "bench_tp_layer: %s\n", st.ToString().c_str());
    if (mambaserve::GetMpiContext() != nullptr) mambaserve::AbortAll(st);
    return 1;
  }
  (void)mambaserve::FinalizeMpi();
  return 0;
}
