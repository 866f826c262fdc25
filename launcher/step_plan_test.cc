#include "launcher/step_plan.h"

#include "gtest/gtest.h"

namespace mambaserve {
namespace {

TEST(StepPlan, RoundTrips) {
  StepPlanMessage m;
  BlockCopy c;
  c.block_ids = {3, 4, 5};
  c.cur = 1;
  c.num_accepted = 2;
  c.dst = 7;
  m.copies.push_back(c);
  m.zero_blocks = {9};
  m.input.token_ids = {5, 6, 7, 8};
  m.input.seq_lens = {1, 3};
  m.input.num_decode = 1;
  m.input.initial_blocks = {2, 0};
  m.input.final_blocks = {2, 6};
  m.input.all_logits = true;
  m.input.boundary_block_size = 32;
  m.input.prefix_offsets = {0, 64};
  m.input.boundary_blocks = {{}, {8, 0}};
  auto back = ParseStepPlan(SerializeStepPlan(m));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->kind, StepPlanMessage::kStep);
  ASSERT_EQ(back->copies.size(), 1u);
  EXPECT_EQ(back->copies[0].block_ids, c.block_ids);
  EXPECT_EQ(back->copies[0].cur, 1);
  EXPECT_EQ(back->copies[0].num_accepted, 2);
  EXPECT_EQ(back->copies[0].dst, 7);
  EXPECT_EQ(back->zero_blocks, m.zero_blocks);
  EXPECT_EQ(back->input.token_ids, m.input.token_ids);
  EXPECT_EQ(back->input.seq_lens, m.input.seq_lens);
  EXPECT_EQ(back->input.num_decode, 1);
  EXPECT_EQ(back->input.final_blocks, m.input.final_blocks);
  EXPECT_TRUE(back->input.all_logits);
  EXPECT_EQ(back->input.boundary_block_size, 32);
  EXPECT_EQ(back->input.prefix_offsets, m.input.prefix_offsets);
  EXPECT_EQ(back->input.boundary_blocks, m.input.boundary_blocks);
}

TEST(StepPlan, RefusesCorruptData) {
  StepPlanMessage m;
  m.input.token_ids = {1, 2};
  auto data = SerializeStepPlan(m);
  data.pop_back();
  EXPECT_FALSE(ParseStepPlan(data).ok());
  data = SerializeStepPlan(m);
  data[0] = 77;
  EXPECT_FALSE(ParseStepPlan(data).ok());
  data = SerializeStepPlan(m);
  data.push_back(0);
  EXPECT_FALSE(ParseStepPlan(data).ok());
}

}  // namespace
}  // namespace mambaserve
