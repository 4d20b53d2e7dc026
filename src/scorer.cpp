#include "air/scorer.h"

#include "air/batching.h"
#include "air/error.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cmath>

namespace air {

Scorer::Scorer(const nn::CausalLM& model, HeadSet heads, ScoreOptions opt)
    : model_(model), heads_(std::move(heads)), opt_(opt) {
  const ModelConfig& c = model_->config;
  heads_.validate(c.num_hidden_layers, c.num_attention_heads);
  if (heads_.empty()) throw UsageError("no critical heads to mask: the reference model would equal the base");
  if (opt_.batch_tokens <= 0) throw UsageError("--batch-tokens must be positive");
}

std::vector<ScoreResult> Scorer::score(const std::vector<const Sample*>& samples) const {
  c10::InferenceMode guard;
  std::vector<ScoreResult> out(samples.size());
  std::vector<int64_t> lengths;
  std::vector<std::vector<int64_t>> seqs;
  lengths.reserve(samples.size());
  for (const Sample* s : samples) lengths.push_back(static_cast<int64_t>(s->ids.size()));

  nn::ForwardOptions plain, masked;
  masked.uniform_heads = &heads_;
  const int64_t L = model_->config.num_hidden_layers;
  const int64_t fork = opt_.share_prefix ? heads_.first_layer() : 0;

  for (const auto& rows : plan_batches(lengths, opt_.batch_tokens)) {
    std::vector<int64_t> lens, starts;
    int64_t T = 1;
    for (size_t r : rows) T = std::max(T, lengths[r]);
    // Only response tokens are scored: prediction positions from prompt_tokens - 1 on.
    for (size_t r : rows) starts.push_back(samples[r]->prompt_tokens - 1);
    at::Tensor ids = at::zeros({static_cast<int64_t>(rows.size()), T}, at::TensorOptions().dtype(at::kLong));
    for (size_t b = 0; b < rows.size(); ++b) {
      const auto& v = samples[rows[b]]->ids;
      std::copy(v.begin(), v.end(), ids.data_ptr<int64_t>() + b * T);
      lens.push_back(lengths[rows[b]]);
    }
    // Layers below the first critical head are identical in both passes: run them once.
    const nn::Layout lay = model_->layout(static_cast<int64_t>(rows.size()), T, lens);
    at::Tensor shared = model_->run_layers(model_->embed(ids, lay), 0, fork, lay, plain);
    const auto base = model_->stats_from_hidden(model_->run_layers(shared, fork, L, lay, plain),
                                                ids, lay, /*entropy=*/true, starts);
    const auto ref = model_->stats_from_hidden(model_->run_layers(shared, fork, L, lay, masked),
                                               ids, lay, /*entropy=*/false, starts);

    for (size_t b = 0; b < rows.size(); ++b) {
      const Sample& s = *samples[rows[b]];
      ScoreResult& res = out[rows[b]];
      const int64_t n = s.response_tokens();
      // Token k is predicted at position k - 1; the statistics start at prompt_tokens - 1.
      const int64_t off = 0;
      at::Tensor lb = base[b].logprob.narrow(0, off, n).neg().contiguous();
      at::Tensor lr = ref[b].logprob.narrow(0, off, n).neg().contiguous();
      at::Tensor ent = base[b].entropy.narrow(0, off, n).contiguous();
      if (!lb.isfinite().all().item<bool>() || !lr.isfinite().all().item<bool>() ||
          !ent.isfinite().all().item<bool>()) {
        res.error = "non-finite loss (model output overflowed; try --dtype fp32)";
        continue;
      }
      res.influence = aggregate(lb.data_ptr<float>(), lr.data_ptr<float>(), ent.data_ptr<float>(),
                                n, s.steps, opt_.influence);
      if (!std::isfinite(res.influence.score)) {
        res.error = "non-finite score";
        continue;
      }
      if (opt_.token_scores) {
        at::Tensor d = (lr - lb).contiguous();
        res.token_deltas.assign(d.data_ptr<float>(), d.data_ptr<float>() + n);
      }
    }
  }
  return out;
}

}  // namespace air
