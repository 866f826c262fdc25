#include "launcher/sampler.h"

#include <map>
#include <vector>

#include "gtest/gtest.h"

namespace mambaserve {
namespace {

TEST(Sampler, GreedyTakesTheMaximum) {
  std::vector<float> l{0.1f, 3.0f, -1.0f, 2.9f};
  Sampler s({});
  EXPECT_EQ(s.Sample(l.data(), 4), 1);
}

TEST(Sampler, SameSeedSameTokensAndTopKRestricts) {
  std::vector<float> l{1.0f, 1.1f, 0.9f, 1.05f, -5.0f};
  SamplingOptions o{1.0f, 2, 1.0f, 42};
  Sampler a(o), b(o);
  std::map<int, int> seen;
  for (int i = 0; i < 200; ++i) {
    const int x = a.Sample(l.data(), 5);
    EXPECT_EQ(x, b.Sample(l.data(), 5));
    ++seen[x];
  }
  // top_k = 2 keeps ids 1 and 3 only; both appear.
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_GT(seen[1], 0);
  EXPECT_GT(seen[3], 0);
}

TEST(Sampler, TopPKeepsTheNucleusAndFrequenciesFollowSoftmax) {
  // Probabilities at temperature 1: softmax(log([0.5, 0.3, 0.2])) = 0.5, 0.3, 0.2.
  std::vector<float> l{std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  Sampler nucleus({1.0f, 0, 0.7f, 7});
  std::map<int, int> seen;
  for (int i = 0; i < 4000; ++i) ++seen[nucleus.Sample(l.data(), 3)];
  EXPECT_EQ(seen.count(2), 0u);  // 0.5 + 0.3 >= 0.7: id 2 is outside the nucleus
  EXPECT_NEAR(seen[0] / 4000.0, 0.5 / 0.8, 0.04);
  Sampler full({1.0f, 0, 1.0f, 9});
  seen.clear();
  for (int i = 0; i < 4000; ++i) ++seen[full.Sample(l.data(), 3)];
  EXPECT_NEAR(seen[2] / 4000.0, 0.2, 0.03);  // ~4 sigma at n = 4000
}

TEST(Sampler, ValidationNamesTheField) {
  EXPECT_NE(ValidateSampling({-1.0f, 0, 1.0f, 0}).message().find("temperature"), std::string::npos);
  EXPECT_NE(ValidateSampling({1.0f, -2, 1.0f, 0}).message().find("top_k"), std::string::npos);
  EXPECT_NE(ValidateSampling({1.0f, 0, 0.0f, 0}).message().find("top_p"), std::string::npos);
  EXPECT_TRUE(ValidateSampling({0.7f, 40, 0.9f, 1}).ok());
}

}  // namespace
}  // namespace mambaserve
