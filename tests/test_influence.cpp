// AIR-METHOD.md §4 formulas on hand-made losses.

#include "air/influence.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace air {
namespace {

TEST(InfluenceTest, RelativeAndAbsoluteWithEpsGuard) {
  InfluenceOptions rel;
  EXPECT_DOUBLE_EQ(influence(2.0, 3.0, rel), (3.0 - 2.0) / 2.0);
  EXPECT_DOUBLE_EQ(influence(2.0, 1.0, rel), -0.5);
  // A zero (or tiny) base loss divides by eps, not by zero.
  EXPECT_DOUBLE_EQ(influence(0.0, 1e-3, rel), 1e-3 / rel.eps);
  EXPECT_DOUBLE_EQ(influence(1e-9, 1e-9, rel), 0.0);
  InfluenceOptions abs;
  abs.mode = ScoreMode::kAbsolute;
  EXPECT_DOUBLE_EQ(influence(2.0, 3.5, abs), 1.5);
}

TEST(InfluenceTest, StepWeightsHaveMeanOneAndAreClipped) {
  InfluenceOptions o;
  const std::vector<double> scores = {0.1, 0.3, -0.2, 0.2};
  const auto w = step_weights(scores, o);
  // a = max(s, 0) + eps; w = a / mean(a)
  std::vector<double> a = {0.1 + o.eps, 0.3 + o.eps, o.eps, 0.2 + o.eps};
  const double mean = std::accumulate(a.begin(), a.end(), 0.0) / 4;
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(w[i], std::clamp(a[i] / mean, 0.25, 4.0), 1e-12);
  EXPECT_DOUBLE_EQ(w[2], 0.25);  // a negative step sits at the lower clip

  // Unclipped weights average to 1.
  const auto v = step_weights({0.2, 0.3, 0.25}, o);
  EXPECT_NEAR((v[0] + v[1] + v[2]) / 3, 1.0, 1e-12);
  // No positive step: all equal (eps each), weight 1.
  for (double x : step_weights({-1.0, -0.5}, o)) EXPECT_DOUBLE_EQ(x, 1.0);
  // One dominant step hits the upper clip.
  const auto big = step_weights({10.0, 0.0, 0.0, 0.0, 0.0}, o);
  EXPECT_DOUBLE_EQ(big[0], 4.0);
  EXPECT_TRUE(step_weights({}, o).empty());
}

TEST(InfluenceTest, AggregateMeansOverResponseAndSteps) {
  const std::vector<float> lb = {1.0f, 2.0f, 3.0f, 0.5f, 0.5f};
  const std::vector<float> lr = {1.5f, 2.0f, 4.0f, 0.5f, 1.5f};
  const std::vector<float> ent = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f};
  const std::vector<Step> steps = {{0, 10, 0, 3}, {10, 20, 3, 5}};
  InfluenceOptions o;
  const SampleInfluence s = aggregate(lb.data(), lr.data(), ent.data(), 5, steps, o);
  const double mb = (1 + 2 + 3 + 0.5 + 0.5) / 5.0, mr = (1.5 + 2 + 4 + 0.5 + 1.5) / 5.0;
  EXPECT_NEAR(s.loss_base, mb, 1e-6);
  EXPECT_NEAR(s.loss_ref, mr, 1e-6);
  EXPECT_NEAR(s.score, (mr - mb) / mb, 1e-6);
  EXPECT_NEAR(s.entropy, 0.3, 1e-6);
  EXPECT_EQ(s.tokens, 5);
  ASSERT_EQ(s.steps.size(), 2u);
  EXPECT_NEAR(s.steps[0].loss_base, 2.0, 1e-6);
  EXPECT_NEAR(s.steps[0].loss_ref, 7.5 / 3, 1e-6);
  EXPECT_NEAR(s.steps[0].score, (7.5 / 3 - 2.0) / 2.0, 1e-6);
  EXPECT_NEAR(s.steps[1].score, (1.0 - 0.5) / 0.5, 1e-6);
  // The step with the larger influence gets the larger weight.
  EXPECT_GT(s.steps[1].weight, s.steps[0].weight);

  // Zero base losses: finite scores through the eps guard.
  const std::vector<float> z = {0.0f, 0.0f};
  const std::vector<float> r = {0.0f, 1e-4f};
  const SampleInfluence g = aggregate(z.data(), r.data(), nullptr, 2, {{0, 1, 0, 2}}, o);
  EXPECT_TRUE(std::isfinite(g.score));
  EXPECT_NEAR(g.score, 0.5e-4 / o.eps, 1e-3);
}

}  // namespace
}  // namespace air
