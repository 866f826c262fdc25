// All-reduce benchmark over the tensor-parallel communicator (NCCL when every rank of the node
// has a GPU, else the MPI CPU communicator; MAMBASERVE_DEVICE=cpu forces the CPU).
//
//   mpirun -np 2 bench_allreduce [--dtype=bf16|f32] [--min_bytes=4096] [--max_bytes=134217728]
//                                [--batches=9] [--min_batch_ms=20]
//
// For each size (doubling from min to max bytes): a warm-up op, a correctness check (every rank
// contributes ones, every element must equal n), then `batches` timed batches. A batch is a
// barrier, then k back-to-back all-reduces (k chosen so a batch lasts about min_batch_ms), then a
// stream synchronise; its time per op is the slowest rank's batch time / k. The table gives the
// median over batches: time (us), algbw = bytes / time, busbw = algbw * 2(n-1)/n (the bytes
// every rank must move in a ring all-reduce; comparable to nccl-tests' busbw).
//
// Anchor (NCCL, 2 NVLinked H200s): about 9 us per all-reduce up to 512 KB (latency bound), and
// about 290 GB/s busbw at 128 MB.
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "core/buffer.h"
#include "core/cuda_graph.h"
#include "core/dtype.h"
#include "core/status_macros.h"
#include "core/stream.h"
#include "parallel/communicator.h"
#include "parallel/mpi_context.h"

namespace mambaserve {
namespace {

struct Options {
  DType dtype = DType::kBF16;
  int64_t min_bytes = 4096;
  int64_t max_bytes = int64_t{128} << 20;
  int batches = 9;
  double min_batch_ms = 20;
};

bool ParseFlag(const char* arg, const char* name, std::string* value) {
  const size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  *value = arg + n + 1;
  return true;
}

absl::StatusOr<Options> ParseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    if (ParseFlag(argv[i], "--dtype", &v)) {
      ASSIGN_OR_RETURN(o.dtype, ParseDType(v));
    } else if (ParseFlag(argv[i], "--min_bytes", &v)) {
      o.min_bytes = std::atoll(v.c_str());
    } else if (ParseFlag(argv[i], "--max_bytes", &v)) {
      o.max_bytes = std::atoll(v.c_str());
    } else if (ParseFlag(argv[i], "--batches", &v)) {
      o.batches = std::atoi(v.c_str());
    } else if (ParseFlag(argv[i], "--min_batch_ms", &v)) {
      o.min_batch_ms = std::atof(v.c_str());
    } else {
      return absl::InvalidArgumentError(std::string("unknown flag ") + argv[i]);
    }
  }
  MS_CHECK_ARG(o.min_bytes >= DTypeSize(o.dtype) && o.max_bytes >= o.min_bytes,
               "need dtype size <= min_bytes <= max_bytes");
  MS_CHECK_ARG(o.batches >= 1, "--batches must be >= 1");
  return o;
}

// Wall time of `ops` all-reduces on this rank, after a barrier, including the final sync.
absl::StatusOr<double> TimeBatch(Communicator& comm, const Stream& stream, void* buf, int64_t count,
                                 DType dtype, int ops) {
  RETURN_IF_ERROR(comm.Barrier(stream));
  const absl::Time t0 = absl::Now();
  for (int i = 0; i < ops; ++i) RETURN_IF_ERROR(comm.AllReduceSum(buf, count, dtype, stream));
  RETURN_IF_ERROR(stream.Synchronize());
  return absl::ToDoubleSeconds(absl::Now() - t0);
}

// The same `ops` all-reduces captured in one CUDA graph (as a decode step replays them).
absl::StatusOr<CudaGraph> CaptureBatch(Communicator& comm, const Stream& stream, void* buf,
                                       int64_t count, DType dtype, int ops) {
  return CudaGraph::Capture(stream, [&]() -> absl::Status {
    for (int i = 0; i < ops; ++i) RETURN_IF_ERROR(comm.AllReduceSum(buf, count, dtype, stream));
    return absl::OkStatus();
  });
}

// Wall time of one replay of `graph`, after a barrier, including the final sync.
absl::StatusOr<double> TimeGraph(Communicator& comm, const Stream& stream, const CudaGraph& graph) {
  RETURN_IF_ERROR(comm.Barrier(stream));
  const absl::Time t0 = absl::Now();
  RETURN_IF_ERROR(graph.Launch(stream));
  RETURN_IF_ERROR(stream.Synchronize());
  return absl::ToDoubleSeconds(absl::Now() - t0);
}

double SlowestRank(double t) {
  double m = t;
  MPI_Allreduce(&t, &m, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return m;
}

absl::Status Run(int argc, char** argv) {
  ASSIGN_OR_RETURN(const MpiContext* ctx, InitMpi(&argc, &argv));
  ASSIGN_OR_RETURN(Options opt, ParseOptions(argc, argv));
  ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm, CreateTpCommunicator());
  ASSIGN_OR_RETURN(Stream stream, Stream::Create(comm->device()));
  const int n = comm->size();
  const bool root = comm->rank() == 0;
  const int64_t esize = DTypeSize(opt.dtype);
  ASSIGN_OR_RETURN(Buffer buf, Buffer::Allocate(comm->device(), opt.max_bytes));
  if (root) {
    std::printf("# all-reduce (sum, in place): backend %s, %d ranks, %s, dtype %s, world %d\n",
                CommBackendName(comm->backend()), n, comm->device().ToString().c_str(),
                DTypeName(opt.dtype), ctx->world_size);
    std::printf(
        "# time = median over %d batches of the slowest rank's time per op; "
        "busbw = algbw * 2(n-1)/n\n",
        opt.batches);
    std::printf(
        "# anchor: NCCL on 2 NVLinked H200s ~9 us up to 512 KB, ~290 GB/s busbw at 128 MB\n");
    std::printf(
        "| bytes | elements | time (us) | algbw (GB/s) | busbw (GB/s) | ops/batch | in a CUDA "
        "graph "
        "(us) | check |\n");
    std::printf("|---:|---:|---:|---:|---:|---:|---:|:---|\n");
  }
  std::vector<char> host(static_cast<size_t>(opt.max_bytes));
  for (int64_t bytes = opt.min_bytes; bytes <= opt.max_bytes; bytes *= 2) {
    const int64_t count = bytes / esize;
    // Correctness: ones everywhere -> n everywhere (exact for n <= 256 in bf16).
    for (int64_t i = 0; i < count; ++i) StoreFromFloat(host.data(), opt.dtype, i, 1.0f);
    RETURN_IF_ERROR(
        CopyBytes(buf.data(), comm->device(), host.data(), Device::Cpu(), bytes, &stream));
    RETURN_IF_ERROR(comm->AllReduceSum(buf.data(), count, opt.dtype, stream));
    RETURN_IF_ERROR(stream.Synchronize());
    RETURN_IF_ERROR(
        CopyBytes(host.data(), Device::Cpu(), buf.data(), comm->device(), bytes, &stream));
    RETURN_IF_ERROR(stream.Synchronize());
    int64_t wrong = 0;
    for (int64_t i = 0; i < count; ++i) {
      wrong += LoadAsFloat(host.data(), opt.dtype, i) != static_cast<float>(n);
    }
    int64_t wrong_all = 0;
    MPI_Allreduce(&wrong, &wrong_all, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    // Timing on zeros (values stay finite however many ops run).
    RETURN_IF_ERROR(ZeroBytes(buf.data(), comm->device(), bytes, &stream));
    ASSIGN_OR_RETURN(double one, TimeBatch(*comm, stream, buf.data(), count, opt.dtype, 1));
    one = SlowestRank(one);
    int ops =
        static_cast<int>(std::clamp(opt.min_batch_ms * 1e-3 / std::max(one, 1e-7), 1.0, 1000.0));
    std::vector<double> per_op;
    for (int b = 0; b < opt.batches; ++b) {
      ASSIGN_OR_RETURN(double t, TimeBatch(*comm, stream, buf.data(), count, opt.dtype, ops));
      per_op.push_back(SlowestRank(t) / ops);
    }
    std::sort(per_op.begin(), per_op.end());
    const double t = per_op[per_op.size() / 2];
    // In a graph, host enqueue costs vanish: what a captured decode step pays per all-reduce.
    double graph_t = 0;
    if (comm->backend() == CommBackend::kNccl) {
      const int gops = std::min(ops, 100);
      ASSIGN_OR_RETURN(CudaGraph graph,
                       CaptureBatch(*comm, stream, buf.data(), count, opt.dtype, gops));
      RETURN_IF_ERROR(graph.Launch(stream));  // warm-up
      RETURN_IF_ERROR(stream.Synchronize());
      std::vector<double> g;
      for (int b = 0; b < opt.batches; ++b) {
        ASSIGN_OR_RETURN(double tg, TimeGraph(*comm, stream, graph));
        g.push_back(SlowestRank(tg) / gops);
      }
      std::sort(g.begin(), g.end());
      graph_t = g[g.size() / 2];
    }
    const double algbw = static_cast<double>(bytes) / t * 1e-9;
    const double busbw = algbw * 2.0 * (n - 1) / n;
    if (root) {
      std::printf("| %lld | %lld | %.1f | %.2f | %.2f | %d | %s | %s |\n",
                  static_cast<long long>(bytes), static_cast<long long>(count), t * 1e6, algbw,
                  busbw, ops, graph_t > 0 ? absl::StrFormat("%.1f", graph_t * 1e6).c_str() : "-",
                  wrong_all == 0 ? "ok" : "WRONG");
      std::fflush(stdout);
    }
    if (wrong_all != 0) {
      return absl::InternalError(absl::StrCat(wrong_all, " wrong elements at ", bytes, " bytes"));
    }
  }
  comm.reset();
  return absl::OkStatus();
}

}  // namespace
}  // namespace mambaserve

int main(int argc, char** argv) {
  absl::Status s = mambaserve::Run(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "bench_allreduce: %s\n", s.ToString().c_str());
    mambaserve::AbortAll(s);
  }
  s = mambaserve::FinalizeMpi();
  if (!s.ok()) {
    std::fprintf(stderr, "bench_allreduce: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
