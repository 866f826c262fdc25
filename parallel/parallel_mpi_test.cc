// Collectives under mpirun -np 1, 2, 4: the MPI communicator on CPU-only machines, NCCL when
// every rank of the node has a GPU (see mpi_context.h for the device choice).
//
// Data are small integers, so every sum is exact in fp32 and bf16 (|sum| <= 4 * 8 = 32, well
// inside bf16's 8-bit mantissa) and results are compared for equality, not within a tolerance.
#include <mpi.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "core/buffer.h"
#include "core/dtype.h"
#include "core/random.h"
#include "core/stream.h"
#include "gtest/gtest.h"
#include "parallel/communicator.h"
#include "parallel/mpi_context.h"

namespace mambaserve {
namespace {

// One communicator and stream for the whole binary, destroyed before MPI_Finalize.
struct Shared {
  std::unique_ptr<Communicator> comm;
  Stream stream;
};
Shared* g_shared = nullptr;

class SharedEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    g_shared = new Shared;
    absl::StatusOr<std::unique_ptr<Communicator>> c = CreateTpCommunicator();
    ASSERT_TRUE(c.ok()) << c.status();
    g_shared->comm = std::move(*c);
    absl::StatusOr<Stream> s = Stream::Create(g_shared->comm->device());
    ASSERT_TRUE(s.ok()) << s.status();
    g_shared->stream = std::move(*s);
    if (g_shared->comm->rank() == 0) {
      std::printf("communicator: %s, %d ranks, %s\n", CommBackendName(g_shared->comm->backend()),
                  g_shared->comm->size(), g_shared->comm->device().ToString().c_str());
    }
  }
  void TearDown() override {
    delete g_shared;
    g_shared = nullptr;
  }
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new SharedEnvironment);

Communicator& Comm() { return *g_shared->comm; }
const Stream& S() { return g_shared->stream; }

// Host <-> communicator-device staging (a plain copy on the CPU backend).
class DeviceArray {
 public:
  DeviceArray(Device device, int64_t bytes) : device_(device) {
    absl::StatusOr<Buffer> b = Buffer::Allocate(device, std::max<int64_t>(bytes, 1));
    EXPECT_TRUE(b.ok()) << b.status();
    if (b.ok()) buf_ = std::move(*b);
  }
  void* data() const { return buf_.data(); }
  void Upload(const void* src, int64_t bytes) {
    ASSERT_TRUE(CopyBytes(buf_.data(), device_, src, Device::Cpu(), bytes, &S()).ok());
    ASSERT_TRUE(S().Synchronize().ok());
  }
  void Download(void* dst, int64_t bytes) {
    ASSERT_TRUE(S().Synchronize().ok());
    ASSERT_TRUE(CopyBytes(dst, Device::Cpu(), buf_.data(), device_, bytes, &S()).ok());
    ASSERT_TRUE(S().Synchronize().ok());
  }

 private:
  Device device_;
  Buffer buf_;
};

// Element i of rank r: an integer in [-8, 8].
float Value(int rank, int64_t i) { return static_cast<float>((i * 7 + rank * 13) % 17 - 8); }

template <typename T>
std::vector<T> RankData(int rank, int64_t n) {
  std::vector<T> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = FromFloat<T>(Value(rank, i));
  return v;
}

template <typename T>
void CheckAllReduceExact(int64_t count) {
  SCOPED_TRACE(testing::Message() << "count=" << count << " dtype=" << DTypeName(DTypeOf<T>()));
  const int n = Comm().size();
  const int64_t bytes = count * static_cast<int64_t>(sizeof(T));
  std::vector<T> host = RankData<T>(Comm().rank(), count);
  DeviceArray dev(Comm().device(), bytes);
  dev.Upload(host.data(), bytes);
  ASSERT_TRUE(Comm().AllReduceSum(dev.data(), count, DTypeOf<T>(), S()).ok());
  std::vector<T> out(count, FromFloat<T>(NAN));
  dev.Download(out.data(), bytes);
  int64_t bad = 0;
  for (int64_t i = 0; i < count; ++i) {
    float want = 0;
    for (int r = 0; r < n; ++r) want += Value(r, i);
    if (ToFloat(out[i]) != want && ++bad <= 5) {
      ADD_FAILURE() << "element " << i << ": got " << ToFloat(out[i]) << ", want " << want;
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST(Collectives, AllReduceF32Exact) {
  for (int64_t count : {1, 3, 1000, 262147}) CheckAllReduceExact<float>(count);
}

TEST(Collectives, AllReduceBf16Exact) {
  for (int64_t count : {1, 5, 4099, 262147}) CheckAllReduceExact<bf16>(count);
}

TEST(Collectives, AllReduceLargerThanOneSegment) {
  // 9M floats = 36 MB, more than the MPI communicator's 32 MB segment.
  CheckAllReduceExact<float>(int64_t{9} << 20);
}

TEST(Collectives, AllReduceZeroCount) {
  EXPECT_TRUE(Comm().AllReduceSum(nullptr, 0, DType::kF32, S()).ok());
}

// Non-integer data: the sums round, but every rank must hold the same bits.
TEST(Collectives, AllReduceBitwiseIdenticalOnAllRanks) {
  const int n = Comm().size();
  const int64_t count = 10007;
  Rng rng(1234 + Comm().rank());
  for (DType dt : {DType::kF32, DType::kBF16}) {
    const int64_t esize = DTypeSize(dt);
    std::vector<char> host(count * esize);
    for (int64_t i = 0; i < count; ++i) StoreFromFloat(host.data(), dt, i, rng.Normal() * 3.0f);
    DeviceArray dev(Comm().device(), count * esize);
    dev.Upload(host.data(), count * esize);
    ASSERT_TRUE(Comm().AllReduceSum(dev.data(), count, dt, S()).ok());
    DeviceArray all(Comm().device(), n * count * esize);
    ASSERT_TRUE(Comm().AllGather(dev.data(), all.data(), count, dt, S()).ok());
    std::vector<char> gathered(n * count * esize);
    all.Download(gathered.data(), n * count * esize);
    for (int r = 1; r < n; ++r) {
      EXPECT_EQ(std::memcmp(gathered.data(), gathered.data() + r * count * esize, count * esize), 0)
          << "rank " << r << " differs from rank 0 (" << DTypeName(dt) << ")";
    }
  }
}

TEST(Collectives, AllGather) {
  const int n = Comm().size();
  for (int64_t count : {1, 999, 65536}) {
    SCOPED_TRACE(count);
    std::vector<float> mine(count);
    for (int64_t i = 0; i < count; ++i) mine[i] = static_cast<float>(Comm().rank() * 100000 + i);
    DeviceArray send(Comm().device(), count * 4), recv(Comm().device(), n * count * 4);
    send.Upload(mine.data(), count * 4);
    std::vector<float> poison(n * count, NAN);
    recv.Upload(poison.data(), n * count * 4);
    ASSERT_TRUE(Comm().AllGather(send.data(), recv.data(), count, DType::kF32, S()).ok());
    std::vector<float> out(n * count);
    recv.Download(out.data(), n * count * 4);
    for (int r = 0; r < n; ++r) {
      for (int64_t i = 0; i < count; ++i) {
        ASSERT_EQ(out[r * count + i], static_cast<float>(r * 100000 + i)) << r << " " << i;
      }
    }
  }
  // bf16, 2-byte elements.
  std::vector<bf16> mine = RankData<bf16>(Comm().rank(), 77);
  DeviceArray send(Comm().device(), 77 * 2), recv(Comm().device(), n * 77 * 2);
  send.Upload(mine.data(), 77 * 2);
  ASSERT_TRUE(Comm().AllGather(send.data(), recv.data(), 77, DType::kBF16, S()).ok());
  std::vector<bf16> out(n * 77);
  recv.Download(out.data(), n * 77 * 2);
  for (int r = 0; r < n; ++r) {
    for (int64_t i = 0; i < 77; ++i) ASSERT_EQ(ToFloat(out[r * 77 + i]), Value(r, i));
  }
}

TEST(Collectives, BroadcastFromEveryRoot) {
  const int n = Comm().size();
  const int64_t count = 4097;
  for (int root = 0; root < n; ++root) {
    std::vector<float> host(count);
    for (int64_t i = 0; i < count; ++i) {
      host[i] = Comm().rank() == root ? static_cast<float>(root * 1000 + i) : NAN;
    }
    DeviceArray dev(Comm().device(), count * 4);
    dev.Upload(host.data(), count * 4);
    ASSERT_TRUE(Comm().Broadcast(dev.data(), count, DType::kF32, root, S()).ok());
    dev.Download(host.data(), count * 4);
    for (int64_t i = 0; i < count; ++i) {
      ASSERT_EQ(host[i], static_cast<float>(root * 1000 + i)) << "root " << root << " i " << i;
    }
  }
}

// Nobody leaves the barrier before the last rank entered it (ranks enter at staggered times;
// all processes share the machine's clock).
TEST(Collectives, BarrierWaitsForEveryRank) {
  const int n = Comm().size();
  std::this_thread::sleep_for(std::chrono::milliseconds(30 * Comm().rank()));
  const double entered = absl::ToUnixMicros(absl::Now()) * 1e-6;
  ASSERT_TRUE(Comm().Barrier(S()).ok());
  const double left = absl::ToUnixMicros(absl::Now()) * 1e-6;
  std::vector<double> all(n);
  ASSERT_EQ(MPI_Allgather(&entered, 1, MPI_DOUBLE, all.data(), 1, MPI_DOUBLE, MPI_COMM_WORLD),
            MPI_SUCCESS);
  for (int r = 0; r < n; ++r) EXPECT_GE(left, all[r]) << "left before rank " << r << " entered";
}

TEST(Collectives, SplitIntoSubCommunicators) {
  const int rank = Comm().rank();
  absl::StatusOr<std::unique_ptr<Communicator>> sub = Comm().Split(rank % 2, rank);
  ASSERT_TRUE(sub.ok()) << sub.status();
  EXPECT_EQ((*sub)->size(), (Comm().size() + 1 - rank % 2) / 2);
  EXPECT_EQ((*sub)->rank(), rank / 2);
  float v = static_cast<float>(rank + 1);
  DeviceArray dev(Comm().device(), 4);
  dev.Upload(&v, 4);
  ASSERT_TRUE((*sub)->AllReduceSum(dev.data(), 1, DType::kF32, S()).ok());
  dev.Download(&v, 4);
  float want = 0;
  for (int r = rank % 2; r < Comm().size(); r += 2) want += static_cast<float>(r + 1);
  EXPECT_EQ(v, want);
}

TEST(Collectives, RejectsBadArguments) {
  DeviceArray dev(Comm().device(), 16);
  EXPECT_EQ(Comm().AllReduceSum(dev.data(), -1, DType::kF32, S()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Comm().Broadcast(dev.data(), 1, DType::kF32, Comm().size(), S()).code(),
            absl::StatusCode::kInvalidArgument);
  if (Comm().backend() == CommBackend::kMpi && CudaAvailable()) {
    absl::StatusOr<Stream> gpu = Stream::Create(Device::Cuda(0));
    ASSERT_TRUE(gpu.ok());
    EXPECT_EQ(Comm().AllReduceSum(dev.data(), 1, DType::kF32, *gpu).code(),
              absl::StatusCode::kInvalidArgument);
  }
  if (Comm().backend() == CommBackend::kNccl) {
    EXPECT_EQ(Comm().AllReduceSum(dev.data(), 1, DType::kF32, Stream()).code(),
              absl::StatusCode::kInvalidArgument);
  }
  // The communicator is still healthy after refused calls.
  EXPECT_TRUE(Comm().CheckHealth().ok());
}

// The watchdog: rank 1 does not enter the collective; rank 0 must get DeadlineExceeded within
// the timeout instead of hanging. Then every rank must still end cleanly:
//  - MPI: rank 1 joins the abandoned all-reduce late (after a world barrier that rank 0 enters
//    only after its timeout), which completes rank 0's orphaned request; then the communicator
//    can be freed. (A rank that never joins leaves the request pending forever: MPI cannot cancel
//    collectives, which is why production code calls AbortAll on a watchdog error.)
//  - NCCL: the watchdog aborts rank 0's communicator, which makes the stuck kernel exit; rank 1's
//    communicator is torn down by its destructor (finalize within the timeout, else abort).
TEST(Watchdog, StuckCollectiveBecomesDeadlineExceeded) {
  if (Comm().size() < 2) GTEST_SKIP() << "needs at least 2 ranks";
  const int rank = Comm().rank();
  // Ranks 0 and 1 form the pair under test; the others wait at the world barriers.
  absl::StatusOr<std::unique_ptr<Communicator>> pair_or = Comm().Split(rank < 2 ? 0 : 1, rank);
  ASSERT_TRUE(pair_or.ok()) << pair_or.status();
  std::unique_ptr<Communicator> pair = std::move(*pair_or);
  const absl::Duration timeout = absl::Milliseconds(500);
  pair->set_timeout(timeout);
  const int64_t count = 1000;
  std::vector<float> host = RankData<float>(rank, count);
  DeviceArray dev(Comm().device(), count * 4);
  dev.Upload(host.data(), count * 4);

  if (rank == 0) {
    const absl::Time start = absl::Now();
    absl::Status s = pair->AllReduceSum(dev.data(), count, DType::kF32, S());
    if (s.ok()) {
      // NCCL enqueues asynchronously: the error arrives through the watchdog.
      while (absl::Now() - start < absl::Seconds(10) && (s = pair->CheckHealth()).ok()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
    const absl::Duration waited = absl::Now() - start;
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    EXPECT_GE(waited, timeout);
    // Generous upper bound: CI oversubscribes 4 ranks on 2 cores.
    EXPECT_LT(waited, timeout + absl::Seconds(3)) << absl::FormatDuration(waited);
    // Broken from now on, with the first error in the message.
    absl::Status again = pair->AllReduceSum(dev.data(), count, DType::kF32, S());
    EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition) << again;
    EXPECT_NE(again.message().find("did not complete"), absl::string_view::npos) << again;
    EXPECT_EQ(pair->CheckHealth().code(), absl::StatusCode::kDeadlineExceeded);
    if (Comm().backend() == CommBackend::kNccl) {
      EXPECT_TRUE(S().Synchronize().ok());  // the aborted kernel has exited
    }
  }
  ASSERT_EQ(MPI_Barrier(MPI_COMM_WORLD), MPI_SUCCESS);  // rank 0 has timed out
  if (rank == 1 && Comm().backend() == CommBackend::kMpi) {
    pair->set_timeout(absl::Seconds(30));
    absl::Status late = pair->AllReduceSum(dev.data(), count, DType::kF32, S());
    EXPECT_TRUE(late.ok()) << late;
    std::vector<float> out(count);
    dev.Download(out.data(), count * 4);
    for (int64_t i = 0; i < count; ++i) ASSERT_EQ(out[i], Value(0, i) + Value(1, i)) << i;
  }
  if (rank == 1 && Comm().backend() == CommBackend::kNccl) {
    pair->set_timeout(absl::Seconds(2));  // bounds the destructor's finalize
  }
  ASSERT_EQ(MPI_Barrier(MPI_COMM_WORLD), MPI_SUCCESS);  // progresses rank 0's orphan
  pair.reset();
  ASSERT_EQ(MPI_Barrier(MPI_COMM_WORLD), MPI_SUCCESS);
  // The shared communicator is unaffected.
  EXPECT_TRUE(Comm().CheckHealth().ok());
  CheckAllReduceExact<float>(17);
}

// Run by ctest a second time with MAMBASERVE_COLLECTIVE_TIMEOUT_S=3.5 (parallel_mpi_test_env).
TEST(Watchdog, TimeoutFromEnvironment) {
  const char* env = std::getenv("MAMBASERVE_COLLECTIVE_TIMEOUT_S");
  if (env == nullptr) GTEST_SKIP() << "MAMBASERVE_COLLECTIVE_TIMEOUT_S is not set";
  EXPECT_EQ(std::string(env), "3.5");
  EXPECT_EQ(DefaultCollectiveTimeout(), absl::Milliseconds(3500));
  EXPECT_EQ(Comm().timeout(), absl::Milliseconds(3500));
}

TEST(Watchdog, DefaultTimeoutSetter) {
  const absl::Duration old = DefaultCollectiveTimeout();
  SetDefaultCollectiveTimeout(absl::Seconds(7));
  EXPECT_EQ(DefaultCollectiveTimeout(), absl::Seconds(7));
  absl::StatusOr<std::unique_ptr<Communicator>> c = Comm().Split(0, Comm().rank());
  ASSERT_TRUE(c.ok()) << c.status();
  // Split copies the parent's timeout; fresh communicators take the default.
  EXPECT_EQ((*c)->timeout(), Comm().timeout());
  SetDefaultCollectiveTimeout(old);
}

}  // namespace
}  // namespace mambaserve
