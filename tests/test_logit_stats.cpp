// The CPU loss head's fused statistics against ATen's log_softmax in float64.

#include "nn/logit_stats.h"
#include "nn/cpu_kernels.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace {

struct Reference {
  at::Tensor logprob, entropy;  // float64 [rows]
};

Reference reference(const at::Tensor& z, const at::Tensor& targets) {
  const at::Tensor lp = z.to(at::kDouble).log_softmax(-1);
  const at::Tensor p = lp.exp();
  // 0 * log 0 = 0 where a logit is -inf.
  const at::Tensor plogp = at::where(p > 0, p * lp, at::zeros_like(p));
  return {lp.gather(1, targets.unsqueeze(1)).squeeze(1), -plogp.sum(-1)};
}

// Runs the stats over z [rows, V] fed in column chunks of `chunk`.
void run(const at::Tensor& z, const at::Tensor& targets, int64_t chunk, std::vector<float>& lp,
         std::vector<float>& ent) {
  const int64_t rows = z.size(0), V = z.size(1);
  air::nn::LogitRowStats st(rows, targets.data_ptr<int64_t>(), /*entropy=*/true);
  for (int64_t c0 = 0; c0 < V; c0 += chunk) {
    const at::Tensor part = z.narrow(1, c0, std::min(chunk, V - c0)).contiguous();
    st.add(part.data_ptr<float>(), c0, part.size(1));
  }
  lp.assign(rows, 0);
  ent.assign(rows, 0);
  st.finish(lp.data(), ent.data());
}

class LogitRowStats : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { air::nn::use_portable_kernels(GetParam()); }
  void TearDown() override { air::nn::use_portable_kernels(false); }
};

TEST_P(LogitRowStats, MatchesLogSoftmaxWhateverTheChunking) {
  at::manual_seed(3);
  const int64_t rows = 9, V = 10007;  // not a multiple of any vector width
  // Spread like real logits, one row peaked, one far from zero, one with masked entries.
  at::Tensor z = at::randn({rows, V}) * 4.0;
  z[1][17] = 60.0;
  z[2] += 1000.0;
  z[3].narrow(0, 100, 5000).fill_(-std::numeric_limits<float>::infinity());
  const at::Tensor targets = at::tensor(std::vector<int64_t>{0, 17, V - 1, 99, 4095, 4096, 8191, 5, 10000});
  const Reference ref = reference(z, targets);
  for (int64_t chunk : {int64_t{1} << 20, int64_t{4096}, int64_t{1000}, int64_t{37}, int64_t{8}}) {
    std::vector<float> lp, ent;
    run(z, targets, chunk, lp, ent);
    for (int64_t r = 0; r < rows; ++r) {
      EXPECT_NEAR(lp[r], ref.logprob[r].item<double>(), 2e-5 * (1 + std::abs(lp[r])))
          << "row " << r << " chunk " << chunk;
      EXPECT_NEAR(ent[r], ref.entropy[r].item<double>(), 2e-5 * (1 + ent[r]))
          << "row " << r << " chunk " << chunk;
    }
  }
}

TEST_P(LogitRowStats, NonFiniteLogitsGiveNaNNeverAFiniteValue) {
  at::Tensor z = at::randn({4, 300});
  z[0][7] = std::numeric_limits<float>::quiet_NaN();
  z[1][299] = std::numeric_limits<float>::infinity();
  z[2].fill_(-std::numeric_limits<float>::infinity());  // no mass at all
  const at::Tensor targets = at::tensor(std::vector<int64_t>{1, 2, 3, 4});
  for (int64_t chunk : {int64_t{300}, int64_t{64}}) {
    std::vector<float> lp, ent;
    run(z, targets, chunk, lp, ent);
    for (int r = 0; r < 3; ++r) {
      EXPECT_TRUE(std::isnan(lp[r])) << "row " << r;
      EXPECT_TRUE(std::isnan(ent[r])) << "row " << r;
    }
    EXPECT_TRUE(std::isfinite(lp[3]));
    EXPECT_TRUE(std::isfinite(ent[3]));
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, LogitRowStats, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "portable" : "cpu_specific"; });

}  // namespace
