// CPU reference of the SSD chunked scan against the float64 sequential-recurrence oracle.
#include "kernels/ssd_chunk_scan.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/stream.h"
#include "gtest/gtest.h"
#include "kernels/ssd_chunk_scan_testutil.h"

namespace mambaserve {
namespace {

using ssd_test::Case;
using ssd_test::Problem;

TEST(SsdChunkScanCpu, MatchesFloat64OracleOnShapeMatrix) {
  for (const Case& c : ssd_test::StandardCases()) {
    SCOPED_TRACE(c.name);
    Problem pr = ssd_test::MakeProblem(c);
    const std::vector<uint8_t> state_before = pr.state;
    const ssd_test::Oracle o = ssd_test::RunOracle(pr);
    ASSERT_TRUE(RunSsdChunkScan(pr.p, Stream()).ok());
    const ssd_test::Errors e = ssd_test::Compare(pr, pr.y, pr.state, o, state_before);
    EXPECT_LT(e.y_rel, ssd_test::YTolerance(c)) << ssd_test::Describe(e);
    EXPECT_LT(e.state_rel, ssd_test::StateTolerance(c, false)) << ssd_test::Describe(e);
    EXPECT_EQ(e.y_nonfinite, 0);
    EXPECT_EQ(e.uncovered_touched, 0);
    EXPECT_EQ(e.pool_untouched_changed, 0);
    std::printf("%-34s %s\n", c.name.c_str(), ssd_test::Describe(e).c_str());
  }
}

TEST(SsdChunkScanCpu, ChunkSizeDoesNotChangeTheResult) {
  Case c;
  c.seqlens = {300, 77};
  c.H = 3, c.P = 6, c.G = 1, c.N = 9;
  std::vector<std::vector<uint8_t>> ys;
  for (int64_t q : {16, 64, 256}) {
    c.Q = q;
    Problem pr = ssd_test::MakeProblem(c);
    const std::vector<uint8_t> state_before = pr.state;
    const ssd_test::Oracle o = ssd_test::RunOracle(pr);  // before the run: it updates blocks
    ASSERT_TRUE(RunSsdChunkScanCpu(pr.p).ok());
    const ssd_test::Errors e = ssd_test::Compare(pr, pr.y, pr.state, o, state_before);
    EXPECT_LT(e.y_rel, 2e-5) << "Q=" << q;
  }
}

// A packed varlen batch equals its sequences run one by one (bit-exact on the CPU: each
// (sequence, head) is computed independently with the same chunking).
TEST(SsdChunkScanCpu, PackedBatchEqualsSequencesOneByOne) {
  Case c;
  c.seqlens = {33, 1, 90, 17};
  c.H = 4, c.P = 5, c.G = 2, c.N = 8, c.Q = 16;
  c.has_z = true;
  c.block_size = 32;
  c.prefix_offsets = true;
  Problem pr = ssd_test::MakeProblem(c);
  const std::vector<uint8_t> pool0 = pr.state;
  ASSERT_TRUE(RunSsdChunkScanCpu(pr.p).ok());
  const std::vector<uint8_t> y_packed = pr.y, pool_packed = pr.state;

  std::vector<uint8_t> y_single(pr.y.size());
  std::vector<uint8_t> pool = pool0;
  const int64_t esz = DTypeSize(c.dtype);
  for (int64_t s = 0; s < pr.p.num_seqs; ++s) {
    SsdChunkScanParams p = pr.p;
    std::vector<uint8_t> y = pr.y;
    int32_t cu[2] = {pr.cu[s], pr.cu[s + 1]};
    int32_t bo[2] = {0, pr.bnd_offsets[s + 1] - pr.bnd_offsets[s]};
    p.num_seqs = 1;
    p.cu_seqlens = cu;
    p.initial_state_block = &pr.init_block[s];
    p.final_state_block = &pr.final_block[s];
    p.prefix_offset = &pr.prefix[s];
    p.boundary_state_blocks = pr.bnd_blocks.data() + pr.bnd_offsets[s];
    p.boundary_state_offsets = bo;
    p.state = pool.data();
    p.y = y.data();
    ASSERT_TRUE(RunSsdChunkScanCpu(p).ok());
    for (int64_t t = pr.cu[s]; t < pr.cu[s + 1]; ++t) {
      const int64_t row = t * p.y_token_stride * esz;
      std::memcpy(y_single.data() + row, y.data() + row, p.y_token_stride * esz);
    }
  }
  for (int64_t t = pr.cu[0]; t < pr.cu.back(); ++t) {
    const int64_t row = t * pr.p.y_token_stride * esz;
    ASSERT_EQ(0,
              std::memcmp(y_single.data() + row, y_packed.data() + row, pr.p.y_token_stride * esz))
        << "row " << t;
  }
  EXPECT_EQ(pool, pool_packed);
}

// Prefill n tokens (final state to a block), then m tokens from that block with
// prefix_offset = n, equals prefill of n + m: same y rows, same final state.
TEST(SsdChunkScanCpu, PrefillThenContinueEqualsWholePrefill) {
  for (int64_t n : {1, 40, 64, 100}) {
    SCOPED_TRACE(n);
    Case c;
    c.seqlens = {173};
    c.H = 3, c.P = 6, c.G = 1, c.N = 10, c.Q = 32;
    c.has_z = true;
    c.block_size = 64;
    c.initial_states = true;  // seq 0 starts from block 1
    Problem whole = ssd_test::MakeProblem(c);
    std::vector<uint8_t> pool_whole = whole.state;
    std::vector<uint8_t> pool_split = whole.state;
    whole.p.state = pool_whole.data();
    ASSERT_TRUE(RunSsdChunkScanCpu(whole.p).ok());

    // Split run: tokens [0, n) then [n, 173) of the same buffers.
    const int32_t total = whole.cu[1] - whole.cu[0];
    SsdChunkScanParams p = whole.p;
    std::vector<uint8_t> y = whole.y;  // copy; rows overwritten below
    for (auto& b : y) b = 0xff;
    p.y = y.data();
    p.state = pool_split.data();
    const int32_t scratch = static_cast<int32_t>(p.num_blocks - 1);  // the spare block
    int32_t cu1[2] = {whole.cu[0], whole.cu[0] + static_cast<int32_t>(n)};
    int32_t init1 = whole.init_block[0], fin1 = scratch, off1 = 0;
    // Boundary states of the first part, then of the second part.
    const int64_t nb1 = n / c.block_size;
    int32_t bo1[2] = {0, static_cast<int32_t>(nb1)};
    p.num_seqs = 1;
    p.cu_seqlens = cu1;
    p.initial_state_block = &init1;
    p.final_state_block = &fin1;
    p.prefix_offset = &off1;
    p.boundary_state_blocks = whole.bnd_blocks.data();
    p.boundary_state_offsets = bo1;
    ASSERT_TRUE(RunSsdChunkScanCpu(p).ok());
    int32_t cu2[2] = {cu1[1], whole.cu[0] + total};
    int32_t init2 = scratch, fin2 = whole.final_block[0], off2 = static_cast<int32_t>(n);
    const int64_t nb_all = whole.bnd_offsets[1];
    int32_t bo2[2] = {0, static_cast<int32_t>(nb_all - nb1)};
    p.cu_seqlens = cu2;
    p.initial_state_block = &init2;
    p.final_state_block = &fin2;
    p.prefix_offset = &off2;
    p.boundary_state_blocks = whole.bnd_blocks.data() + nb1;
    p.boundary_state_offsets = bo2;
    ASSERT_TRUE(RunSsdChunkScanCpu(p).ok());

    // Compare y over the sequence and every state block except the scratch block.
    double num = 0, den = 0;
    for (int64_t t = whole.cu[0]; t < whole.cu[1]; ++t) {
      for (int64_t h = 0; h < c.H; ++h) {
        for (int64_t q = 0; q < c.P; ++q) {
          const int64_t i = t * p.y_token_stride + h * p.y_head_stride + q;
          const double a = LoadAsFloat(y.data(), c.dtype, i);
          const double b = LoadAsFloat(whole.y.data(), c.dtype, i);
          num += (a - b) * (a - b);
          den += b * b;
        }
      }
    }
    EXPECT_LT(std::sqrt(num / den), 1e-5);
    num = den = 0;
    for (int64_t i = 0; i < scratch * p.state_block_stride; ++i) {
      const double a = LoadAsFloat(pool_split.data(), c.state_dtype, i);
      const double b = LoadAsFloat(pool_whole.data(), c.state_dtype, i);
      num += (a - b) * (a - b);
      den += b * b;
    }
    EXPECT_LT(std::sqrt(num / den), 1e-5);
  }
}

// The CUDA path's automatic segment count (a host-side cost model; the GPU test checks the
// segmented results themselves). H = 80 heads of P = 64 on a 132-SM H100.
TEST(SsdChunkScan, AutoSegmentsOnlyWhenSmsWouldIdle) {
  constexpr int kSms = 132;
  // Enough sequences x heads for the GPU: never segmented, however long the sequences.
  EXPECT_EQ(SsdAutoSegments(8 * 80, 4096, kSms), 1);
  EXPECT_EQ(SsdAutoSegments(2 * kSms, 65536, kSms), 1);
  // Short sequences stay whole (segments are >= 256 tokens).
  EXPECT_EQ(SsdAutoSegments(80, 300, kSms), 1);
  // Degenerate inputs.
  EXPECT_EQ(SsdAutoSegments(0, 4096, kSms), 1);
  EXPECT_EQ(SsdAutoSegments(80, 4096, 0), 1);
  // One long sequence: 80 CTAs would leave 52 SMs idle, so from 4K tokens on it is cut, into
  // segments of at least 256 tokens, and into enough that at least the SMs are all busy.
  for (int64_t len : {4096, 16384, 65536}) {
    const int segs = SsdAutoSegments(80, len, kSms);
    EXPECT_GT(segs, 1) << len;
    EXPECT_GE(len / segs, 256 - 64) << len;
    EXPECT_GE(80 * segs, kSms) << len;
  }
}

TEST(SsdChunkScanCpu, RejectsBadParams) {
  Case c;
  c.seqlens = {10};
  Problem pr = ssd_test::MakeProblem(c);
  SsdChunkScanParams p = pr.p;
  p.chunk_size = 48;
  EXPECT_EQ(RunSsdChunkScan(p, Stream()).code(), absl::StatusCode::kInvalidArgument);
  p = pr.p;
  p.chunk_size = 8;
  EXPECT_EQ(RunSsdChunkScan(p, Stream()).code(), absl::StatusCode::kInvalidArgument);
  p = pr.p;
  p.block_size = 24;  // not a multiple of Q = 16
  EXPECT_EQ(RunSsdChunkScan(p, Stream()).code(), absl::StatusCode::kInvalidArgument);
  p = pr.p;
  p.num_heads = 3;  // not a multiple of G with the default mapping... G = 1 is fine; break G
  p.num_groups = 2;
  EXPECT_EQ(RunSsdChunkScan(p, Stream()).code(), absl::StatusCode::kInvalidArgument);
  p = pr.p;
  int32_t bad_block = static_cast<int32_t>(p.num_blocks);
  p.final_state_block = &bad_block;
  EXPECT_EQ(RunSsdChunkScan(p, Stream()).code(), absl::StatusCode::kInvalidArgument);
  p = pr.p;
  p.state_dtype = DType::kF16;
  EXPECT_EQ(RunSsdChunkScan(p, Stream()).code(), absl::StatusCode::kInvalidArgument);
  p = pr.p;
  int32_t cu_bad[2] = {0, static_cast<int32_t>(p.num_tokens + 1)};
  p.cu_seqlens = cu_bad;
  EXPECT_EQ(RunSsdChunkScan(p, Stream()).code(), absl::StatusCode::kInvalidArgument);
  p = pr.p;
  p.dt_min = -0.1f;  // a negative step would make decays grow
  EXPECT_EQ(RunSsdChunkScan(p, Stream()).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mambaserve
