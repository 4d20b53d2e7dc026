// The fused bf16 CPU kernels against the ATen ops they replace (HF's eager order of operations):
// the attention softmax with its causal / windowed mask, RMSNorm in its three variants, the
// MLP's silu(gate) * up, and the loss head's statistics read from bf16 logits.

#include "nn/cpu_kernels.h"
#include "nn/logit_stats.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace {

class CpuKernels : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { air::nn::use_portable_kernels(GetParam()); }
  void TearDown() override { air::nn::use_portable_kernels(false); }
};

// Visible keys of the rows (rep, query) of a block: [R, e] bool.
at::Tensor visible(int64_t R, int64_t c, int64_t q0, int64_t e, int64_t window) {
  const at::Tensor q = at::arange(q0, q0 + c).unsqueeze(1), k = at::arange(0, e).unsqueeze(0);
  at::Tensor vis = k <= q;
  if (window > 0) vis = vis & (q - k < window);
  return vis.repeat({R / c, 1});
}

// HF eager: bf16(scores * scale) + mask (-inf where not visible), softmax in float32, cast to bf16.
// The product in float32 with the scale as a float, as libtorch 2.x computes a bf16 tensor times
// a Python float (1.13 rounds the scale to bf16 first).
at::Tensor softmax_reference(const at::Tensor& raw, int64_t c, int64_t q0, int64_t window, double scale) {
  const at::Tensor vis = visible(raw.size(1), c, q0, raw.size(2), window);
  const at::Tensor scaled = (raw.to(at::kFloat) * scale).to(at::kBFloat16);
  const at::Tensor z = scaled.to(at::kFloat).masked_fill(vis.logical_not(), -INFINITY);
  return z.softmax(-1).to(at::kBFloat16);
}

// |a - b| in units of b's bf16 spacing (2^-7 relative for normal values).
double ulps(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor af = a.to(at::kDouble), bf = b.to(at::kDouble);
  const at::Tensor spacing = at::exp2(at::floor(at::log2(bf.abs().clamp_min(1e-30))) - 7);
  return ((af - bf).abs() / spacing).max().item<double>();
}

TEST_P(CpuKernels, SoftmaxMatchesMaskedFloatSoftmaxWithinOneBf16Step) {
  at::manual_seed(11);
  struct Case {
    int64_t G, rep, c, q0, window;
  };
  // Key counts off every vector width, a block at the start and one further in, a window
  // shorter than the block, long rows.
  // A head_dim-128 scale (not a power of two: bf16(score * scale) rounds), and spreads of the
  // scores from ordinary to peaked (a row spanning more than exp's range).
  const double scale = 1.0 / std::sqrt(128.0);
  for (const Case k : {Case{3, 2, 5, 0, 0}, Case{2, 4, 13, 7, 0}, Case{1, 1, 40, 61, 9}, Case{2, 3, 17, 500, 0},
                       Case{1, 2, 1, 0, 0}, Case{1, 1, 64, 1000, 300}}) {
    for (double spread : {40.0, 600.0}) {
    const int64_t e = k.q0 + k.c;
    at::Tensor raw = (at::randn({k.G, k.rep * k.c, e}) * spread).to(at::kBFloat16);
    const at::Tensor want = softmax_reference(raw, k.c, k.q0, k.window, scale);
    at::Tensor got = raw.clone();
    air::nn::causal_softmax_bf16_(got, k.c, k.q0, k.window, scale);
    const std::string what = "G " + std::to_string(k.G) + " c " + std::to_string(k.c) + " q0 " +
                             std::to_string(k.q0) + " window " + std::to_string(k.window) + " spread " +
                             std::to_string(spread);
    // Not visible: exactly 0. Visible: within one bf16 step (the exponentials differ in their
    // last float bits, which a rounding can turn into one step); below 1e-30 (exp(-69)) ATen
    // may keep a value the kernel's floor at exp(-87) makes 0, or the reverse.
    const at::Tensor vis = visible(k.rep * k.c, k.c, k.q0, e, k.window).expand_as(got);
    EXPECT_TRUE(got.masked_select(vis.logical_not()).eq(0).all().item<bool>()) << what;
    const at::Tensor big = vis & (want.to(at::kFloat) >= 1e-30);
    EXPECT_LE(ulps(got.masked_select(big), want.masked_select(big)), 1.0) << what;
    EXPECT_TRUE(got.masked_select(vis & big.logical_not()).to(at::kFloat).lt(1e-30).all().item<bool>()) << what;
    // Most values round identically; every row sums to 1 within bf16 rounding.
    EXPECT_GT(got.masked_select(big).eq(want.masked_select(big)).to(at::kFloat).mean().item<double>(), 0.97) << what;
    const at::Tensor sums = got.to(at::kFloat).sum(-1);
    EXPECT_LT((sums - 1).abs().max().item<double>(), 0.02) << what;
    }
  }
}

TEST_P(CpuKernels, SoftmaxRowWithNonFiniteVisibleScoreIsNaN) {
  at::Tensor raw = at::randn({1, 4, 20}).to(at::kBFloat16);  // c = 4 queries at 16..19
  raw[0][0][3] = std::numeric_limits<float>::quiet_NaN();     // visible to query 16
  raw[0][1][9] = std::numeric_limits<float>::infinity();      // visible to query 17
  raw[0][2][19] = std::numeric_limits<float>::quiet_NaN();    // the future of query 18: not read
  raw[0][3][4] = -std::numeric_limits<float>::infinity();     // visible to query 19: weight 0
  at::Tensor all_neg = at::full({1, 1, 9}, -INFINITY, at::kBFloat16);  // no finite score at all
  air::nn::causal_softmax_bf16_(raw, 4, 16, 0, 1.0);
  air::nn::causal_softmax_bf16_(all_neg, 1, 8, 0, 1.0);
  EXPECT_TRUE(at::isnan(raw[0][0].narrow(0, 0, 17)).all().item<bool>());
  EXPECT_TRUE(at::isnan(raw[0][1].narrow(0, 0, 18)).all().item<bool>());
  EXPECT_TRUE(at::isfinite(raw[0][2]).all().item<bool>());
  EXPECT_EQ(raw[0][2][19].item<float>(), 0.0f);
  EXPECT_TRUE(at::isfinite(raw[0][3]).all().item<bool>());
  EXPECT_EQ(raw[0][3][4].item<float>(), 0.0f);
  EXPECT_NEAR(raw[0][3].to(at::kFloat).sum().item<double>(), 1.0, 0.02);
  EXPECT_TRUE(at::isnan(all_neg).all().item<bool>());
}

TEST_P(CpuKernels, SoftmaxRefusesWhatItCannotIndex) {
  at::Tensor f = at::randn({1, 4, 8});
  EXPECT_THROW(air::nn::causal_softmax_bf16_(f, 4, 4, 0, 1.0), std::exception);  // float32
  at::Tensor b = f.to(at::kBFloat16);
  EXPECT_THROW(air::nn::causal_softmax_bf16_(b, 3, 4, 0, 1.0), std::exception);  // 4 rows, blocks of 3
  EXPECT_THROW(air::nn::causal_softmax_bf16_(b, 4, 5, 0, 1.0), std::exception);  // queries past the keys
}

// RMSNormImpl's ATen order of operations.
at::Tensor rms_reference(const at::Tensor& x, const at::Tensor& w, double eps, bool in_float, bool unit_offset) {
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor y = xf * xf.square().mean(-1, true).add_(eps).rsqrt_();
  if (unit_offset) return (y * (w.to(at::kFloat) + 1.0)).to(at::kBFloat16);
  if (in_float) return (y * w.to(at::kFloat)).to(at::kBFloat16);
  return y.to(at::kBFloat16) * w;
}

TEST_P(CpuKernels, RmsNormMatchesAtenInEveryVariant) {
  at::manual_seed(5);
  for (int64_t D : {64, 37, 896, 8}) {
    const at::Tensor x = (at::randn({11, D}) * 3.0).to(at::kBFloat16);
    for (at::ScalarType wt : {at::kBFloat16, at::kFloat}) {
      const at::Tensor w = (at::randn({D}) * 0.5 + 1.0).to(wt);
      for (int variant = 0; variant < 3; ++variant) {
        const bool in_float = variant == 1, unit = variant == 2;
        const at::Tensor want = rms_reference(x, w, 1e-6, in_float, unit).to(at::kBFloat16);
        const at::Tensor got = air::nn::rms_norm_bf16(x, w, 1e-6, in_float, unit);
        ASSERT_EQ(got.sizes(), x.sizes());
        ASSERT_EQ(got.scalar_type(), at::kBFloat16);
        const std::string what = "D " + std::to_string(D) + " variant " + std::to_string(variant);
        // The sum of squares is accumulated in another order, so the scale can differ in its
        // last float bit: at most one bf16 step, and rarely.
        EXPECT_LE(ulps(got, want), 1.0) << what;
        EXPECT_GT(got.eq(want).to(at::kFloat).mean().item<double>(), 0.98) << what;
      }
    }
  }
  // Rows of any leading shape (Qwen3's per-head norms: [N, heads, head_dim]).
  const at::Tensor x3 = at::randn({5, 3, 16}).to(at::kBFloat16);
  const at::Tensor w3 = at::ones({16}).to(at::kBFloat16);
  EXPECT_LE(ulps(air::nn::rms_norm_bf16(x3, w3, 1e-6, false, false), rms_reference(x3, w3, 1e-6, false, false)), 1.0);
}

TEST_P(CpuKernels, SiluTimesUpMatchesAtenWithItsTwoRoundings) {
  at::manual_seed(8);
  for (int64_t n : {4864, 37, 7}) {
    at::Tensor g = (at::randn({3, n}) * 6.0).to(at::kBFloat16);
    g[0][0] = 95.0;  // far out on both sides: no overflow
    g[0][1] = -95.0;
    g[1][2] = std::numeric_limits<float>::quiet_NaN();
    const at::Tensor u = at::randn({3, n}).to(at::kBFloat16);
    // silu in float32 rounded to bf16 (libtorch 2.x's bf16 silu; 1.13 rounds inside it too),
    // then the bf16 product.
    const at::Tensor want = at::silu(g.to(at::kFloat)).to(at::kBFloat16) * u;
    at::Tensor got = g.clone();
    air::nn::silu_mul_bf16_(got, u);
    EXPECT_TRUE(std::isnan(got[1][2].item<float>()));
    const at::Tensor ok = at::isfinite(want) & want.ne(0);
    EXPECT_LE(ulps(got.masked_select(ok), want.masked_select(ok)), 1.0) << n;
    EXPECT_GT(got.masked_select(ok).eq(want.masked_select(ok)).to(at::kFloat).mean().item<double>(), 0.98) << n;
    EXPECT_EQ(got[0][0].item<float>(), want[0][0].item<float>());
    EXPECT_EQ(got[0][1].item<float>(), 0.0f);  // silu(-95) = -0, as ATen's -95 / inf
    EXPECT_EQ(want[0][1].item<float>(), 0.0f);
  }
  at::Tensor g = at::zeros({4, 8}, at::kBFloat16);
  EXPECT_THROW(air::nn::silu_mul_bf16_(g, at::zeros({4, 9}, at::kBFloat16)), std::exception);
}

TEST_P(CpuKernels, ResultsDoNotDependOnTheNumberOfThreads) {
  at::manual_seed(4);
  const at::Tensor g = (at::randn({5, 4861}) * 4.0).to(at::kBFloat16), u = at::randn({5, 4861}).to(at::kBFloat16);
  const at::Tensor x = at::randn({37, 131}).to(at::kBFloat16), w = at::randn({131}).to(at::kBFloat16);
  const at::Tensor raw = (at::randn({3, 2 * 33, 90}) * 30.0).to(at::kBFloat16);
  const int threads = at::get_num_threads();
  std::vector<at::Tensor> runs[2];
  for (int t : {1, 3}) {
    at::set_num_threads(t);
    at::Tensor a = g.clone(), p = raw.clone();
    air::nn::silu_mul_bf16_(a, u);
    air::nn::causal_softmax_bf16_(p, 33, 57, 0, 0.125);
    runs[t == 1 ? 0 : 1] = {a, air::nn::rms_norm_bf16(x, w, 1e-5, false, false), p};
  }
  at::set_num_threads(threads);
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(runs[0][i].equal(runs[1][i])) << i;
}

TEST_P(CpuKernels, RowStatsFromBf16LogitsEqualThoseFromTheirFloatValues) {
  at::manual_seed(9);
  const int64_t rows = 6, V = 5003;
  const at::Tensor z = (at::randn({rows, V}) * 5.0).to(at::kBFloat16);
  const at::Tensor zf = z.to(at::kFloat);
  const at::Tensor targets = at::tensor(std::vector<int64_t>{0, 1, 4095, 4096, 5002, 77});
  std::vector<float> lp_a(rows), ent_a(rows), lp_b(rows), ent_b(rows);
  air::nn::LogitRowStats a(rows, targets.data_ptr<int64_t>(), true), b(rows, targets.data_ptr<int64_t>(), true);
  for (int64_t c0 = 0; c0 < V; c0 += 1000) {
    const int64_t n = std::min<int64_t>(1000, V - c0);
    const at::Tensor part = z.narrow(1, c0, n).contiguous(), partf = zf.narrow(1, c0, n).contiguous();
    a.add_bf16(reinterpret_cast<const uint16_t*>(part.data_ptr<at::BFloat16>()), c0, n);
    b.add(partf.data_ptr<float>(), c0, n);
  }
  a.finish(lp_a.data(), ent_a.data());
  b.finish(lp_b.data(), ent_b.data());
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_EQ(lp_a[r], lp_b[r]) << r;
    EXPECT_EQ(ent_a[r], ent_b[r]) << r;
    EXPECT_TRUE(std::isfinite(lp_a[r]));
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, CpuKernels, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "portable" : "cpu_specific"; });

}  // namespace
