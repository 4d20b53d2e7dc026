#include "air/bench.h"

#include "air/build_info.h"
#include "air/error.h"
#include "air/line_reader.h"
#include "air/output.h"
#include "air/score_files.h"
#include "air/scorer.h"
#include "air/tokenizer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <random>
#include <set>

#include <dlfcn.h>
#include <malloc.h>
#include <unistd.h>

namespace air {
namespace {

ModelConfig shape_config(const std::string& name) {
  ModelConfig c;
  c.architecture = Architecture::kQwen2;
  c.architecture_name = "Qwen2ForCausalLM";
  c.model_type = "qwen2";
  c.qkv_bias = true;
  c.rope_theta = 1000000.0;
  c.rms_norm_eps = 1e-6;
  c.max_position_embeddings = 32768;
  if (name == "small") {
    c.vocab_size = 32000, c.hidden_size = 512, c.intermediate_size = 1408;
    c.num_hidden_layers = 6, c.num_attention_heads = 8, c.num_key_value_heads = 2;
    c.tie_word_embeddings = true;
  } else if (name == "qwen2.5-0.5b") {
    c.vocab_size = 151936, c.hidden_size = 896, c.intermediate_size = 4864;
    c.num_hidden_layers = 24, c.num_attention_heads = 14, c.num_key_value_heads = 2;
    c.tie_word_embeddings = true;
  } else if (name == "qwen2.5-1.5b") {
    c.vocab_size = 151936, c.hidden_size = 1536, c.intermediate_size = 8960;
    c.num_hidden_layers = 28, c.num_attention_heads = 12, c.num_key_value_heads = 2;
    c.tie_word_embeddings = true;
  } else if (name == "qwen2.5-7b") {
    c.vocab_size = 152064, c.hidden_size = 3584, c.intermediate_size = 18944;
    c.num_hidden_layers = 28, c.num_attention_heads = 28, c.num_key_value_heads = 4;
    c.tie_word_embeddings = false;
  } else if (name == "qwen3-moe-small") {
    // Qwen3-MoE-like: 8 experts, top-2 renormalised, per-head q/k norms, every layer sparse.
    c.architecture = Architecture::kQwen3Moe;
    c.architecture_name = "Qwen3MoeForCausalLM";
    c.model_type = "qwen3_moe";
    c.qkv_bias = false;
    c.qk_norm = true;
    c.vocab_size = 32000, c.hidden_size = 512, c.intermediate_size = 1408;
    c.num_hidden_layers = 6, c.num_attention_heads = 8, c.num_key_value_heads = 2;
    c.num_experts = 8, c.experts_per_token = 2, c.moe_intermediate_size = 704, c.norm_topk_prob = true;
    c.tie_word_embeddings = true;
  } else {
    throw OptionError("shape", option_name("shape") + " '" + name +
                                   "': expected small, qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-7b or qwen3-moe-small");
  }
  c.head_dim = c.hidden_size / c.num_attention_heads;
  c.rotary_dim = c.head_dim;
  return c;
}

// Random weights drawn on `dev` itself, one tensor at a time: each replaces the module's
// placeholder, which is never written and so never resident on the host, so a model larger
// than host memory can be built on a GPU.
nn::CausalLM random_model(const ModelConfig& c, const c10::Device& dev, at::ScalarType dtype, uint64_t seed) {
  at::manual_seed(seed);
  nn::CausalLM m(c);
  for (auto& p : m->named_parameters()) {
    const std::string& name = p.key();
    const auto o = at::TensorOptions().device(dev);
    at::Tensor t;
    if (name.find("norm") != std::string::npos) t = at::ones(p.value().sizes(), o);
    else if (name.find("bias") != std::string::npos) t = at::zeros(p.value().sizes(), o);
    else t = at::randn(p.value().sizes(), o).mul_(0.02);
    p.value().set_data(t.to(dtype));
  }
  m->eval();
  return m;
}

int64_t param_bytes(const nn::CausalLM& m) {
  int64_t b = 0;
  for (const auto& p : m->parameters()) b += p.numel() * p.element_size();
  return b;
}

// FLOPs of one decoder layer over a sequence of T tokens: weight matmuls and causal attention.
double layer_flops(const ModelConfig& c, int64_t T) {
  const double d = c.hidden_size, H = c.num_attention_heads, Hkv = c.num_key_value_heads, Dh = c.head_dim;
  // The MLP's width a token goes through, on average over the layers: a sparse layer runs its
  // top-k experts (and the shared one) and the router.
  double I = 0, router = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const bool sparse = c.sparse_layer(l);
    I += sparse ? c.experts_per_token * c.moe_intermediate_size + c.shared_expert_intermediate_size : c.intermediate_size;
    router += sparse ? 2.0 * d * c.num_experts : 0;
  }
  I /= static_cast<double>(c.num_hidden_layers);
  router /= static_cast<double>(c.num_hidden_layers);
  const double per_token = 2 * d * (H * Dh + 2 * Hkv * Dh) + 2 * H * Dh * d + 2 * 3 * d * I + router;
  const double attn = 2.0 * 2.0 * H * Dh * (static_cast<double>(T) * (T + 1) / 2.0);  // QK and PV, causal
  return per_token * T + attn;
}

// FLOPs of the output head over `rows` positions.
double head_flops(const ModelConfig& c, int64_t rows) {
  return 2.0 * c.hidden_size * c.vocab_size * rows;
}

// Forward FLOPs of one sequence of T tokens: every layer and the head at every position.
double forward_flops(const ModelConfig& c, int64_t T) {
  return c.num_hidden_layers * layer_flops(c, T) + head_flops(c, T);
}

// FLOPs air's path executes for one sample: layers below the first critical one once, the
// others in both passes, the head only where a response token is predicted, in both passes.
double air_flops(const ModelConfig& c, const Sample& s, int64_t fork) {
  const int64_t T = static_cast<int64_t>(s.ids.size());
  return (2 * c.num_hidden_layers - fork) * layer_flops(c, T) +
         2 * head_flops(c, T - s.prompt_tokens);
}

void sync(const c10::Device& dev) {
  if (dev.is_cuda()) torch::cuda::synchronize();
}

// Hands the allocator's cached free memory back to the system, so that one method's peak is
// not counted in the next one's: tcmalloc keeps freed blocks (its C entry point is looked up,
// as the executable may be linked without it), glibc trims its heap.
void release_free_memory() {
  using Release = void (*)();
  if (auto f = reinterpret_cast<Release>(dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory"))) f();
  malloc_trim(0);
}

// Peak resident memory since the last reset (Linux VmHWM), in bytes; -1 when unknown.
void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  if (f) f << "5";
}
int64_t peak_rss() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return -1;
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The straightforward method: each sample alone, two independent full passes, attention
// probabilities materialised in one [1, H, T, T] block, full [T, vocab] logits.
std::vector<double> straightforward(const nn::CausalLM& m, const std::vector<const Sample*>& samples,
                                    const HeadSet& heads) {
  class Keep : public nn::AttentionObserver {
   public:
    void observe(int64_t, int64_t, const at::Tensor& p) override { last = p; }
    at::Tensor last;
  } keep;
  std::vector<double> scores;
  for (const Sample* sp : samples) {
    const Sample& s = *sp;
    const int64_t T = static_cast<int64_t>(s.ids.size());
    at::Tensor ids = at::tensor(s.ids, at::TensorOptions().dtype(at::kLong)).unsqueeze(0);
    double mean[2];
    for (int pass = 0; pass < 2; ++pass) {
      nn::ForwardOptions o;
      o.observer = &keep;
      o.query_chunk = T;
      if (pass == 1) o.uniform_heads = &heads;
      at::Tensor logp = m->logits(ids, o)[0].log_softmax(-1);  // [T, V]
      at::Tensor tgt = ids[0].narrow(0, 1, T - 1).to(logp.device());
      at::Tensor loss = -logp.narrow(0, 0, T - 1).gather(1, tgt.unsqueeze(1)).squeeze(1);
      mean[pass] = loss.narrow(0, s.prompt_tokens - 1, T - s.prompt_tokens).mean().item<double>();
    }
    scores.push_back((mean[1] - mean[0]) / std::max(mean[0], 1e-6));
  }
  return scores;
}

// air's scoring path; the step scores of every sample go to *steps, in order.
std::vector<double> air_path(const nn::CausalLM& m, const std::vector<const Sample*>& samples,
                             const HeadSet& heads, const ScoreBenchOptions& opt, std::vector<double>* steps = nullptr) {
  ScoreOptions so;
  so.batch_tokens = opt.batch_tokens;
  so.explicit_attention = opt.explicit_attention;
  const Scorer scorer(m, heads, so);
  std::vector<double> out;
  for (const auto& r : scorer.score(samples)) {
    out.push_back(r.influence.score);
    if (steps)
      for (const auto& st : r.influence.steps) steps->push_back(st.score);
  }
  return out;
}

// Standard deviation of v over its elements (NaN with fewer than two).
double std_dev(const std::vector<double>& v) {
  if (v.size() < 2) return std::nan("");
  double mean = 0, ss = 0;
  for (double x : v) mean += x / static_cast<double>(v.size());
  for (double x : v) ss += (x - mean) * (x - mean);
  return std::sqrt(ss / static_cast<double>(v.size() - 1));
}

// Of the top `fraction` of a by score, the share also in the top of b.
double top_overlap(const std::vector<double>& a, const std::vector<double>& b, double fraction) {
  const size_t n = std::min(a.size(), b.size());
  const size_t k = std::max<size_t>(1, static_cast<size_t>(std::ceil(fraction * static_cast<double>(n))));
  auto top = [&](const std::vector<double>& v) {
    std::vector<size_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](size_t x, size_t y) { return v[x] > v[y]; });
    return std::set<size_t>(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(std::min(k, n)));
  };
  const std::set<size_t> ta = top(a), tb = top(b);
  size_t shared = 0;
  for (size_t i : ta) shared += tb.count(i);
  return n == 0 ? std::nan("") : static_cast<double>(shared) / static_cast<double>(ta.size());
}

// Random tokens; every other sample's response repeats spans of its prompt (as reasoning that
// refers back does), so that the scores spread and their ranking means something. Responses
// are cut into steps of about 32 tokens.
std::vector<Sample> make_samples(const std::vector<int64_t>& lengths, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Sample> out;
  for (int64_t T : lengths) {
    Sample s;
    s.ids.resize(T);
    for (auto& x : s.ids) x = static_cast<int64_t>(rng() % vocab);
    s.prompt_tokens = std::max<int64_t>(1, T / 4);
    if (out.size() % 2 == 1)
      for (int64_t t = s.prompt_tokens; t < T; ++t) s.ids[t] = s.ids[(t - s.prompt_tokens) % s.prompt_tokens];
    const int64_t n = T - s.prompt_tokens;
    for (int64_t b = 0; b < n; b += 32) s.steps.push_back({0, 1, b, std::min(n, b + 32)});
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<int64_t> corpus_lengths(const ScoreBenchOptions& opt) {
  std::vector<int64_t> lengths;
  if (!opt.lengths_from.empty()) {
    const auto tok = with_context("the tokenizer for " + option_name("lengths_from") + " (" + option_name("tokenizer") + ")",
                                  [&] { return load_tokenizer(opt.tokenizer); });
    for_each_line(opt.lengths_from, [&](const std::string& line, int64_t) {
      if (static_cast<int64_t>(lengths.size()) >= opt.samples) return;
      const auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_object()) return;
      std::string text;
      for (const auto& [k, v] : j.items())
        if (v.is_string()) text += v.get<std::string>() + "\n";
      lengths.push_back(std::clamp<int64_t>(static_cast<int64_t>(tok->encode(text, true).ids.size()), 100, 400));
    });
  }
  std::mt19937_64 rng(opt.seed + 1);
  while (static_cast<int64_t>(lengths.size()) < opt.samples) lengths.push_back(100 + static_cast<int64_t>(rng() % 301));
  return lengths;
}

// The plain matmul of the model's own MLP shape, same device, dtype and threads, timed for about
// a second; measured again in every round, so that a row is divided by the rate the machine gave
// while that row ran.
class MatmulRate {
 public:
  MatmulRate(const ModelConfig& c, const c10::Device& dev, at::ScalarType dtype)
      : dev_(dev), a_(at::randn({kRows, c.hidden_size}).to(dev, dtype)),
        w_(at::randn({c.intermediate_size, c.hidden_size}).to(dev, dtype)) {
    at::linear(a_, w_);
    sync(dev_);
  }
  double measure() const {
    int reps = 0;
    const auto start = Clock::now();
    while (seconds_since(start) < 1.0 || reps < 3) {
      at::linear(a_, w_);
      sync(dev_);
      ++reps;
    }
    return 2.0 * kRows * a_.size(1) * w_.size(0) * reps / seconds_since(start) / 1e9;
  }
  static constexpr int64_t kRows = 2048;

 private:
  c10::Device dev_;
  at::Tensor a_, w_;
};

// On a GPU, the chip's own rate: a large square matmul in the same dtype (0 on the CPU).
double chip_rate(const c10::Device& dev, at::ScalarType dtype) {
  if (!dev.is_cuda()) return 0;
  const int64_t S = 8192;
  at::Tensor x = at::randn({S, S}, at::TensorOptions().dtype(dtype).device(dev));
  for (int i = 0; i < 3; ++i) at::mm(x, x);
  sync(dev);
  const auto t0 = Clock::now();
  for (int i = 0; i < 10; ++i) at::mm(x, x);
  sync(dev);
  return 2.0 * S * S * S * 10 / seconds_since(t0) / 1e9;
}

// Critical set: 5% of heads, spread over the upper half of the model.
HeadSet bench_heads(const ModelConfig& c, uint64_t seed) {
  std::vector<Head> hv;
  const int64_t total = c.num_hidden_layers * c.num_attention_heads;
  std::mt19937_64 rng(seed);
  while (static_cast<int64_t>(hv.size()) < std::max<int64_t>(1, total / 20))
    hv.push_back({c.num_hidden_layers / 2 + static_cast<int64_t>(rng() % (c.num_hidden_layers - c.num_hidden_layers / 2)),
                  static_cast<int64_t>(rng() % c.num_attention_heads)});
  return HeadSet(hv);
}

// Seconds of `f` after one warm-up call.
template <class F>
double timed(const c10::Device& dev, F&& f) {
  f();
  sync(dev);
  const auto t0 = Clock::now();
  f();
  sync(dev);
  return seconds_since(t0);
}

// A MoE model's time split (nothing for a dense one): the layer stack over `tokens` tokens
// against its sparse blocks alone (router, grouping, experts) and the experts' own matmuls
// alone, on the same hidden states.
void moe_share(const nn::CausalLM& m, const c10::Device& dev, int64_t tokens, ScoreBenchSetup& s) {
  const ModelConfig& c = m->config;
  if (c.num_experts == 0) return;
  const at::Tensor ids = at::randint(c.vocab_size, {1, tokens}, at::TensorOptions().dtype(at::kLong).device(dev));
  const nn::Layout lay = m->layout_of(ids);
  const at::Tensor h = m->embed(ids, lay);
  const double whole = timed(dev, [&] { m->run_layers(h.clone(), 0, c.num_hidden_layers, lay, {}); });
  std::vector<const nn::SparseMoeImpl*> blocks;
  for (const auto& layer : m->model->layers->items)
    if (layer->moe) blocks.push_back(layer->moe.get());
  const double moe = timed(dev, [&] {
    for (const auto* b : blocks) b->forward(h);
  });
  // The experts' matmuls on the rows each is routed.
  std::vector<std::vector<std::pair<int64_t, at::Tensor>>> groups(blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) {
    const at::Tensor route = blocks[i]->routing(h);  // [N, E]
    for (int64_t e = 0; e < c.num_experts; ++e) {
      const at::Tensor rows = route.select(1, e).gt(0).nonzero().squeeze(1);
      if (rows.numel() > 0) groups[i].push_back({e, h.index_select(0, rows)});
    }
  }
  const double experts = timed(dev, [&] {
    for (size_t i = 0; i < blocks.size(); ++i)
      for (const auto& [e, x] : groups[i]) blocks[i]->experts->items[e]->forward(x);
  });
  s.moe_block_share = moe / whole;
  s.expert_matmul_share = experts / whole;
  s.moe_tokens = tokens;
}

struct Bench {
  const ScoreBenchOptions& opt;
  ModelConfig c;
  c10::Device dev;
  at::ScalarType dtype;
  nn::CausalLM m;
  HeadSet heads;
  const MatmulRate& rate;
  double chip_gflops;
  // bf16 on a CPU: the same weights in fp32 too, for both methods in fp32 beside bf16 and for the
  // rank agreement of bf16 scores with air's fp32 ones (else null).
  nn::CausalLM fp32{nullptr};
};

// Time and scores of one method over the rounds.
struct Tally {
  bool air = false;  // air's path, else the straightforward method
  bool fp32 = false;  // on the fp32 copy of the weights
  double secs = 0;
  int64_t rss = -1;
  std::vector<double> scores, steps;
  std::string not_run;
};

// Runs the two methods in alternation, each round on its own slice of the samples (short
// workload) or on the sample again (long), so that a machine whose speed drifts during the run
// (a shared host) weighs on both methods alike. Returns the mean matmul rate over the rounds.
double measure(const Bench& b, const std::vector<std::vector<const Sample*>>& parts,
               const std::vector<const Sample*>& warm, std::vector<Tally>& tally) {
  for (Tally& tl : tally) {  // warm-up (kernel loading, allocator), untimed
    if (!tl.not_run.empty()) continue;
    const nn::CausalLM& m = tl.fp32 ? b.fp32 : b.m;
    if (!tl.air) straightforward(m, warm, b.heads);
    else air_path(m, warm, b.heads, b.opt);
  }
  double matmul_sum = 0;
  for (const auto& part : parts) {
    matmul_sum += b.rate.measure();
    for (Tally& tl : tally) {
      if (!tl.not_run.empty()) continue;
      const nn::CausalLM& m = tl.fp32 ? b.fp32 : b.m;
      sync(b.dev);
      release_free_memory();
      reset_peak_rss();
      const auto start = Clock::now();
      try {
        const auto sc = !tl.air ? straightforward(m, part, b.heads) : air_path(m, part, b.heads, b.opt, &tl.steps);
        sync(b.dev);
        tl.scores.insert(tl.scores.end(), sc.begin(), sc.end());
      } catch (const std::exception& e) {  // the baseline can run out of memory on long inputs
        tl.not_run = std::string("failed: ") + std::string(e.what()).substr(0, 120);
        continue;
      }
      tl.secs += seconds_since(start);
      tl.rss = std::max(tl.rss, peak_rss());
    }
  }
  return matmul_sum / static_cast<double>(parts.size());
}

// The straightforward method holds scores and probabilities [H, T, T] and full logits [T, vocab]
// at once: "" where that fits in memory, else why it is skipped (it would be killed).
std::string baseline_fits(const Bench& b, const std::vector<int64_t>& lengths) {
  const int64_t longest = *std::max_element(lengths.begin(), lengths.end());
  const double need = 3.0 * b.c.num_attention_heads * double(longest) * longest * 4 +
                      2.0 * double(longest) * b.c.vocab_size * 4 + param_bytes(b.m);
  const double have = b.dev.is_cpu() ? double(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE) : 1e30;
  if (need < 0.8 * have) return "";
  char buf[128];
  std::snprintf(buf, sizeof(buf), "skipped: needs about %.1f GB, the machine has %.1f GB", need / 1e9, have / 1e9);
  return buf;
}

std::vector<ScoreBenchRow> run_workload(const Bench& b, const std::vector<int64_t>& lengths, ScoreBenchEvents& events) {
  const bool short_workload = b.opt.workload == "short";
  const auto samples = make_samples(lengths, b.c.vocab_size, b.opt.seed + 7);
  const auto warm_sample = make_samples({std::min<int64_t>(lengths[0], 512)}, b.c.vocab_size, b.opt.seed + 9);
  const int64_t rounds = std::max<int64_t>(
      1, short_workload ? std::min<int64_t>(b.opt.rounds, static_cast<int64_t>(samples.size())) : b.opt.rounds);
  std::vector<std::vector<const Sample*>> parts(rounds);
  for (int64_t r = 0; r < rounds; ++r) {
    const size_t lo = short_workload ? samples.size() * r / rounds : 0;
    const size_t hi = short_workload ? samples.size() * (r + 1) / rounds : samples.size();
    for (size_t i = lo; i < hi; ++i) parts[r].push_back(&samples[i]);
  }
  // Both methods in the run's dtype; for bf16 on a CPU, both in fp32 as well.
  std::vector<Tally> tally(b.fp32 ? 4 : 2);
  for (size_t i = 0; i < tally.size(); ++i) {
    tally[i].air = i % 2 == 1;
    tally[i].fp32 = i >= 2;
    if (!tally[i].air) tally[i].not_run = b.opt.baseline ? baseline_fits(b, lengths) : "not run";
  }
  const double mm = measure(b, parts, {&warm_sample[0]}, tally);
  // Work: each token in both passes (a long sample again in every round).
  int64_t tokens = 0;
  double flops = 0, air_done = 0;
  for (int64_t T : lengths) {
    tokens += T;
    flops += 2 * forward_flops(b.c, T);
  }
  for (const Sample& s : samples) air_done += air_flops(b.c, s, b.heads.first_layer());
  const int64_t repeats = short_workload ? 1 : rounds;
  std::vector<ScoreBenchRow> rows;
  for (size_t method = 0; method < tally.size(); ++method) {
    const Tally& tl = tally[method];
    const Tally& base = tally[method & ~size_t{1}];  // the straightforward method in the same dtype
    ScoreBenchRow r;
    r.workload = short_workload ? std::to_string(lengths.size()) + " x 100-400" : "1 x " + std::to_string(lengths[0]);
    r.method = tl.air ? "air" : "straightforward";
    r.dtype = dtype_name(tl.fp32 ? at::kFloat : b.dtype);
    r.not_run = tl.not_run;
    r.rounds = rounds;
    r.tokens = tokens * repeats;
    r.matmul_gflops = mm;
    r.chip_gflops = b.chip_gflops;
    if (!r.not_run.empty() && r.not_run != "not run") events.row(r);
    if (!r.not_run.empty()) continue;
    r.seconds = tl.secs;
    r.tokens_per_s = static_cast<double>(r.tokens) / tl.secs;
    r.gflops = flops * static_cast<double>(repeats) / tl.secs / 1e9;
    r.executed_gflops = (tl.air ? air_done : flops) * static_cast<double>(repeats) / tl.secs / 1e9;
    r.peak_rss_bytes = tl.rss;
    r.compared = tl.air && base.not_run.empty();
    if (r.compared) {
      for (size_t i = 0; i < tl.scores.size(); ++i)
        r.max_score_diff = std::max(r.max_score_diff, std::abs(tl.scores[i] - base.scores[i]));
      r.ratio = r.tokens_per_s / (static_cast<double>(r.tokens) / base.secs);
      if (r.max_score_diff > 1e-4 && (tl.fp32 || b.dtype == at::kFloat))
        events.warn("scores of the two methods differ by " + std::to_string(r.max_score_diff) + " (> 1e-4)");
    }
    // bf16 on a CPU: air in bf16 against the straightforward method in fp32 (what a plain PyTorch
    // user runs there), and its ranking against air's own fp32 scores.
    if (b.fp32 && tl.air && !tl.fp32 && tally[3].not_run.empty()) {
      if (tally[2].not_run.empty()) r.ratio_fp32 = r.tokens_per_s / (static_cast<double>(r.tokens) / tally[2].secs);
      r.spearman = spearman(tl.scores, tally[3].scores);
      r.step_spearman = spearman(tl.steps, tally[3].steps);
      r.top_overlap = top_overlap(tl.scores, tally[3].scores, 0.1);
      std::vector<double> dev(tl.scores.size());
      for (size_t i = 0; i < dev.size(); ++i) dev[i] = tl.scores[i] - tally[3].scores[i];
      const double spread = std_dev(tally[3].scores);
      if (spread > 0) {  // not one sample repeated
        r.score_spread = spread;
        r.bf16_deviation = std_dev(dev);
      }
    }
    events.row(r);
    rows.push_back(r);
  }
  return rows;
}

nlohmann::json row_json(const ScoreBenchRow& r) {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  nlohmann::json j{{"workload", r.workload}, {"method", r.method}, {"dtype", r.dtype}, {"rounds", r.rounds}, {"tokens", r.tokens},
          {"seconds", r.seconds}, {"tokens_per_s", r.tokens_per_s}, {"gflops", r.gflops},
          {"executed_gflops", r.executed_gflops}, {"matmul_gflops", r.matmul_gflops}, {"chip_gflops", r.chip_gflops},
          {"peak_rss_bytes", r.peak_rss_bytes}, {"max_score_diff", r.max_score_diff}, {"ratio", r.ratio}};
  if (r.ratio_fp32 > 0) j["ratio_to_straightforward_fp32"] = r.ratio_fp32;
  if (!std::isnan(r.spearman) || !std::isnan(r.top_overlap))
    j["agreement_with_air_fp32"] = {{"sample_spearman", num(r.spearman)}, {"step_spearman", num(r.step_spearman)},
                                    {"top10_overlap", num(r.top_overlap)}, {"fp32_score_spread", num(r.score_spread)},
                                    {"bf16_deviation", num(r.bf16_deviation)}};
  return j;
}

}  // namespace

nlohmann::json run_score_bench(const ScoreBenchOptions& opt, ScoreBenchEvents& events) {
  if (opt.workload != "short" && opt.workload != "long")
    throw OptionError("workload", option_name("workload") + " '" + opt.workload + "': expected short or long");
  if (opt.workload == "short" && opt.samples < 1)
    throw OptionError("samples", option_name("samples") + " must be >= 1, got " + std::to_string(opt.samples));
  if (opt.workload == "long" && opt.long_lengths.empty())
    throw OptionError("long_lengths", option_name("long_lengths") + ": give at least one length");
  for (int64_t T : opt.long_lengths)
    if (opt.workload == "long" && T < 8)
      throw OptionError("long_lengths", option_name("long_lengths") + ": each length must be >= 8, got " + std::to_string(T));
  if (opt.rounds < 1) throw OptionError("rounds", option_name("rounds") + " must be >= 1");
  if (!opt.lengths_from.empty()) check_input_file({"corpus (" + option_name("lengths_from") + ")", opt.lengths_from});
  if (const std::string note = set_threads(opt.runtime.threads); !note.empty()) events.warn(note);
  ModelConfig c = shape_config(opt.shape);
  c.torch_dtype = "bfloat16";
  const c10::Device dev = opt.runtime.device;
  const at::ScalarType dtype = resolve_dtype(opt.runtime.dtype, dev, c);
  use_exact_fp32(dev, dtype);
  c10::InferenceMode guard;
  const MatmulRate rate(c, dev, dtype);
  Bench b{opt, c, dev, dtype, random_model(c, dev, dtype, opt.seed), bench_heads(c, opt.seed), rate, chip_rate(dev, dtype)};
  // The same weights in fp32, for the fp32 methods beside bf16 (not with the baseline off: then
  // air runs alone, in bf16, and its peak memory is its own).
  if (dev.is_cpu() && dtype == at::kBFloat16 && opt.baseline) b.fp32 = random_model(c, dev, at::kFloat, opt.seed);
  ScoreBenchSetup s{opt.shape, dev.str(), dtype_name(dtype), at::get_num_threads(), static_cast<int64_t>(b.heads.size()),
                    opt.rounds, param_bytes(b.m), MatmulRate::kRows, c.hidden_size, c.intermediate_size,
                    rate.measure(), b.chip_gflops};
  moe_share(b.m, dev, opt.batch_tokens, s);
  events.started(s);
  std::vector<std::vector<int64_t>> workloads;
  if (opt.workload == "short") workloads.push_back(corpus_lengths(opt));
  else for (int64_t T : opt.long_lengths) workloads.push_back({T});
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& lengths : workloads)
    for (const ScoreBenchRow& r : run_workload(b, lengths, events)) rows.push_back(row_json(r));
  nlohmann::json report{{"shape", opt.shape}, {"device", s.device}, {"dtype", s.dtype}, {"threads", s.threads},
                        {"attention", opt.explicit_attention ? "explicit" : "auto"}, {"libtorch", build_info().torch_version},
                        {"rounds", opt.rounds}, {"weights_bytes", s.weights_bytes}, {"rows", rows}};
  if (s.moe_block_share >= 0)
    report["moe"] = {{"tokens", s.moe_tokens}, {"block_share", s.moe_block_share}, {"expert_matmul_share", s.expert_matmul_share}};
  if (!opt.json_out.empty()) {
    OutputFile f(opt.json_out);
    f.stream() << report.dump(2) << "\n";
    f.commit();
  }
  return report;
}

TokenizerBenchResult run_tokenizer_bench(const TokenizerBenchOptions& opt) {
  if (opt.repeat < 1) throw OptionError("repeat", option_name("repeat") + " must be >= 1");
  check_input_file({"corpus (" + option_name("data") + ")", opt.data});
  const auto tok = load_tokenizer(opt.tokenizer);
  TokenizerBenchResult r;
  r.kind = tok->kind();
  std::vector<std::string> texts;
  for_each_line(opt.data, [&](const std::string& line, int64_t n) {
    const nlohmann::json j = parse_json_line(line, opt.data + ":" + std::to_string(n));
    std::string text;
    for (const auto& [k, v] : j.items())
      if (v.is_string()) text += (text.empty() ? "" : "\n") + v.get<std::string>();
    r.bytes += text.size();
    texts.push_back(std::move(text));
  });
  r.texts = texts.size();
  r.best_seconds = 1e30;
  for (int pass = 0; pass < opt.repeat; ++pass) {
    r.tokens = 0;
    const auto t0 = Clock::now();
    for (const auto& t : texts) r.tokens += tok->encode(t, false).ids.size();
    const double s = seconds_since(t0);
    if (pass == 0) r.first_seconds = s;
    r.best_seconds = std::min(r.best_seconds, s);
  }
  return r;
}

}  // namespace air
