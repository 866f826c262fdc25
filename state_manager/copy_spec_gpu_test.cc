// The batched CUDA copy kernel against the CPU copy, on random specs in SD and DS layouts and
// on raw strided specs with every alignment. Skips without a GPU.
#include <cstring>

#include "core/random.h"
#include "gtest/gtest.h"
#include "state_manager/copy_spec.h"

namespace mambaserve {
namespace {

void FillRandom(StatePool& pool, Rng& rng) {
  for (int64_t b = 1; b < pool.num_blocks(); ++b) {
    for (int64_t l = 0; l < pool.num_layers(); ++l) {
      BlockState::LayerValues v;
      for (const auto& s : pool.shapes()) v.push_back(rng.UniformVector(s.numel(), -3, 3));
      ASSERT_TRUE(pool.WriteBlock(l, b, v).ok());
    }
  }
}

TEST(CopySpecGpu, BatchedKernelEqualsCpu) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA GPU visible: batched copy kernel not tested";
  for (ConvLayout layout : {ConvLayout::kSD, ConvLayout::kDS}) {
    for (DType conv_dtype : {DType::kF32, DType::kBF16}) {
      Mamba2StateArgs a;
      a.num_heads = 8;
      a.head_dim = 16;
      a.n_groups = 2;
      a.d_state = 16;
      a.d_conv = 4;
      a.num_spec = 3;
      auto shapes = *Mamba2StateShapes(a, layout, StateDTypes{conv_dtype, DType::kF32});
      StatePoolConfig cpu_c{4, shapes, layout, Device::Cpu()};
      StatePoolConfig gpu_c{4, shapes, layout, Device::Cuda(0)};
      const int64_t n = 64;
      auto cpu = *StatePool::Create(cpu_c, n);
      auto gpu_or = StatePool::Create(gpu_c, n);
      ASSERT_TRUE(gpu_or.ok()) << gpu_or.status();
      auto gpu = std::move(*gpu_or);
      Rng rng(42 + static_cast<int>(layout) * 2 + (conv_dtype == DType::kBF16));
      FillRandom(cpu, rng);
      // Same contents on the GPU.
      for (int64_t b = 1; b < n; ++b) {
        auto st = cpu.ReadBlockState(b);
        ASSERT_TRUE(st.ok());
        ASSERT_TRUE(gpu.WriteBlockState(b, *st).ok());
      }
      // Random copies: sources from blocks [1, 32), distinct destinations from [32, 64).
      std::vector<BlockCopy> copies;
      for (BlockId dst = 32; dst < 64; dst += 1 + static_cast<BlockId>(rng.Int(0, 1))) {
        BlockCopy c;
        const int64_t k = rng.Int(1, 1 + a.num_spec);
        c.cur = rng.Int(0, 2);
        for (int64_t i = 0; i < c.cur + k; ++i)
          c.block_ids.push_back(static_cast<BlockId>(rng.Int(1, 31)));
        c.num_accepted = k;
        c.dst = dst;
        copies.push_back(c);
      }
      auto cpu_specs = *BuildStepCopySpecs(cpu, copies);
      auto gpu_specs = *BuildStepCopySpecs(gpu, copies);
      ASSERT_EQ(cpu_specs.size(), gpu_specs.size());
      auto cpu_exec = *CopyExecutor::Create(Device::Cpu());
      auto gpu_exec = *CopyExecutor::Create(Device::Cuda(0));
      auto stream = *Stream::Create(Device::Cuda(0));
      ASSERT_TRUE(cpu_exec.Run(cpu_specs, Stream()).ok());
      ASSERT_TRUE(gpu_exec.Run(gpu_specs, stream).ok());
      ASSERT_TRUE(stream.Synchronize().ok());
      EXPECT_EQ(gpu_exec.num_launches(), 1);  // one launch for the whole step
      for (int64_t b = 0; b < n; ++b) {
        auto x = *cpu.ReadBlockState(b);
        auto y = *gpu.ReadBlockState(b);
        for (int64_t l = 0; l < 4; ++l) {
          ASSERT_EQ(**x.GetLayer(l), **y.GetLayer(l)) << "block " << b << " layer " << l;
        }
      }
    }
  }
}

TEST(CopySpecGpu, RawStridedSpecsAllAlignments) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA GPU visible: batched copy kernel not tested";
  const int64_t kBytes = 1 << 22;
  auto dev = *Buffer::Allocate(Device::Cuda(0), kBytes);
  std::vector<uint8_t> host(kBytes);
  Rng rng(5);
  for (auto& b : host) b = static_cast<uint8_t>(rng.Int(0, 255));
  ASSERT_TRUE(CopyBytes(dev.data(), Device::Cuda(0), host.data(), Device::Cpu(), kBytes).ok());
  // Sources in the first half, destinations packed in the second half.
  std::vector<CopySpec> h_specs, d_specs;
  int64_t dst_off = kBytes / 2;
  while (true) {
    CopySpec s;
    const int es_choice[] = {1, 2, 4, 8};
    s.elem_bytes = es_choice[rng.Int(0, 3)];
    s.num_rows = rng.Int(1, 40);
    s.row_elems = rng.Int(1, 300);
    s.src_row_stride = s.row_elems + rng.Int(0, 20);
    s.dst_row_stride = s.row_elems + rng.Int(0, 20);
    const int64_t src_off = rng.Int(0, 1000) * s.elem_bytes;
    const int64_t dst_span = ((s.num_rows - 1) * s.dst_row_stride + s.row_elems) * s.elem_bytes;
    const int64_t aligned_dst =
        (dst_off + s.elem_bytes - 1) / s.elem_bytes * s.elem_bytes + rng.Int(0, 3) * s.elem_bytes;
    if (aligned_dst + dst_span > kBytes) break;
    if (src_off + ((s.num_rows - 1) * s.src_row_stride + s.row_elems) * s.elem_bytes > kBytes / 2) {
      continue;
    }
    CopySpec hs = s, ds = s;
    hs.src = reinterpret_cast<uint64_t>(host.data() + src_off);
    hs.dst = reinterpret_cast<uint64_t>(host.data() + aligned_dst);
    ds.src = reinterpret_cast<uint64_t>(static_cast<char*>(dev.data()) + src_off);
    ds.dst = reinterpret_cast<uint64_t>(static_cast<char*>(dev.data()) + aligned_dst);
    h_specs.push_back(hs);
    d_specs.push_back(ds);
    dst_off = aligned_dst + dst_span;
  }
  ASSERT_GT(h_specs.size(), 50u);
  auto stream = *Stream::Create(Device::Cuda(0));
  auto exec = *CopyExecutor::Create(Device::Cuda(0));
  ASSERT_TRUE(ExecuteCopySpecsCpu(*ValidateCopyBatch(h_specs)).ok());
  ASSERT_TRUE(exec.Run(d_specs, stream).ok());
  ASSERT_TRUE(stream.Synchronize().ok());
  std::vector<uint8_t> back(kBytes);
  ASSERT_TRUE(CopyBytes(back.data(), Device::Cpu(), dev.data(), Device::Cuda(0), kBytes).ok());
  EXPECT_EQ(std::memcmp(back.data(), host.data(), kBytes), 0);
}

}  // namespace
}  // namespace mambaserve
