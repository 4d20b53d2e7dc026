#pragma once

// Base and weakened reference passes over samples, aggregated into Attention Influence
// Scores (AIR-METHOD.md §3-4).

#include "air/dataset.h"
#include "air/head_set.h"
#include "air/influence.h"
#include "air/nn/model.h"

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace air {

struct ScoreOptions {
  InfluenceOptions influence;
  int64_t batch_tokens = 8192;  // padded tokens per forward batch
  bool token_scores = false;    // keep per-token loss deltas
  bool share_prefix = true;     // compute layers below the first critical head once for both passes
  // Working memory a batch may take, in bytes (0 = unchecked). A batch estimated above it is
  // scored a record at a time; a record estimated above it alone gets an error naming the figures.
  int64_t max_memory = 0;
  // Attention on the explicit path even where libtorch's fused kernel applies (benchmarks compare them).
  bool explicit_attention = false;
};

// Working memory (bytes, an upper estimate: fp32 activations) of one scoring batch of sequences
// of these lengths: hidden states of both passes, q/k/v, the MLP, attention score blocks, the
// running mean's prefix sums and the loss head's logit blocks.
int64_t scoring_memory(const ModelConfig& c, const std::vector<int64_t>& lengths);

// Thrown by a score() caller's on_layer to abandon the batch in flight (a stop request): it is
// not a record's failure, and passes through score() to the caller.
struct ScoringStopped : std::runtime_error {
  ScoringStopped() : std::runtime_error("scoring stopped inside a batch") {}
};

struct ScoreResult {
  std::string error;                // non-empty: the sample could not be scored (why)
  SampleInfluence influence;
  std::vector<float> token_deltas;  // l_ref - l_base per response token (token_scores only)
};

class Scorer {
 public:
  // `heads` are made uniform in the reference pass; throws UsageError when they do not fit.
  Scorer(const nn::CausalLM& model, HeadSet heads, ScoreOptions opt);

  // Scores the samples (batched by length internally); results in the given order. A record that
  // cannot be scored (non-finite losses, a failure inside the model) gets an error of its own;
  // the others are scored as usual.
  // `on_batch`, when given, is told after each batch: the samples and tokens it held.
  // `on_layer`, when given, is told after each layer of a batch's passes: the layers run and the
  // batch's total (its progress); it may throw ScoringStopped to abandon the batch.
  std::vector<ScoreResult> score(const std::vector<const Sample*>& samples,
                                 const std::function<void(int64_t samples, int64_t tokens)>& on_batch = nullptr,
                                 const std::function<void(int64_t done, int64_t total)>& on_layer = nullptr) const;

  const HeadSet& heads() const { return heads_; }

 private:
  // Scores samples[rows] as one batch into out[rows]; throws what the model throws.
  void score_rows(const std::vector<const Sample*>& samples, const std::vector<size_t>& rows,
                  std::vector<ScoreResult>& out, const std::function<void(int64_t, int64_t)>& on_layer) const;

  nn::CausalLM model_;
  at::ScalarType model_dtype_ = at::kFloat;
  HeadSet heads_;
  ScoreOptions opt_;
};

}  // namespace air
