#include "air/probe.h"

#include "air/error.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace air {
namespace {

ProbeItem repeated(const std::vector<int64_t>& prefix, const std::vector<int64_t>& span) {
  ProbeItem it;
  it.ids = prefix;
  const int64_t p1 = static_cast<int64_t>(it.ids.size());
  it.ids.insert(it.ids.end(), span.begin(), span.end());
  const int64_t p2 = static_cast<int64_t>(it.ids.size());
  it.ids.insert(it.ids.end(), span.begin(), span.end());
  const int64_t n = static_cast<int64_t>(span.size());
  for (int64_t i = 0; i < n; ++i) it.context.push_back(p1 + i);
  // The first token of the second copy cannot be known to repeat; from there on each next
  // token is in the context.
  for (int64_t t = p2; t + 1 < p2 + n; ++t) it.targets.push_back(t);
  return it;
}

// Counts copies per (layer, head) for one item: reduces each block of probabilities to the
// argmax key of the target queries in it.
class CopyCounter : public nn::AttentionObserver {
 public:
  CopyCounter(const ProbeItem& item, int64_t layers, int64_t heads) : item_(item) {
    const int64_t T = static_cast<int64_t>(item.ids.size());
    ids_ = at::tensor(item.ids, at::TensorOptions().dtype(at::kLong));
    in_context_ = at::zeros({T}, at::TensorOptions().dtype(at::kBool));
    for (int64_t k : item.context) in_context_[k] = true;
    copies_ = at::zeros({layers, heads}, at::TensorOptions().dtype(at::kLong));
  }
  void observe(int64_t layer, int64_t q0, const at::Tensor& probs) override {
    const int64_t c = probs.size(2);
    std::vector<int64_t> local, next;
    for (int64_t t : item_.targets)
      if (t >= q0 && t < q0 + c) {
        local.push_back(t - q0);
        next.push_back(item_.ids[t + 1]);
      }
    if (local.empty()) return;
    const at::Tensor idx = at::tensor(local, at::TensorOptions().dtype(at::kLong)).to(probs.device());
    // [H, nq]: argmax key of each target query (ties: lowest index).
    const at::Tensor jstar = probs[0].index_select(1, idx).argmax(-1).cpu();
    const at::Tensor target = at::tensor(next, at::TensorOptions().dtype(at::kLong)).unsqueeze(0);
    const at::Tensor copy = in_context_.index({jstar}) & (ids_.index({jstar}) == target);
    copies_[layer] += copy.sum(1);
  }
  const at::Tensor& copies() const { return copies_; }  // [L, H]

 private:
  const ProbeItem& item_;
  at::Tensor ids_, in_context_, copies_;
};

}  // namespace

ProbeKind parse_probe_kind(const std::string& n) {
  if (n == "repeat") return ProbeKind::kRepeat;
  if (n == "random-repeat") return ProbeKind::kRandomRepeat;
  if (n == "kv-retrieval") return ProbeKind::kKvRetrieval;
  if (n == "corpus") return ProbeKind::kCorpus;
  throw OptionError("probe", option_name("probe") + " '" + n + "': expected repeat, random-repeat, kv-retrieval or corpus");
}

std::string probe_kind_name(ProbeKind k) {
  switch (k) {
    case ProbeKind::kRepeat: return "repeat";
    case ProbeKind::kRandomRepeat: return "random-repeat";
    case ProbeKind::kKvRetrieval: return "kv-retrieval";
    case ProbeKind::kCorpus: return "corpus";
  }
  return "?";
}

std::vector<ProbeItem> repeat_items(const std::vector<std::vector<int64_t>>& texts,
                                    const std::vector<int64_t>& prefix, const ProbeOptions& opt) {
  std::vector<size_t> usable;
  for (size_t i = 0; i < texts.size(); ++i)
    if (texts[i].size() >= 4) usable.push_back(i);
  if (usable.empty()) throw DataError("repeat probe: no text of at least 4 tokens to repeat");
  std::mt19937_64 rng(opt.seed);
  std::vector<ProbeItem> items;
  for (int64_t k = 0; k < opt.num_items; ++k) {
    const auto& t = texts[usable[rng() % usable.size()]];
    const int64_t n = std::min<int64_t>(opt.span_tokens, static_cast<int64_t>(t.size()));
    const int64_t start = static_cast<int64_t>(rng() % (t.size() - n + 1));
    items.push_back(repeated(prefix, std::vector<int64_t>(t.begin() + start, t.begin() + start + n)));
  }
  return items;
}

std::vector<ProbeItem> random_repeat_items(int64_t vocab, int64_t low,
                                           const std::vector<int64_t>& prefix,
                                           const ProbeOptions& opt) {
  if (vocab - low < 2) throw UsageError("random-repeat probe: vocabulary too small");
  std::mt19937_64 rng(opt.seed);
  std::vector<ProbeItem> items;
  for (int64_t k = 0; k < opt.num_items; ++k) {
    std::vector<int64_t> span(opt.span_tokens);
    for (auto& x : span) x = low + static_cast<int64_t>(rng() % (vocab - low));
    items.push_back(repeated(prefix, span));
  }
  return items;
}

std::vector<ProbeItem> kv_retrieval_items(const Tokenizer& tok, const std::vector<std::string>& sentences,
                                          bool add_special, const ProbeOptions& opt) {
  if (sentences.size() < 4) throw DataError("kv-retrieval probe: needs at least 4 sentences of 20-200 characters in its text (" + option_name("probe_text") + " or the corpus)");
  std::mt19937_64 rng(opt.seed);
  const char* hex = "0123456789abcdef";
  auto key = [&] {
    std::string k(32, '0');
    for (char& ch : k) ch = hex[rng() % 16];
    return k;
  };
  auto quote = [](const std::string& s) {  // a JSON string literal
    std::string o = "\"";
    for (char ch : s) {
      if (ch == '"' || ch == '\\') o += '\\';
      o += (ch == '\n' ? ' ' : ch);
    }
    return o + "\"";
  };
  std::vector<ProbeItem> items;
  for (int64_t k = 0; k < opt.num_items; ++k) {
    const int pairs = 8;
    std::vector<std::string> keys, values;
    for (int i = 0; i < pairs; ++i) {
      keys.push_back(key());
      values.push_back(sentences[rng() % sentences.size()]);
    }
    std::string text = "Extract the value corresponding to the specified key in the JSON object below.\n\n{";
    std::vector<std::pair<size_t, size_t>> value_spans;
    for (int i = 0; i < pairs; ++i) {
      text += (i ? ", " : "") + quote(keys[i]) + ": ";
      const size_t b = text.size() + 1;
      text += quote(values[i]);
      value_spans.emplace_back(b, text.size() - 1);
    }
    text += "}\n\n";
    std::vector<int> order(pairs);
    for (int i = 0; i < pairs; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    for (int d = 0; d < 3; ++d)  // worked demonstrations
      text += "Key: " + quote(keys[order[d]]) + "\nValue: " + quote(values[order[d]]) + "\n\n";
    const int q = order[3];
    text += "Key: " + quote(keys[q]) + "\nValue: \"";
    const size_t ans_b = text.size();
    text += values[q];
    const size_t ans_e = text.size();
    text += "\"";

    const Encoding enc = tok.encode(text, add_special);
    ProbeItem it;
    it.ids = enc.ids;
    for (size_t i = 0; i < enc.ids.size(); ++i) {
      const auto [b, e] = enc.offsets[i];
      if (b >= value_spans[q].first && e <= value_spans[q].second && e > b) it.context.push_back(i);
      // Target: position i - 1 predicts answer token i (one wholly inside the answer; a token
      // fused with the closing quote is not in the context).
      if (i > 0 && b >= ans_b && e <= ans_e && e > b) it.targets.push_back(static_cast<int64_t>(i) - 1);
    }
    if (!it.context.empty() && !it.targets.empty()) items.push_back(std::move(it));
  }
  if (items.empty()) throw DataError("kv-retrieval probe: no item could be built");
  return items;
}

std::vector<ProbeItem> corpus_items(const std::vector<Sample>& samples, const ProbeOptions& opt) {
  std::vector<size_t> order(samples.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937_64 rng(opt.seed);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<ProbeItem> items;
  for (size_t i : order) {
    if (static_cast<int64_t>(items.size()) >= opt.num_items) break;
    const Sample& s = samples[i];
    ProbeItem it;
    it.ids = s.ids;
    std::vector<int64_t> prompt(s.ids.begin(), s.ids.begin() + s.prompt_tokens);
    std::sort(prompt.begin(), prompt.end());
    for (int64_t k = 0; k < s.prompt_tokens; ++k) it.context.push_back(k);
    for (int64_t t = s.prompt_tokens - 1; t + 1 < static_cast<int64_t>(s.ids.size()); ++t)
      if (std::binary_search(prompt.begin(), prompt.end(), s.ids[t + 1])) it.targets.push_back(t);
    if (!it.targets.empty()) items.push_back(std::move(it));
  }
  if (items.empty()) throw DataError("corpus probe: no response token occurs in its prompt");
  return items;
}

ProbeResult run_probe(const nn::CausalLM& model, const std::vector<ProbeItem>& items,
                      const ProbeOptions& opt,
                      const std::function<void(int64_t, int64_t, int64_t)>& on_item) {
  c10::InferenceMode guard;
  const int64_t L = model->config.num_hidden_layers, H = model->config.num_attention_heads;
  std::vector<at::Tensor> rates;  // per item [L, H] float64 copy rates
  std::vector<bool> counts;
  for (const ProbeItem& it : items) {
    if (it.targets.empty()) continue;
    CopyCounter counter(it, L, H);
    nn::ForwardOptions fo;
    fo.observer = &counter;
    const at::Tensor ids = at::tensor(it.ids, at::TensorOptions().dtype(at::kLong)).unsqueeze(0);
    const at::Tensor h = model->hidden_states(ids, fo)[0];  // [T, D]
    // The model's own greedy prediction at the targets.
    const at::Tensor q = at::tensor(it.targets, at::TensorOptions().dtype(at::kLong)).to(h.device());
    const at::Tensor pred = at::linear(h.index_select(0, q), model->output_weight()).argmax(-1).cpu();
    std::vector<int64_t> next;
    for (int64_t t : it.targets) next.push_back(it.ids[t + 1]);
    const int64_t right = (pred == at::tensor(next, at::TensorOptions().dtype(at::kLong))).sum().item<int64_t>();
    counts.push_back(2 * right >= static_cast<int64_t>(it.targets.size()));
    rates.push_back(counter.copies().to(at::kDouble) / static_cast<double>(it.targets.size()));
    if (on_item) on_item(static_cast<int64_t>(rates.size()), static_cast<int64_t>(items.size()), static_cast<int64_t>(it.ids.size()));
  }
  ProbeResult r;
  r.items_total = static_cast<int64_t>(rates.size());
  if (rates.empty()) throw DataError("probe: no item has target positions");
  at::Tensor sum = at::zeros({L, H}, at::TensorOptions().dtype(at::kDouble));
  for (size_t i = 0; i < rates.size(); ++i)
    if (opt.all_items || counts[i]) {
      sum += rates[i];
      ++r.items_counted;
    }
  if (r.items_counted == 0) {
    r.counted_all = true;
    for (const auto& x : rates) sum += x;
    r.items_counted = r.items_total;
  }
  sum /= static_cast<double>(r.items_counted);
  for (int64_t l = 0; l < L; ++l)
    for (int64_t h = 0; h < H; ++h) r.ranked.push_back({{l, h}, sum[l][h].item<double>()});
  std::stable_sort(r.ranked.begin(), r.ranked.end(),
                   [](const HeadScore& a, const HeadScore& b) { return a.score > b.score; });
  return r;
}

HeadSet select_heads(const std::vector<HeadScore>& ranked, int64_t total, const HeadSelection& sel) {
  if (ranked.empty()) throw UsageError("no head to select from");
  const int64_t n = static_cast<int64_t>(ranked.size());
  int64_t k;
  if (sel.num_heads > 0) {
    if (sel.num_heads > n)
      throw OptionError("num_heads", option_name("num_heads") + " " + std::to_string(sel.num_heads) + ": the model has " + std::to_string(n) + " heads");
    k = sel.num_heads;
  } else if (sel.min_score >= 0) {
    k = 0;
    while (k < n && ranked[k].score >= sel.min_score) ++k;
    if (k == 0)
      throw OptionError("min_score", option_name("min_score") + " " + std::to_string(sel.min_score) + ": no head reaches it (the best has R_h " +
                       std::to_string(ranked[0].score) + ")");
  } else {
    if (sel.delta <= 0 || sel.delta > 1) throw OptionError("delta", option_name("delta") + " must be in (0, 1]");
    k = static_cast<int64_t>(std::floor(sel.delta * static_cast<double>(total) + 1e-9));
  }
  k = std::clamp<int64_t>(k, 1, n);
  std::vector<Head> heads;
  for (int64_t i = 0; i < k; ++i) heads.push_back(ranked[i].head);
  return HeadSet(heads);
}

Separation separation(const ProbeResult& result, const HeadSet& selected) {
  const std::vector<HeadScore>& ranked = result.ranked;
  Separation sep;
  sep.items_counted = result.items_counted;
  sep.model_could_do_items = !result.counted_all;
  if (ranked.empty()) return sep;
  std::vector<double> all;
  double selected_sum = 0;
  int64_t n_selected = 0;
  bool any_other = false;
  for (const auto& hs : ranked) {
    all.push_back(hs.score);
    if (selected.contains(hs.head)) {
      sep.weakest_selected = n_selected ? std::min(sep.weakest_selected, hs.score) : hs.score;
      selected_sum += hs.score;
      ++n_selected;
    } else {
      sep.strongest_unselected = any_other ? std::max(sep.strongest_unselected, hs.score) : hs.score;
      any_other = true;
    }
  }
  auto median_of = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  };
  sep.median = median_of(all);
  std::vector<double> dev;
  for (double x : all) dev.push_back(std::abs(x - sep.median));
  sep.spread = 1.4826 * median_of(dev);
  if (sep.spread <= 0) {
    double mean = 0, var = 0;
    for (double x : all) mean += x / static_cast<double>(all.size());
    for (double x : all) var += (x - mean) * (x - mean) / static_cast<double>(all.size());
    sep.spread = std::sqrt(var);
  }
  sep.gap = sep.weakest_selected - (any_other ? sep.strongest_unselected : 0.0);
  if (sep.spread > 0 && n_selected > 0) {
    sep.z_mean_selected = (selected_sum / static_cast<double>(n_selected) - sep.median) / sep.spread;
    sep.z_weakest_selected = (sep.weakest_selected - sep.median) / sep.spread;
  }
  sep.distinct = n_selected > 0 && sep.z_mean_selected >= kMinSeparationZ && sep.model_could_do_items &&
                 sep.items_counted >= kMinCountedItems;
  return sep;
}

}  // namespace air
