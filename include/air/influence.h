#pragma once

// The scores of AIR-METHOD.md §4 from per-token losses: pure arithmetic, no model.

#include "air/steps.h"

#include <cstdint>
#include <vector>

namespace air {

// Which quantity ranks samples.
enum class ScoreMode {
  kRelative,  // (Lbar_ref - Lbar_base) / max(Lbar_base, eps)
  kAbsolute,  // Lbar_ref - Lbar_base
};

struct InfluenceOptions {
  ScoreMode mode = ScoreMode::kRelative;
  double eps = 1e-6;           // guards the relative score's denominator and the step weights
  double min_weight = 0.25;    // step weight clip, low
  double max_weight = 4.0;     // step weight clip, high
};

struct StepInfluence {
  Step step;
  double loss_base = 0;  // mean base loss over the step's tokens
  double loss_ref = 0;   // mean reference loss
  double score = 0;      // relative (or absolute) influence of the step
  double weight = 1;     // step weight for weighted fine-tuning (mean 1 before clipping)
};

struct SampleInfluence {
  double score = 0;       // the AIS by the chosen mode
  double loss_base = 0;   // mean base loss over response tokens
  double loss_ref = 0;    // mean reference loss
  double entropy = 0;     // mean base predictive entropy (nats)
  int64_t tokens = 0;     // response tokens scored
  std::vector<StepInfluence> steps;
};

// Relative or absolute influence of mean losses.
double influence(double loss_base, double loss_ref, const InfluenceOptions& opt);

// Aggregates per-token losses of the n response tokens (entropy may be null) over the steps
// (which index those tokens). Every result is finite when the inputs are.
SampleInfluence aggregate(const float* loss_base, const float* loss_ref, const float* entropy,
                          int64_t n, const std::vector<Step>& steps, const InfluenceOptions& opt);

// Step weights from step scores: a = max(score, 0) + eps, w = a / mean(a), clipped.
std::vector<double> step_weights(const std::vector<double>& step_scores, const InfluenceOptions& opt);

}  // namespace air
