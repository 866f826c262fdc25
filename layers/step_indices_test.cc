// The step's index layout (layers/step_indices.h) and the scratch workspace (step_context.h):
// the offsets address the right values in the single uploaded array, decode-only steps skip
// the row gather, kernel-written boundaries list their blocks and conv-window rows, and a
// frozen workspace refuses to grow while reusing what it has.
#include "layers/step_indices.h"

#include <vector>

#include "gtest/gtest.h"
#include "layers/mamba_model.h"
#include "layers/step_context.h"

namespace mambaserve {
namespace {

TEST(StepIndices, DecodesThenPrefills) {
  ForwardInput in;
  in.token_ids = {7, 8, 1, 2, 3, 4, 5};
  in.seq_lens = {1, 1, 3, 2};
  in.num_decode = 2;
  in.initial_blocks = {4, 5, 0, 6};
  in.final_blocks = {4, 5, 2, 3};
  const StepIndices si = BuildStepIndices(in, /*d_conv=*/4);
  const StepBatch b = si.Bind(si.data.data());
  EXPECT_EQ(b.num_tokens, 7);
  EXPECT_EQ(b.num_decode, 2);
  EXPECT_EQ(b.num_prefill, 2);
  EXPECT_EQ(std::vector<int32_t>(b.token_ids, b.token_ids + 7), in.token_ids);
  EXPECT_EQ(std::vector<int32_t>(b.decode_blocks, b.decode_blocks + 2),
            (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(std::vector<int32_t>(b.prefill_cu_seqlens, b.prefill_cu_seqlens + 3),
            (std::vector<int32_t>{0, 3, 5}));
  EXPECT_EQ(std::vector<int32_t>(b.prefill_initial_blocks, b.prefill_initial_blocks + 2),
            (std::vector<int32_t>{0, 6}));
  EXPECT_EQ(std::vector<int32_t>(b.prefill_final_blocks, b.prefill_final_blocks + 2),
            (std::vector<int32_t>{2, 3}));
  // Last token of each sequence: rows 0, 1, 4, 6.
  EXPECT_TRUE(si.select_rows);
  EXPECT_EQ(si.logit_rows, 4);
  EXPECT_EQ(std::vector<int32_t>(si.data.begin() + si.off_rows, si.data.begin() + si.off_rows + 4),
            (std::vector<int32_t>{0, 1, 4, 6}));
  EXPECT_EQ(b.boundary_block_size, 0);
  EXPECT_TRUE(b.boundary_windows.empty());
}

TEST(StepIndices, DecodeOnlyAndAllLogitsNeedNoGather) {
  ForwardInput d;
  d.token_ids = {1, 2, 3};
  d.seq_lens = {1, 1, 1};
  d.num_decode = 3;
  d.initial_blocks = d.final_blocks = {1, 2, 3};
  StepIndices si = BuildStepIndices(d, 4);
  EXPECT_FALSE(si.select_rows);
  EXPECT_EQ(si.logit_rows, 3);
  ForwardInput p;
  p.token_ids = {1, 2, 3};
  p.seq_lens = {3};
  p.initial_blocks = {0};
  p.final_blocks = {1};
  p.all_logits = true;
  si = BuildStepIndices(p, 4);
  EXPECT_FALSE(si.select_rows);
  EXPECT_EQ(si.logit_rows, 3);
}

// One prefill chunk at absolute positions 6..21 with blocks of 8: boundaries at 8 and 16. The
// conv window (W-1 = 3 rows) at 8 is positions 5, 6, 7: 5 from the initial state's window, 6
// and 7 from the step's rows; at 16 it is rows of positions 13..15.
TEST(StepIndices, KernelWrittenBoundaries) {
  ForwardInput in;
  for (int i = 0; i < 16; ++i) in.token_ids.push_back(i);
  in.seq_lens = {16};
  in.initial_blocks = {3};
  in.final_blocks = {3};
  in.boundary_block_size = 8;
  in.prefix_offsets = {6};
  in.boundary_blocks = {{5, 6}};
  const StepIndices si = BuildStepIndices(in, /*d_conv=*/4);
  const StepBatch b = si.Bind(si.data.data());
  EXPECT_EQ(b.boundary_block_size, 8);
  EXPECT_EQ(b.prefix_offsets32[0], 6);
  EXPECT_EQ(b.prefix_offsets64[0], 6);
  EXPECT_EQ(b.ssd_boundary_offsets[0], 0);
  EXPECT_EQ(b.ssd_boundary_offsets[1], 2);
  EXPECT_EQ(b.ssd_boundary_blocks[0], 5);
  EXPECT_EQ(b.ssd_boundary_blocks[1], 6);
  // The selective scan's table also counts the boundary at the chunk's end (22 / 8 - 6 / 8 = 2
  // boundaries: 8 and 16; the chunk ends at 22, not on a boundary).
  EXPECT_EQ(b.m1_boundary_stride, 2);
  ASSERT_EQ(b.boundary_windows.size(), 2u);
  const auto& w0 = b.boundary_windows[0];
  EXPECT_EQ(w0.dst_block, 5);
  EXPECT_EQ(w0.init_block, 3);
  ASSERT_EQ(w0.rows_from_init, 1);
  EXPECT_EQ(w0.init_rows[0], 2);  // position 5 = the newest row of the initial window
  ASSERT_EQ(w0.rows_from_x, 2);
  EXPECT_EQ(w0.x_rows[0], 0);  // positions 6, 7 = the step's rows 0, 1
  EXPECT_EQ(w0.x_rows[1], 1);
  const auto& w1 = b.boundary_windows[1];
  EXPECT_EQ(w1.dst_block, 6);
  EXPECT_EQ(w1.rows_from_init, 0);
  ASSERT_EQ(w1.rows_from_x, 3);
  EXPECT_EQ(w1.x_rows[0], 7);  // positions 13..15
  EXPECT_EQ(w1.x_rows[2], 9);
}

TEST(Workspace, GrowsReusesAndRefusesToGrowWhenFrozen) {
  Workspace ws(Device::Cpu());
  auto a = ws.Get(2, 100);
  ASSERT_TRUE(a.ok());
  auto again = ws.Get(2, 60);  // smaller: same buffer
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*a, *again);
  ws.set_frozen(true);
  EXPECT_TRUE(ws.Get(2, 100).ok());
  auto grow = ws.Get(2, 1000);
  EXPECT_EQ(grow.status().code(), absl::StatusCode::kFailedPrecondition) << grow.status();
  EXPECT_EQ(ws.Get(5, 8).status().code(), absl::StatusCode::kFailedPrecondition);
  ws.set_frozen(false);
  EXPECT_TRUE(ws.Get(2, 1000).ok());
}

}  // namespace
}  // namespace mambaserve
