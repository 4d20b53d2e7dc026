#include "air/influence.h"

#include <algorithm>

namespace air {

double influence(double base, double ref, const InfluenceOptions& opt) {
  if (opt.mode == ScoreMode::kAbsolute) return ref - base;
  return (ref - base) / std::max(base, opt.eps);
}

std::vector<double> step_weights(const std::vector<double>& scores, const InfluenceOptions& opt) {
  std::vector<double> a(scores.size());
  double mean = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    a[i] = std::max(scores[i], 0.0) + opt.eps;
    mean += a[i];
  }
  if (a.empty()) return a;
  mean /= static_cast<double>(a.size());
  for (double& w : a) w = std::clamp(w / mean, opt.min_weight, opt.max_weight);
  return a;
}

SampleInfluence aggregate(const float* lb, const float* lr, const float* ent, int64_t n,
                          const std::vector<Step>& steps, const InfluenceOptions& opt) {
  SampleInfluence s;
  s.tokens = n;
  double sb = 0, sr = 0, se = 0;
  for (int64_t t = 0; t < n; ++t) {
    sb += lb[t];
    sr += lr[t];
    if (ent) se += ent[t];
  }
  if (n > 0) {
    s.loss_base = sb / static_cast<double>(n);
    s.loss_ref = sr / static_cast<double>(n);
    s.entropy = se / static_cast<double>(n);
  }
  s.score = influence(s.loss_base, s.loss_ref, opt);

  std::vector<double> scores;
  for (const Step& st : steps) {
    StepInfluence si;
    si.step = st;
    const int64_t b = std::max<int64_t>(0, st.token_begin), e = std::min(n, st.token_end);
    double b_sum = 0, r_sum = 0;
    for (int64_t t = b; t < e; ++t) {
      b_sum += lb[t];
      r_sum += lr[t];
    }
    if (e > b) {
      si.loss_base = b_sum / static_cast<double>(e - b);
      si.loss_ref = r_sum / static_cast<double>(e - b);
    }
    si.score = influence(si.loss_base, si.loss_ref, opt);
    scores.push_back(si.score);
    s.steps.push_back(si);
  }
  const std::vector<double> w = step_weights(scores, opt);
  for (size_t i = 0; i < w.size(); ++i) s.steps[i].weight = w[i];
  return s;
}

}  // namespace air
