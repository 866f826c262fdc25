// mambaserve: `mpirun -np N mambaserve --model DIR [--config FILE]`. Every rank loads its shard
// and state pool; rank 0 runs the engine and serves gRPC once every rank is ready.
#include <mpi.h>

#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "configs/model_config.h"
#include "core/buffer.h"
#include "core/logging.h"
#include "core/mpi_status.h"
#include "core/status_macros.h"
#include "grpcpp/grpcpp.h"
#include "launcher/engine.h"
#include "launcher/service.h"
#include "layers/mamba_model.h"
#include "layers/weight_source.h"
#include "parallel/communicator.h"
#include "parallel/mpi_context.h"

ABSL_FLAG(std::string, model, "", "checkpoint directory: config.json and safetensors");
ABSL_FLAG(std::string, config, "", "text-format MambaServeConfig (configs/presets/*.textproto)");
ABSL_FLAG(std::string, listen, "", "override server.listen_address (host:port or unix:/path)");
ABSL_FLAG(std::string, dtype, "", "override server.serving_dtype (GPU only; the CPU uses f32)");
ABSL_FLAG(bool, random_weights, false,
          "no checkpoint: seeded random weights for the config's model section (benchmarks)");

namespace mambaserve {
namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

absl::StatusOr<int64_t> AgreeOnBlocks(int64_t mine) {
  int64_t all = mine;
  MPI_RETURN_IF_ERROR(MPI_Allreduce(&mine, &all, 1, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD));
  return all;
}

absl::Status Serve(int argc, char** argv) {
  ASSIGN_OR_RETURN(const MpiContext* mpi, InitMpi(&argc, &argv));
  config::MambaServeConfig cfg = DefaultServeConfig();
  if (!absl::GetFlag(FLAGS_config).empty()) {
    ASSIGN_OR_RETURN(cfg, ReadServeConfig(absl::GetFlag(FLAGS_config)));
  }
  if (!absl::GetFlag(FLAGS_listen).empty()) {
    cfg.mutable_server()->set_listen_address(absl::GetFlag(FLAGS_listen));
  }
  if (!absl::GetFlag(FLAGS_dtype).empty()) {
    cfg.mutable_server()->set_serving_dtype(absl::GetFlag(FLAGS_dtype));
  }
  config::ModelConfig mcfg;
  std::unique_ptr<WeightSource> weights;
  if (absl::GetFlag(FLAGS_random_weights)) {
    MS_CHECK_ARG(cfg.has_model() && cfg.model().architecture() != config::ARCHITECTURE_UNSPECIFIED,
                 "--random_weights needs a model section in --config");
    mcfg = cfg.model();
    weights = std::make_unique<RandomWeights>(mcfg, 1234);
  } else {
    MS_CHECK_ARG(!absl::GetFlag(FLAGS_model).empty(), "--model DIR is required");
    ASSIGN_OR_RETURN(mcfg, ReadModelConfig(absl::GetFlag(FLAGS_model)));
    ASSIGN_OR_RETURN(weights, CheckpointWeights::Open(absl::GetFlag(FLAGS_model)));
  }
  const int64_t tp = cfg.parallel().tp_size();
  MS_CHECK_ARG(tp == 0 || tp == mpi->world_size, "config: field 'parallel.tp_size' is ", tp,
               " but mpirun started ", mpi->world_size,
               " ranks (pipeline parallelism is not "
               "supported; use tp_size 0 or the rank count)");
  const Device device = mpi->device;
  DType dtype = DType::kF32;
  if (device.is_cuda()) {
    ASSIGN_OR_RETURN(dtype, ParseDType(cfg.server().serving_dtype()));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm, CreateTpCommunicator());
  ASSIGN_OR_RETURN(std::unique_ptr<MambaModel> model,
                   MambaModel::Load(mcfg, *weights, device, dtype, comm.get()));
  weights.reset();  // the checkpoint mapping is no longer needed
  model->SetDecodeGraphMaxBatch(
      cfg.server().disable_cuda_graphs() ? 0 : std::max<int64_t>(1, cfg.server().max_batch_size()));
  ASSIGN_OR_RETURN(StateDTypes sd, ResolveStateDTypes(dtype, cfg.cache().cache_dtype(),
                                                      cfg.cache().ssm_cache_dtype()));
  const ConvLayout layout = cfg.cache().conv_layout() == "DS" ? ConvLayout::kDS : ConvLayout::kSD;
  MS_CHECK_ARG(layout == ConvLayout::kSD || cfg.cache().prefix_caching_mode() != "all",
               "config: cache.prefix_caching_mode \"all\" needs cache.conv_layout \"SD\"");
  ASSIGN_OR_RETURN(StatePoolConfig pc, model->PoolConfig(sd, layout));
  // The pool's memory: cache.memory_budget_mb when set; else, on a GPU, gpu_memory_fraction of
  // the memory still free after the weights; on the CPU 64 MB.
  int64_t budget = cfg.cache().memory_budget_mb() << 20;
  if (budget <= 0 && device.is_cuda()) {
    ASSIGN_OR_RETURN(int64_t free_bytes, DeviceFreeMemory(device));
    const double fraction = cfg.cache().gpu_memory_fraction();
    MS_CHECK_ARG(fraction > 0 && fraction < 1,
                 "config: field 'cache.gpu_memory_fraction' must be "
                 "in (0, 1), got ",
                 fraction);
    budget = static_cast<int64_t>(fraction * static_cast<double>(free_bytes));
  }
  if (budget <= 0) budget = int64_t{64} << 20;
  ASSIGN_OR_RETURN(int64_t blocks, StatePool::BlocksForBudget(pc, budget));
  ASSIGN_OR_RETURN(blocks, AgreeOnBlocks(blocks));
  ASSIGN_OR_RETURN(StatePool pool, StatePool::Create(pc, blocks));
  if (device.is_cuda()) {
    const absl::Time t0 = absl::Now();
    RETURN_IF_ERROR(model->CaptureDecodeGraphs(pool));
    MS_LOG(INFO) << "rank " << mpi->world_rank << ": " << model->decode_graph_captures()
                 << " decode CUDA graphs captured in " << absl::FormatDuration(absl::Now() - t0);
  }
  MS_LOG(INFO) << "rank " << mpi->world_rank << " ready on " << device.ToString() << ": "
               << mcfg.n_layers() << " layers, " << blocks << " state blocks ("
               << (pool.nbytes() >> 20) << " MiB)";
  MPI_RETURN_IF_ERROR(MPI_Barrier(MPI_COMM_WORLD));

  // Draining is rank 0's decision; it tells the workers to stop. mpirun forwards SIGUSR1 to
  // every rank (it turns a SIGTERM of its own into killing the job), so SIGUSR1 to mpirun, or
  // SIGTERM/SIGINT to rank 0 itself, drains; workers ignore all three.
  if (mpi->world_rank != 0) {
    std::signal(SIGTERM, SIG_IGN);
    std::signal(SIGINT, SIG_IGN);
    std::signal(SIGUSR1, SIG_IGN);
    return RunWorker(*model, pool);
  }

  EngineOptions eo;
  eo.max_batch_size = cfg.server().max_batch_size();
  eo.max_num_batched_tokens = cfg.server().max_num_batched_tokens();
  eo.max_queue_length = cfg.server().max_queue_length();
  eo.max_new_tokens_limit = cfg.server().max_new_tokens_limit();
  eo.max_prompt_tokens = cfg.server().max_prompt_tokens();
  eo.enable_prefix_caching = cfg.cache().enable_prefix_caching();
  eo.kernel_written_states = cfg.cache().prefix_caching_mode() == "all";
  eo.chunk_size = mcfg.architecture() == config::MAMBA2 ? mcfg.chunk_size() : 1;
  eo.block_size = cfg.cache().block_size();
  ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(model.get(), &pool, eo));

  api::InfoResponse info;
  info.set_architecture(mcfg.architecture() == config::MAMBA2 ? "Mamba2ForCausalLM"
                                                              : "MambaForCausalLM");
  info.set_dtype(DTypeName(dtype));
  info.set_tp_size(mpi->world_size);
  info.set_pool_blocks(blocks);
  info.set_vocab_size(mcfg.vocab_size());
  info.set_d_model(mcfg.d_model());
  info.set_n_layers(mcfg.n_layers());
  info.set_device(device.ToString());
  info.set_prefix_block_size(eo.enable_prefix_caching ? eo.block_size : 0);
  info.set_max_new_tokens_limit(eo.max_new_tokens_limit);
  MambaServeService service(engine.get(), info);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(cfg.server().listen_address(), grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", cfg.server().listen_address()));
  }
  service.set_ready(true);
  MS_LOG(INFO) << "serving on " << cfg.server().listen_address() << " (tp " << mpi->world_size
               << ", " << DTypeName(dtype) << ")";
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGUSR1, OnSignal);
  std::thread watcher([&] {
    while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    MS_LOG(INFO) << "signal received: finishing in-flight requests";
    engine->BeginDrain();
  });
  absl::Status run = engine->Run();
  g_stop = true;
  watcher.join();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return run;
}

}  // namespace
}  // namespace mambaserve

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("mpirun -np N mambaserve --model DIR [--config FILE]");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  int n = static_cast<int>(rest.size());
  char** args = rest.data();
  absl::Status st = mambaserve::Serve(n, args);
  if (!st.ok()) {
    std::fprintf(stderr, "mambaserve: %s\n", st.ToString().c_str());
    if (mambaserve::GetMpiContext() != nullptr) mambaserve::AbortAll(st);
    return 1;
  }
  (void)mambaserve::FinalizeMpi();
  return 0;
}
