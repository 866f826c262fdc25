#include "core/buffer.h"

#include <cstdint>
#include <cstring>

#include "core/stream.h"
#include "gtest/gtest.h"

namespace mambaserve {
namespace {

TEST(Buffer, CpuAllocationIsAlignedAndMovable) {
  auto b = Buffer::Allocate(Device::Cpu(), 1000);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b->data()) % 64, 0u);
  EXPECT_EQ(b->nbytes(), 1000);
  Buffer moved = std::move(*b);
  EXPECT_NE(moved.data(), nullptr);
  EXPECT_EQ(b->data(), nullptr);
}

TEST(Buffer, RefusesNegativeSize) { EXPECT_FALSE(Buffer::Allocate(Device::Cpu(), -1).ok()); }

TEST(Buffer, ForTensorAndCopyZero) {
  TensorView v;
  auto b = Buffer::ForTensor(Device::Cpu(), DType::kF32, {4, 5}, &v);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(v.numel(), 20);
  float src[20];
  for (int i = 0; i < 20; ++i) src[i] = 0.5f * i + 1;
  ASSERT_TRUE(CopyBytes(v.data(), Device::Cpu(), src, Device::Cpu(), sizeof(src)).ok());
  EXPECT_EQ(v.data_as<float>()[19], src[19]);
  ASSERT_TRUE(ZeroBytes(v.data(), Device::Cpu(), 8).ok());
  EXPECT_EQ(v.data_as<float>()[1], 0.0f);
  EXPECT_EQ(v.data_as<float>()[2], src[2]);
}

TEST(Buffer, FreeMemoryIsAGpuQuery) {
  EXPECT_EQ(DeviceFreeMemory(Device::Cpu()).status().code(), absl::StatusCode::kFailedPrecondition);
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device; the GPU half runs on the GPU machine";
  auto before = DeviceFreeMemory(Device::Cuda(0));
  ASSERT_TRUE(before.ok()) << before.status();
  auto b = Buffer::Allocate(Device::Cuda(0), int64_t{256} << 20);
  ASSERT_TRUE(b.ok());
  auto after = DeviceFreeMemory(Device::Cuda(0));
  ASSERT_TRUE(after.ok());
  EXPECT_GE(*before - *after, int64_t{255} << 20);
}

TEST(Buffer, CudaRoundTripWhenAvailable) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device on this machine; runs on the GPU machine";
  auto s = Stream::Create(Device::Cuda(0));
  ASSERT_TRUE(s.ok()) << s.status();
  auto g = Buffer::Allocate(Device::Cuda(0), 64);
  ASSERT_TRUE(g.ok()) << g.status();
  int32_t in[16], out[16];
  for (int i = 0; i < 16; ++i) in[i] = i * 7 - 3;
  ASSERT_TRUE(CopyBytes(g->data(), g->device(), in, Device::Cpu(), 64).ok());
  ASSERT_TRUE(CopyBytes(out, Device::Cpu(), g->data(), g->device(), 64).ok());
  EXPECT_EQ(std::memcmp(in, out, 64), 0);
}

}  // namespace
}  // namespace mambaserve
