// `air bench score`: air score's path against the straightforward method (each sample alone,
// two independent full forward passes with materialised attention probabilities and full
// logits), on random-weight models of realistic shapes, in one process.

#include "air/error.h"
#include "air/runtime.h"
#include "air/scorer.h"
#include "air/tokenizer.h"
#include "cli/bench.h"
#include "cli/cli.h"
#include "cli/io.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/cuda.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>

#include <dlfcn.h>
#include <malloc.h>
#include <unistd.h>

namespace air::cli {
namespace {

struct ScoreBenchOptions {
  std::string shape = "small";          // small | qwen2.5-0.5b | qwen2.5-1.5b
  std::string workload = "short";       // short | long
  int64_t samples = 256;                // short workload: samples
  std::string lengths_from;             // JSONL corpus whose token lengths the short workload uses
  std::string tokenizer = "models/stories260K";  // tokenizer for those lengths
  std::vector<int64_t> long_lengths = {1024, 4096, 16384};
  bool baseline = true;                 // also run the straightforward method
  int64_t rounds = 2;                   // methods alternate: short = slices, long = repeats
  int64_t batch_tokens = 8192;
  uint64_t seed = 0;
  std::string json_out;                 // also write the table as JSON
  RuntimeOptions runtime;
};

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
  } else {
    throw UsageError("--shape '" + name + "': expected small, qwen2.5-0.5b or qwen2.5-1.5b");
  }
  c.head_dim = c.hidden_size / c.num_attention_heads;
  return c;
}

nn::CausalLM random_model(const ModelConfig& c, const c10::Device& dev, at::ScalarType dtype, uint64_t seed) {
  at::manual_seed(seed);
  nn::CausalLM m(c);
  for (auto& p : m->named_parameters()) {
    const std::string& name = p.key();
    const auto o = at::TensorOptions().device(dev);
    at::Tensor t;
    if (name.find("norm") != std::string::npos) t = at::ones(p.value().sizes(), o);
    else if (name.find("bias") != std::string::npos) t = at::zeros(p.value().sizes(), o);
    else t = at::randn(p.value().sizes(), o) * 0.02;
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
  const double d = c.hidden_size, H = c.num_attention_heads, Hkv = c.num_key_value_heads,
               Dh = c.head_dim, I = c.intermediate_size;
  const double per_token = 2 * d * (H * Dh + 2 * Hkv * Dh) + 2 * H * Dh * d + 2 * 3 * d * I;
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

std::vector<double> air_path(const nn::CausalLM& m, const std::vector<const Sample*>& samples,
                             const HeadSet& heads, int64_t batch_tokens) {
  ScoreOptions so;
  so.batch_tokens = batch_tokens;
  const Scorer scorer(m, heads, so);
  std::vector<double> out;
  for (const auto& r : scorer.score(samples)) out.push_back(r.influence.score);
  return out;
}

std::vector<Sample> make_samples(const std::vector<int64_t>& lengths, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Sample> out;
  for (int64_t T : lengths) {
    Sample s;
    s.ids.resize(T);
    for (auto& x : s.ids) x = static_cast<int64_t>(rng() % vocab);
    s.prompt_tokens = std::max<int64_t>(1, T / 4);
    s.steps = {{0, 1, 0, T - s.prompt_tokens}};
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<int64_t> corpus_lengths(const ScoreBenchOptions& opt) {
  std::vector<int64_t> lengths;
  if (!opt.lengths_from.empty()) {
    const auto tok = load_tokenizer(opt.tokenizer);
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

void run_score_bench(const ScoreBenchOptions& opt) {
  set_threads(opt.runtime.threads);
  const c10::Device dev = parse_device(opt.runtime.device);
  ModelConfig c = shape_config(opt.shape);
  c.torch_dtype = "bfloat16";
  const at::ScalarType dtype = resolve_dtype(opt.runtime.dtype, dev, c);
  use_exact_fp32(dev, dtype);
  c10::InferenceMode guard;
  const nn::CausalLM m = random_model(c, dev, dtype, opt.seed);
  // Critical set: 5% of heads, spread over the upper half of the model.
  std::vector<Head> hv;
  const int64_t total = c.num_hidden_layers * c.num_attention_heads;
  std::mt19937_64 rng(opt.seed);
  while (static_cast<int64_t>(hv.size()) < std::max<int64_t>(1, total / 20))
    hv.push_back({c.num_hidden_layers / 2 + static_cast<int64_t>(rng() % (c.num_hidden_layers - c.num_hidden_layers / 2)),
                  static_cast<int64_t>(rng() % c.num_attention_heads)});
  const HeadSet heads(hv);

  // Plain matmul rate of the model's own MLP shape, same device, dtype and threads, timed for
  // about a second; measured again in every round, so that a row is divided by the rate the
  // machine gave while that row ran.
  const int64_t N = 2048;
  at::Tensor a = at::randn({N, c.hidden_size}).to(dev, dtype), w = at::randn({c.intermediate_size, c.hidden_size}).to(dev, dtype);
  at::linear(a, w);
  sync(dev);
  auto matmul_rate = [&] {
    int reps = 0;
    const auto start = Clock::now();
    while (seconds_since(start) < 1.0 || reps < 3) {
      at::linear(a, w);
      sync(dev);
      ++reps;
    }
    return 2.0 * N * c.hidden_size * c.intermediate_size * reps / seconds_since(start) / 1e9;
  };
  const double matmul_gflops = matmul_rate();
  // On a GPU, also the chip's own rate: a large square matmul in the same dtype.
  double chip_gflops = 0;
  if (dev.is_cuda()) {
    const int64_t S = 8192;
    at::Tensor x = at::randn({S, S}, at::TensorOptions().dtype(dtype).device(dev));
    for (int i = 0; i < 3; ++i) at::mm(x, x);
    sync(dev);
    const auto t0 = Clock::now();
    for (int i = 0; i < 10; ++i) at::mm(x, x);
    sync(dev);
    chip_gflops = 2.0 * S * S * S * 10 / seconds_since(t0) / 1e9;
  }

  std::vector<std::vector<int64_t>> workloads;
  if (opt.workload == "short") workloads.push_back(corpus_lengths(opt));
  else for (int64_t T : opt.long_lengths) workloads.push_back({T});

  std::printf("model %s (random weights, %.0f MB), device %s, dtype %s, threads %d, critical heads %zu, rounds %lld\n",
              opt.shape.c_str(), param_bytes(m) / 1e6, dev.str().c_str(), dtype_name(dtype).c_str(),
              at::get_num_threads(), heads.size(), (long long)opt.rounds);
  std::printf("plain matmul [%lld x %lld] x [%lld x %lld]: %.1f GFLOP/s\n", (long long)N,
              (long long)c.hidden_size, (long long)c.hidden_size, (long long)c.intermediate_size, matmul_gflops);
  if (chip_gflops > 0) std::printf("chip matmul [8192 x 8192] x [8192 x 8192]: %.1f GFLOP/s\n", chip_gflops);
  std::printf("%-18s %-15s %10s %9s %10s %9s %10s %8s %12s %9s\n", "workload", "method", "tokens",
              "seconds", "tokens/s", "GFLOP/s", "of matmul", "executed", "peak RSS MB", "max |d|");
  nlohmann::json report = nlohmann::json::array();
  for (const auto& lengths : workloads) {
    const auto samples = make_samples(lengths, c.vocab_size, opt.seed + 7);
    int64_t tokens = 0;
    double flops = 0, air_done = 0;
    for (int64_t T : lengths) {
      tokens += T;
      flops += 2 * forward_flops(c, T);  // base and reference passes
    }
    for (const Sample& s : samples) air_done += air_flops(c, s, heads.first_layer());
    const std::string name = opt.workload == "short"
                                 ? std::to_string(lengths.size()) + " x 100-400"
                                 : "1 x " + std::to_string(lengths[0]);
    // Warm-up (kernel loading, allocator) on one short sample, untimed.
    const auto warm_sample = make_samples({std::min<int64_t>(lengths[0], 512)}, c.vocab_size, opt.seed + 9);
    const std::vector<const Sample*> warm = {&warm_sample[0]};
    // The straightforward method holds scores and probabilities [H, T, T] and full logits
    // [T, vocab] at once: skip it where that cannot fit in memory (it would be killed).
    int64_t longest = 0;
    for (int64_t T : lengths) longest = std::max(longest, T);
    const double need = 3.0 * c.num_attention_heads * double(longest) * longest * 4 +
                        2.0 * double(longest) * c.vocab_size * 4 + param_bytes(m);
    const double have = dev.is_cpu() ? double(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE) : 1e30;
    const bool run_baseline = opt.baseline && need < 0.8 * have;
    if (opt.baseline && !run_baseline)
      std::printf("%-18s %-15s skipped: needs about %.1f GB, the machine has %.1f GB\n", name.c_str(),
                  "straightforward", need / 1e9, have / 1e9);

    // Rounds: the methods alternate, each round on its own slice of the samples (short
    // workload) or on the sample again (long), so that a machine whose speed drifts during
    // the run (a shared host) weighs on both methods alike.
    const int64_t rounds = std::max<int64_t>(1, opt.workload == "short" ? std::min<int64_t>(opt.rounds, samples.size())
                                                                     : opt.rounds);
    std::vector<std::vector<const Sample*>> parts(rounds);
    for (int64_t r = 0; r < rounds; ++r) {
      const bool slice = opt.workload == "short";
      const size_t lo = slice ? samples.size() * r / rounds : 0;
      const size_t hi = slice ? samples.size() * (r + 1) / rounds : samples.size();
      for (size_t i = lo; i < hi; ++i) parts[r].push_back(&samples[i]);
    }
    if (opt.workload != "short") {
      tokens *= rounds;
      flops *= rounds;
      air_done *= rounds;
    }
    struct Tally {
      double secs = 0;
      int64_t rss = -1;
      std::vector<double> scores;
      bool failed = false;
    } tally[2];
    if (!run_baseline) tally[0].failed = true;
    double matmul_sum = 0;
    for (int method = 0; method < 2; ++method) {
      if (tally[method].failed) continue;
      if (method == 0) straightforward(m, warm, heads);
      else air_path(m, warm, heads, opt.batch_tokens);
    }
    for (int64_t r = 0; r < rounds; ++r) {
      matmul_sum += matmul_rate();
      for (int method = 0; method < 2; ++method) {
        Tally& tl = tally[method];
        if (tl.failed) continue;
        sync(dev);
        release_free_memory();
        reset_peak_rss();
        const auto start = Clock::now();
        try {
          const auto sc = method == 0 ? straightforward(m, parts[r], heads)
                                      : air_path(m, parts[r], heads, opt.batch_tokens);
          sync(dev);
          tl.scores.insert(tl.scores.end(), sc.begin(), sc.end());
        } catch (const std::exception& e) {  // the baseline can run out of memory on long inputs
          std::printf("%-18s %-15s failed: %.120s\n", name.c_str(), method == 0 ? "straightforward" : "air", e.what());
          tl.failed = true;
          continue;
        }
        tl.secs += seconds_since(start);
        tl.rss = std::max(tl.rss, peak_rss());
      }
    }
    const double mm = matmul_sum / rounds;
    double base_tps = 0;
    for (int method = 0; method < 2; ++method) {
      const Tally& tl = tally[method];
      if (tl.failed) continue;
      // Effective rate: the straightforward method's work over this method's time (the two
      // compare as tokens/s do). Executed rate: the work this method actually did.
      const double tps = tokens / tl.secs, gflops = flops / tl.secs / 1e9;
      const double done_gflops = (method == 0 ? flops : air_done) / tl.secs / 1e9;
      const bool compared = method == 1 && !tally[0].failed;
      double maxd = 0;
      if (method == 0) base_tps = tps;
      else if (compared)
        for (size_t i = 0; i < tl.scores.size(); ++i) maxd = std::max(maxd, std::abs(tl.scores[i] - tally[0].scores[i]));
      std::printf("%-18s %-15s %10lld %9.2f %10.1f %9.1f %9.0f%% %7.0f%% %12.0f", name.c_str(),
                  method == 0 ? "straightforward" : "air", (long long)tokens, tl.secs, tps, gflops,
                  100 * gflops / mm, 100 * done_gflops / mm, tl.rss / 1e6);
      if (compared) std::printf(" %9.1e  ratio %.2fx", maxd, tps / base_tps);
      if (chip_gflops > 0) std::printf("  %.1f%% of chip", 100 * gflops / chip_gflops);
      std::printf("\n");
      std::fflush(stdout);
      report.push_back({{"workload", name}, {"method", method == 0 ? "straightforward" : "air"},
                        {"rounds", rounds}, {"tokens", tokens}, {"seconds", tl.secs}, {"tokens_per_s", tps},
                        {"gflops", gflops}, {"executed_gflops", done_gflops},
                        {"matmul_gflops", mm}, {"chip_gflops", chip_gflops}, {"peak_rss_bytes", tl.rss},
                        {"max_score_diff", maxd}, {"ratio", compared ? tps / base_tps : 0.0}});
      if (compared && maxd > 1e-4 && dtype == at::kFloat)
        spdlog::error("scores of the two methods differ by {:.2e} (> 1e-4)", maxd);
    }
  }
  if (!opt.json_out.empty()) {
    OutputFile f(opt.json_out);
    f.stream() << nlohmann::json{{"shape", opt.shape}, {"device", dev.str()}, {"dtype", dtype_name(dtype)},
                                 {"threads", at::get_num_threads()}, {"rounds", opt.rounds}, {"weights_bytes", param_bytes(m)},
                                 {"rows", report}}.dump(2) << "\n";
    f.commit();
  }
}

}  // namespace

void register_score_bench(CLI::App& bench) {
  auto opt = std::make_shared<ScoreBenchOptions>();
  CLI::App* b = bench.add_subcommand("score", "air score's path against the straightforward method");
  b->add_option("--shape", opt->shape, "small, qwen2.5-0.5b or qwen2.5-1.5b")->capture_default_str();
  b->add_option("--workload", opt->workload, "short (many 100-400 token samples) or long")->capture_default_str();
  b->add_option("--samples", opt->samples, "short workload: samples")->capture_default_str();
  b->add_option("--lengths-from", opt->lengths_from, "short workload: take token lengths from this JSONL corpus");
  b->add_option("--tokenizer", opt->tokenizer, "tokenizer for --lengths-from")->capture_default_str();
  b->add_option("--lengths", opt->long_lengths, "long workload: sequence lengths");
  b->add_flag("--no-baseline{false}", opt->baseline, "skip the straightforward method");
  b->add_option("--rounds", opt->rounds,
                "the methods alternate in this many rounds: slices of the short workload, repeats of a long sample")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1000}));
  b->add_option("--batch-tokens", opt->batch_tokens, "air path: padded tokens per batch")->capture_default_str();
  b->add_option("--seed", opt->seed, "weights and inputs seed")->capture_default_str();
  b->add_option("--json", opt->json_out, "also write the results as JSON");
  add_runtime_flags(*b, opt->runtime);
  b->callback([opt] { run_score_bench(*opt); });
}

}  // namespace air::cli
