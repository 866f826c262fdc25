// mambaserve_generate: greedy generation without the server, under mpirun (tp = ranks).
//   mpirun -np 2 mambaserve_generate --model DIR --ids 1,2,3 --max_new_tokens 16
// Prints the prompt followed by the generated ids (rank 0).
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "configs/model_config.h"
#include "core/status_macros.h"
#include "launcher/token_ids.h"
#include "layers/generate.h"
#include "layers/mamba_model.h"
#include "parallel/communicator.h"
#include "parallel/mpi_context.h"

ABSL_FLAG(std::string, model, "", "checkpoint directory");
ABSL_FLAG(std::string, ids, "", "comma-separated prompt token ids");
ABSL_FLAG(int32_t, max_new_tokens, 16, "tokens to generate");
ABSL_FLAG(std::string, dtype, "bfloat16", "serving dtype on GPU (the CPU uses float32)");

namespace mambaserve {
namespace {

absl::Status Main(int argc, char** argv) {
  ASSIGN_OR_RETURN(const MpiContext* mpi, InitMpi(&argc, &argv));
  ASSIGN_OR_RETURN(std::vector<int32_t> prompt, ParseTokenIds(absl::GetFlag(FLAGS_ids)));
  MS_CHECK_ARG(!prompt.empty(), "--ids is empty");
  ASSIGN_OR_RETURN(config::ModelConfig m, ReadModelConfig(absl::GetFlag(FLAGS_model)));
  ASSIGN_OR_RETURN(auto weights, CheckpointWeights::Open(absl::GetFlag(FLAGS_model)));
  ASSIGN_OR_RETURN(auto comm, CreateTpCommunicator());
  DType dtype = DType::kF32;
  if (mpi->device.is_cuda()) {
    ASSIGN_OR_RETURN(dtype, ParseDType(absl::GetFlag(FLAGS_dtype)));
  }
  ASSIGN_OR_RETURN(auto model, MambaModel::Load(m, *weights, mpi->device, dtype, comm.get()));
  ASSIGN_OR_RETURN(StatePoolConfig pc, model->PoolConfig({dtype, DType::kF32}));
  ASSIGN_OR_RETURN(StatePool pool, StatePool::Create(pc, 2));
  const absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(auto out,
                   GreedyGenerate(*model, pool, {prompt}, absl::GetFlag(FLAGS_max_new_tokens)));
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  if (mpi->world_rank == 0) {
    std::printf("%s\n", absl::StrJoin(out[0], " ").c_str());
    std::fprintf(stderr, "%d new tokens in %.3f s on %s, tp %d\n",
                 absl::GetFlag(FLAGS_max_new_tokens), secs, mpi->device.ToString().c_str(),
                 mpi->world_size);
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace mambaserve

int main(int argc, char** argv) {
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  absl::Status st = mambaserve::Main(static_cast<int>(rest.size()), rest.data());
  if (!st.ok()) {
    std::fprintf(stderr, "mambaserve_generate: %s\n", st.ToString().c_str());
    if (mambaserve::GetMpiContext() != nullptr) mambaserve::AbortAll(st);
    return 1;
  }
  (void)mambaserve::FinalizeMpi();
  return 0;
}
