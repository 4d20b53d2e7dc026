#include "air/scorer.h"

#include "air/batching.h"
#include "air/error.h"
#include "air/runtime.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace air {

Scorer::Scorer(const nn::CausalLM& model, HeadSet heads, ScoreOptions opt)
    : model_(model), heads_(std::move(heads)), opt_(opt) {
  const ModelConfig& c = model_->config;
  heads_.validate(c.num_hidden_layers, c.num_attention_heads);
  if (heads_.empty()) throw UsageError("no critical heads to mask: the reference model would equal the base");
  if (opt_.batch_tokens <= 0) throw UsageError("batch_tokens must be positive");
  for (const auto& p : model_->parameters()) {
    model_dtype_ = p.scalar_type();
    break;
  }
}

namespace {
// The first line of an exception's text (libtorch appends a backtrace).
std::string first_line(const char* what) {
  const std::string s(what);
  return s.substr(0, s.find('\n'));
}
}  // namespace

int64_t scoring_memory(const ModelConfig& c, const std::vector<int64_t>& lengths) {
  int64_t N = 0, T = 0;
  for (int64_t n : lengths) {
    N += n;
    T = std::max(T, n);
  }
  const int64_t B = static_cast<int64_t>(lengths.size());
  const int64_t qkv = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim;
  const int64_t per_token = 4 * c.hidden_size + 2 * qkv + 2 * c.intermediate_size;  // live at once
  const int64_t padded = B * T * qkv * 2;                                           // [B, H, T, Dh] views
  const int64_t scores = 3 * std::max<int64_t>(128ll << 20, B * c.num_attention_heads * 16 * T * 4);
  const int64_t prefix = B * T * c.num_attention_heads * c.head_dim * 8;           // float64 sums
  const int64_t head = 256ll << 20;                                                 // logit blocks
  return (N * per_token + padded) * 4 + scores + prefix + head;
}

void Scorer::score_rows(const std::vector<const Sample*>& samples, const std::vector<size_t>& rows,
                        std::vector<ScoreResult>& out, const std::function<void(int64_t, int64_t)>& on_layer) const {
  nn::ForwardOptions plain, masked;
  masked.uniform_heads = &heads_;
  plain.explicit_attention = masked.explicit_attention = opt_.explicit_attention;
  const int64_t L = model_->config.num_hidden_layers;
  const int64_t fork = opt_.share_prefix ? heads_.first_layer() : 0;
  int64_t layers_done = 0;
  const std::function<void()> after_layer = [&] { on_layer(++layers_done, fork + 2 * (L - fork)); };
  if (on_layer) plain.after_layer = masked.after_layer = &after_layer;
  std::vector<int64_t> lens, starts;
  int64_t T = 1;
  for (size_t r : rows) T = std::max(T, static_cast<int64_t>(samples[r]->ids.size()));
  // Only response tokens are scored: prediction positions from prompt_tokens - 1 on.
  for (size_t r : rows) starts.push_back(samples[r]->prompt_tokens - 1);
  at::Tensor ids = at::zeros({static_cast<int64_t>(rows.size()), T}, at::TensorOptions().dtype(at::kLong));
  for (size_t b = 0; b < rows.size(); ++b) {
    const auto& v = samples[rows[b]]->ids;
    std::copy(v.begin(), v.end(), ids.data_ptr<int64_t>() + b * T);
    lens.push_back(static_cast<int64_t>(samples[rows[b]]->ids.size()));
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
      res.error = model_dtype_ == at::kFloat
                      ? "non-finite loss (the model's output overflowed in fp32: are the weights sound?)"
                      : "non-finite loss (the model's output overflowed in " + dtype_name(model_dtype_) +
                            "; fp32 avoids that)";
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

std::vector<ScoreResult> Scorer::score(const std::vector<const Sample*>& samples,
                                      const std::function<void(int64_t, int64_t)>& on_batch,
                                      const std::function<void(int64_t, int64_t)>& on_layer) const {
  c10::InferenceMode guard;
  std::vector<ScoreResult> out(samples.size());
  std::vector<int64_t> lengths;
  lengths.reserve(samples.size());
  for (const Sample* s : samples) lengths.push_back(static_cast<int64_t>(s->ids.size()));

  // "" when a batch of these rows fits the memory limit, else why not.
  auto over_limit = [&](const std::vector<size_t>& rows) -> std::string {
    if (opt_.max_memory <= 0) return "";
    std::vector<int64_t> lens;
    for (size_t r : rows) lens.push_back(lengths[r]);
    const int64_t need = scoring_memory(model_->config, lens);
    if (need <= opt_.max_memory) return "";
    return "needs about " + memory_string(need) + " of working memory for " + std::to_string(rows.size()) +
           " record(s) of up to " + std::to_string(*std::max_element(lens.begin(), lens.end())) +
           " tokens, more than the " + memory_string(opt_.max_memory) + " left under the memory limit";
  };
  for (const auto& rows : plan_batches(lengths, opt_.batch_tokens)) {
    try {
      if (const std::string why = over_limit(rows); !why.empty()) throw std::length_error(why);
      score_rows(samples, rows, out, on_layer);
    } catch (const ScoringStopped&) {
      throw;
    } catch (const std::exception&) {
      // One record must not end the run: a failed batch is scored again a record at a time,
      // and a record that fails alone gets an error of its own.
      for (size_t r : rows) {
        try {
          if (rows.size() == 1) throw;
          if (const std::string why = over_limit({r}); !why.empty()) throw std::length_error(why);
          score_rows(samples, {r}, out, on_layer);
        } catch (const ScoringStopped&) {
          throw;
        } catch (const std::exception& e) {
          out[r] = ScoreResult{};
          out[r].error = std::string("scoring failed: ") + first_line(e.what());
        }
      }
    }
    if (on_batch) {
      int64_t tokens = 0;
      for (size_t r : rows) tokens += lengths[r];
      on_batch(static_cast<int64_t>(rows.size()), tokens);
    }
  }
  return out;
}

}  // namespace air
