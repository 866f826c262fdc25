// CUDA SSD chunked scan against the float64 oracle and the CPU reference, on the shared shape
// matrix, for every CUDA implementation that supports the case. Skips without a GPU.
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/buffer.h"
#include "core/device.h"
#include "core/stream.h"
#include "gtest/gtest.h"
#include "kernels/ssd_chunk_scan.h"
#include "kernels/ssd_chunk_scan_testutil.h"

namespace mambaserve {
namespace {

using ssd_test::Case;
using ssd_test::Problem;

struct DeviceCopy {
  std::vector<Buffer> bufs;
  void* Put(const void* host, int64_t nbytes) {
    if (host == nullptr || nbytes == 0) return nullptr;
    auto b = Buffer::Allocate(Device::Cuda(0), nbytes);
    EXPECT_TRUE(b.ok()) << b.status();
    EXPECT_TRUE(CopyBytes(b->data(), b->device(), host, Device::Cpu(), nbytes).ok());
    bufs.push_back(std::move(*b));
    return bufs.back().data();
  }
  template <typename T>
  T* PutVec(const std::vector<T>& v) {
    return static_cast<T*>(Put(v.data(), static_cast<int64_t>(v.size() * sizeof(T))));
  }
};

// Runs the problem on the GPU with `impl`; returns y and the pool copied back.
void RunOnGpu(const Problem& pr, SsdCudaImpl impl, const Stream& stream, std::vector<uint8_t>* y,
              std::vector<uint8_t>* state, int num_segments = 0) {
  DeviceCopy d;
  SsdChunkScanParams p = pr.p;
  p.cuda_impl = impl;
  p.cuda_num_segments = num_segments;
  p.x = d.PutVec(pr.x);
  p.dt = d.PutVec(pr.dt);
  p.B = d.PutVec(pr.Bm);
  p.C = d.PutVec(pr.Cm);
  p.z = pr.p.z ? d.PutVec(pr.z) : nullptr;
  void* yd = d.PutVec(pr.y);  // poisoned
  p.y = yd;
  p.A = d.PutVec(pr.A);
  p.dt_bias = pr.p.dt_bias ? d.PutVec(pr.dt_bias) : nullptr;
  p.D = pr.p.D ? d.PutVec(pr.D) : nullptr;
  p.cu_seqlens = d.PutVec(pr.cu);
  void* sd = d.PutVec(pr.state);
  p.state = sd;
  p.initial_state_block = d.PutVec(pr.init_block);
  p.final_state_block = d.PutVec(pr.final_block);
  p.prefix_offset = pr.p.prefix_offset ? d.PutVec(pr.prefix) : nullptr;
  if (pr.p.block_size > 0) {
    p.boundary_state_blocks = d.PutVec(pr.bnd_blocks);
    p.boundary_state_offsets = d.PutVec(pr.bnd_offsets);
  }
  const absl::Status st = RunSsdChunkScan(p, stream);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(stream.Synchronize().ok());
  y->resize(pr.y.size());
  state->resize(pr.state.size());
  ASSERT_TRUE(CopyBytes(y->data(), Device::Cpu(), yd, Device::Cuda(0), y->size()).ok());
  ASSERT_TRUE(CopyBytes(state->data(), Device::Cpu(), sd, Device::Cuda(0), state->size()).ok());
}

TEST(SsdChunkScanGpu, MatchesOracleAndCpuOnShapeMatrix) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device on this machine; runs on the GPU machine";
  auto stream = Stream::Create(Device::Cuda(0));
  ASSERT_TRUE(stream.ok()) << stream.status();
  for (const Case& c : ssd_test::StandardCases()) {
    SCOPED_TRACE(c.name);
    Problem pr = ssd_test::MakeProblem(c);
    const std::vector<uint8_t> state_before = pr.state;
    const ssd_test::Oracle o = ssd_test::RunOracle(pr);
    // CPU reference on a copy.
    Problem cpu = ssd_test::MakeProblem(c);
    ASSERT_TRUE(RunSsdChunkScanCpu(cpu.p).ok());
    // (impl, segments per sequence): the tensor-core path also with forced segments (segments
    // from zero states, the combine and the correction pass, used when sequences x heads are
    // few).
    std::vector<std::pair<SsdCudaImpl, int>> runs = {{SsdCudaImpl::kSequential, 0}};
    if (c.dtype == DType::kBF16 && c.N <= 128) {
      runs.push_back({SsdCudaImpl::kTensorCore, 0});
      runs.push_back({SsdCudaImpl::kTensorCore, 1});
      runs.push_back({SsdCudaImpl::kTensorCore, 3});
      runs.push_back({SsdCudaImpl::kTensorCore, 7});
    }
    for (const auto& [impl, segs] : runs) {
      const bool tcore = impl == SsdCudaImpl::kTensorCore;
      const std::string label = tcore ? absl::StrCat("tc/segs=", segs) : std::string("sequential");
      SCOPED_TRACE(label);
      std::vector<uint8_t> y, state;
      RunOnGpu(pr, impl, *stream, &y, &state, segs);
      const ssd_test::Errors e = ssd_test::Compare(pr, y, state, o, state_before);
      EXPECT_LT(e.y_rel, ssd_test::YTolerance(c)) << ssd_test::Describe(e);
      EXPECT_LT(e.state_rel, ssd_test::StateTolerance(c, tcore)) << ssd_test::Describe(e);
      EXPECT_EQ(e.y_nonfinite, 0);
      EXPECT_EQ(e.uncovered_touched, 0);
      EXPECT_EQ(e.pool_untouched_changed, 0);
      // GPU vs CPU reference (as an extra view: same oracle, both errors printed).
      const ssd_test::Errors ec = ssd_test::Compare(cpu, cpu.y, cpu.state, o, state_before);
      std::printf("%-34s %-10s gpu: %s | cpu: y_rel=%g state_rel=%g\n", c.name.c_str(),
                  label.c_str(), ssd_test::Describe(e).c_str(), ec.y_rel, ec.state_rel);
    }
  }
}

// A packed varlen batch equals its sequences run one at a time, on the GPU (tensor cores), with
// one segment per sequence and with three (a fixed count: the automatic one depends on the
// batch, and segments change the rounding).
class SsdPackedGpu : public ::testing::TestWithParam<int> {};

TEST_P(SsdPackedGpu, PackedBatchEqualsSequencesOneByOne) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device on this machine; runs on the GPU machine";
  auto stream = Stream::Create(Device::Cuda(0));
  ASSERT_TRUE(stream.ok()) << stream.status();
  const int segs = GetParam();
  Case c;
  c.seqlens = {130, 1, 64, 257};
  c.H = 4, c.P = 64, c.G = 2, c.N = 128, c.Q = 64;
  c.dtype = DType::kBF16;
  c.aligned = true;
  c.final_states = true;
  Problem pr = ssd_test::MakeProblem(c);
  std::vector<uint8_t> y_packed, st_packed;
  RunOnGpu(pr, SsdCudaImpl::kTensorCore, *stream, &y_packed, &st_packed, segs);
  const int64_t esz = DTypeSize(c.dtype);
  for (size_t s = 0; s < c.seqlens.size(); ++s) {
    Problem one = pr;  // same buffers, one sequence
    one.cu = {pr.cu[s], pr.cu[s + 1]};
    one.init_block = {pr.init_block[s]};
    one.final_block = {pr.final_block[s]};
    one.prefix = {pr.prefix[s]};
    one.p.num_seqs = 1;
    std::vector<uint8_t> y1, st1;
    RunOnGpu(one, SsdCudaImpl::kTensorCore, *stream, &y1, &st1, segs);
    for (int64_t t = pr.cu[s]; t < pr.cu[s + 1]; ++t) {
      const int64_t row = t * pr.p.y_token_stride * esz;
      ASSERT_EQ(0, std::memcmp(y1.data() + row, y_packed.data() + row, c.H * c.P * esz))
          << "seq " << s << " row " << t;
    }
    if (pr.final_block[s] != 0) {
      const int64_t off = pr.final_block[s] * pr.p.state_block_stride * DTypeSize(c.state_dtype);
      ASSERT_EQ(0, std::memcmp(st1.data() + off, st_packed.data() + off,
                               pr.p.state_block_stride * DTypeSize(c.state_dtype)))
          << "seq " << s;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Segments, SsdPackedGpu, ::testing::Values(1, 3));

}  // namespace
}  // namespace mambaserve
