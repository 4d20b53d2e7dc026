// Parity against HuggingFace transformers' own modeling code: per-token losses (plain and with
// heads made uniform) and attention argmaxes, from tests/data/fixtures (computed elsewhere).

#include "air/runtime.h"
#include "air/score_files.h"
#include "air/scorer.h"
#include "air/error.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <numeric>
#include <random>
#include <set>

namespace air::test {
namespace {

// Collects full attention maps [H, T, T] per layer for a batch of one.
class RecordingObserver : public nn::AttentionObserver {
 public:
  RecordingObserver(int64_t layers, int64_t T) : maps_(layers), T_(T) {}
  void observe(int64_t layer, int64_t q0, const at::Tensor& probs) override {
    if (!maps_[layer].defined()) maps_[layer] = at::zeros({probs.size(1), T_, T_});
    maps_[layer].narrow(1, q0, probs.size(2)).narrow(2, 0, probs.size(3)).copy_(probs[0]);
  }
  const at::Tensor& map(int64_t layer) const { return maps_[layer]; }

 private:
  std::vector<at::Tensor> maps_;
  int64_t T_;
};

struct Case {
  std::string name;
  fs::path model;
  fs::path expected;
};

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (const char* f : {"llama", "mistral", "qwen2", "qwen2-tied", "qwen3", "olmo2", "phi3", "phi3-longrope", "gemma2",
                        "gemma3", "mixtral", "qwen2-moe", "qwen3-moe"})
    cases.push_back({f, fixture_dir(f), fixture_dir(f) / "expected.json"});
  cases.push_back({"stories260K", model_dir("stories260K"),
                   fixture_dir("stories260K-expected.json")});
  return cases;
}

at::Tensor losses_of(const LoadedModel& m, const std::vector<int64_t>& ids,
                     const nn::ForwardOptions& opt = {}) {
  c10::InferenceMode guard;
  at::Tensor x = at::tensor(ids, at::TensorOptions().dtype(at::kLong)).unsqueeze(0);
  return m.model->next_token_stats(x, {static_cast<int64_t>(ids.size())}, opt)[0].logprob.neg();
}

at::Tensor to_tensor(const nlohmann::json& a) {
  return at::tensor(a.get<std::vector<double>>(), at::TensorOptions().dtype(at::kDouble))
      .to(at::kFloat);
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a - b).abs().max().item<double>();
}

class ParityTest : public ::testing::TestWithParam<Case> {};

TEST_P(ParityTest, PlainLossesMatchHuggingFace) {
  const Case& c = GetParam();
  const LoadedModel m = load_model(c.model, test_runtime());
  const auto expected = read_json(c.expected);
  ASSERT_FALSE(expected["cases"].empty());
  for (const auto& ex : expected["cases"]) {
    const auto ids = ex["ids"].get<std::vector<int64_t>>();
    const double d = max_abs_diff(losses_of(m, ids), to_tensor(ex["per_token_loss"]));
    EXPECT_LT(d, 1e-4) << c.name << " T=" << ids.size();
  }
}

TEST_P(ParityTest, MaskedHeadLossesMatchHuggingFace) {
  const Case& c = GetParam();
  const LoadedModel m = load_model(c.model, test_runtime());
  const auto expected = read_json(c.expected);
  int checked = 0;
  for (const auto& ex : expected["cases"]) {
    const auto ids = ex["ids"].get<std::vector<int64_t>>();
    const at::Tensor plain = losses_of(m, ids);
    for (const auto& masked : ex["masked"]) {
      std::vector<Head> heads;
      for (const auto& h : masked["heads"]) heads.push_back({h[0].get<int64_t>(), h[1].get<int64_t>()});
      const HeadSet set(heads);
      nn::ForwardOptions opt;
      opt.uniform_heads = &set;
      const at::Tensor got = losses_of(m, ids, opt);
      const at::Tensor want = to_tensor(masked["per_token_loss"]);
      EXPECT_LT(max_abs_diff(got, want), 1e-4) << c.name << " heads " << set.to_string();
      // The masking must matter, or this comparison proves nothing.
      EXPECT_GT(max_abs_diff(plain, want), 1e-3) << c.name << " heads " << set.to_string();
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

TEST_P(ParityTest, AttentionArgmaxMatchesHuggingFace) {
  const Case& c = GetParam();
  const LoadedModel m = load_model(c.model, test_runtime());
  const auto expected = read_json(c.expected);
  const int64_t L = m.checkpoint.config().num_hidden_layers;
  int64_t compared = 0, mismatched = 0;
  for (const auto& ex : expected["cases"]) {
    const auto ids = ex["ids"].get<std::vector<int64_t>>();
    const int64_t T = static_cast<int64_t>(ids.size());
    RecordingObserver obs(L, T);
    nn::ForwardOptions opt;
    opt.observer = &obs;
    opt.query_chunk = 7;  // several blocks, so the observer sees chunked queries
    losses_of(m, ids, opt);
    for (int64_t l = 0; l < L; ++l) {
      const at::Tensor& map = obs.map(l);  // [H, T, T]
      for (int64_t h = 0; h < map.size(0); ++h) {
        for (int64_t t = 0; t < T; ++t) {
          const int64_t want = ex["attn_argmax"][l][h][t].get<int64_t>();
          at::Tensor row = map[h][t];
          // Skip near-ties: the top two probabilities within 1e-4 of each other.
          at::Tensor top = std::get<0>(row.topk(std::min<int64_t>(2, t + 1)));
          if (t > 0 && (top[0] - top[1]).item<float>() < 1e-4) continue;
          ++compared;
          if (row.argmax().item<int64_t>() != want) ++mismatched;
          EXPECT_NEAR(row[want].item<float>(), ex["attn_max_prob"][l][h][t].get<float>(), 1e-4);
        }
      }
    }
  }
  EXPECT_GT(compared, 0);
  EXPECT_EQ(mismatched, 0) << c.name << ": " << mismatched << " of " << compared;
}

// The model of a case in `dtype` (on the test device).
LoadedModel load_in(const Case& c, at::ScalarType dtype) {
  RuntimeOptions rt = test_runtime();
  rt.dtype = dtype;
  return load_model(c.model, rt);
}

TEST_P(ParityTest, Bf16StaysCloseToFp32) {
  const Case& c = GetParam();
  const LoadedModel fp32 = load_in(c, at::kFloat), bf16 = load_in(c, at::kBFloat16);
  ASSERT_EQ(bf16.model->output_weight().scalar_type(), at::kBFloat16);
  const auto expected = read_json(c.expected);
  const bool moe = fp32.checkpoint.config().num_experts > 0;
  for (const auto& ex : expected["cases"]) {
    const auto ids = ex["ids"].get<std::vector<int64_t>>();
    const at::Tensor a = losses_of(fp32, ids), b = losses_of(bf16, ids);
    EXPECT_EQ(b.scalar_type(), at::kFloat);
    EXPECT_TRUE(b.isfinite().all().item<bool>());
    if (moe) {
      // bf16 hidden states flip routes whose top-k probabilities nearly tie (the router itself
      // runs in fp32), which moves single losses by tenths: the deviation is measured and
      // reported, with only a bound on the mean.
      std::printf("[ bf16 MoE ] %s T=%zu: mean |bf16 - fp32| %.4f, max %.4f, mean loss %.4f vs %.4f\n",
                  c.name.c_str(), ids.size(), (a - b).abs().mean().item<double>(), max_abs_diff(a, b),
                  b.mean().item<double>(), a.mean().item<double>());
      EXPECT_LT((a - b).abs().mean().item<double>(), 0.25) << c.name;
      continue;
    }
    // bf16 rounds logits of magnitude ~10 to steps of 1/16, so single tokens can move by more;
    // the sequence's mean loss and the typical token must stay within 5e-2.
    EXPECT_LT(std::abs(a.mean().item<double>() - b.mean().item<double>()), 5e-2) << c.name;
    EXPECT_LT((a - b).abs().mean().item<double>(), 5e-2) << c.name;
    EXPECT_LT(max_abs_diff(a, b), 0.25) << c.name;
  }
}

// bf16 ranks samples as fp32 does: the sample scores of 48 samples (half with a response that
// repeats a span of its prompt, half fresh tokens; two steps each), scored with two heads of the
// middle layer made uniform, agree by rank (Spearman, and how many of the top quarter are shared),
// not value by value. A bf16 path that loses precision where it matters (norms, softmax
// statistics, the loss head) ranks them differently.
TEST_P(ParityTest, Bf16RanksSamplesAsFp32) {
  const Case& c = GetParam();
  const LoadedModel fp32 = load_in(c, at::kFloat), bf16 = load_in(c, at::kBFloat16);
  const ModelConfig& cfg = fp32.checkpoint.config();
  const int64_t L = cfg.num_hidden_layers;
  const HeadSet heads({{L / 2, 0}, {L / 2, std::min<int64_t>(1, cfg.num_attention_heads - 1)}});
  std::mt19937_64 rng(5);
  std::vector<Sample> samples(48);
  for (size_t i = 0; i < samples.size(); ++i) {
    Sample& s = samples[i];
    const int64_t prompt = 24 + static_cast<int64_t>(rng() % 24), response = 16 + static_cast<int64_t>(rng() % 24);
    for (int64_t t = 0; t < prompt; ++t) s.ids.push_back(3 + static_cast<int64_t>(rng() % (cfg.vocab_size - 3)));
    for (int64_t t = 0; t < response; ++t)
      s.ids.push_back(i % 2 == 0 ? s.ids[static_cast<size_t>(t % prompt)] : 3 + static_cast<int64_t>(rng() % (cfg.vocab_size - 3)));
    s.prompt_tokens = prompt;
    s.steps = {{0, 1, 0, response / 2}, {1, 2, response / 2, response}};
  }
  std::vector<const Sample*> ptrs;
  for (const auto& s : samples) ptrs.push_back(&s);
  const Scorer a(fp32.model, heads, {}), b(bf16.model, heads, {});
  std::vector<double> sa, sb;
  for (const auto& r : a.score(ptrs)) sa.push_back(r.influence.score);
  for (const auto& r : b.score(ptrs)) sb.push_back(r.influence.score);
  const double rho = spearman(sa, sb);
  auto top = [](const std::vector<double>& v, size_t k) {
    std::vector<size_t> idx(v.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](size_t x, size_t y) { return v[x] > v[y]; });
    return std::set<size_t>(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k));
  };
  const auto ta = top(sa, 12), tb = top(sb, 12);
  size_t shared = 0;
  for (size_t i : ta) shared += tb.count(i);
  std::printf("[ bf16 ranks ] %s: Spearman %.4f, top-12 shared %zu\n", c.name.c_str(), rho, shared);
  // Measured: dense families 0.986-0.997 with 11-12 shared; mixtures of experts 0.88-0.96 (bf16
  // hidden states flip near-tied routes, the router itself is fp32).
  const bool moe = cfg.num_experts > 0;
  EXPECT_GE(rho, moe ? 0.85 : 0.98) << c.name;
  EXPECT_GE(shared, moe ? 8u : 10u) << c.name;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ParityTest, ::testing::ValuesIn(all_cases()),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           for (char& ch : n)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

// A Phi-3 checkpoint whose fused tensors or LongRoPE factors do not fit its config is refused,
// naming the tensor or field, expected and got.
class FusedCheckpointTest : public TempDirTest {};

TEST_F(FusedCheckpointTest, WrongFusedShapesAndFactorsAreNamed) {
  const fs::path dir = copy_fixture("phi3", "p");
  nlohmann::json c = read_json(dir / "config.json");
  c["num_key_value_heads"] = 4;  // qkv_proj then needs (4 + 2 x 4) x 16 rows, the file has (4 + 2 x 2) x 16
  write_text(dir / "config.json", c.dump());
  try {
    load_model(dir.string(), test_runtime());
    ADD_FAILURE() << "a wrong fused qkv_proj loaded";
  } catch (const CheckpointError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("model.layers.0.self_attn.qkv_proj.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("[128, 64]"), std::string::npos) << m;  // what the file holds
    EXPECT_NE(m.find("[192, 64]"), std::string::npos) << m;  // what the config implies
  }
  const fs::path lr = copy_fixture("phi3-longrope", "l");
  nlohmann::json l = read_json(lr / "config.json");
  l["rope_scaling"]["long_factor"].erase(0);
  write_text(lr / "config.json", l.dump());
  try {
    load_model(lr.string(), test_runtime());
    ADD_FAILURE() << "short LongRoPE factors loaded";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("long_factor need 6 entries"), std::string::npos) << e.what();
  }
}

// Broken Gemma and MoE checkpoints are refused, naming the tensor or field, expected and got.
TEST_F(FusedCheckpointTest, BrokenGemmaAndMoeCheckpointsAreNamed) {
  auto refused = [&](const fs::path& dir, std::vector<std::string> parts) {
    try {
      load_model(dir.string(), test_runtime());
      ADD_FAILURE() << dir << " loaded";
    } catch (const CheckpointError& e) {
      for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  };
  // A soft-cap of the wrong type.
  const fs::path g = copy_fixture("gemma2", "g");
  nlohmann::json gc = read_json(g / "config.json");
  gc["attn_logit_softcapping"] = "5.0";
  write_text(g / "config.json", gc.dump());
  refused(g, {"attn_logit_softcapping", "expected a number", "\"5.0\""});
  // A missing expert tensor (the file is rewritten without it).
  const fs::path m = copy_fixture("mixtral", "m");
  const std::string gone = "model.layers.2.block_sparse_moe.experts.5.w3.weight";
  std::vector<RawTensor> kept;
  for (auto& t : read_raw_tensors(m / "model.safetensors"))
    if (t.name != gone) kept.push_back(std::move(t));
  write_safetensors(m / "model.safetensors", kept);
  refused(m, {gone, "missing"});
  // More experts per token than experts.
  const fs::path q = copy_fixture("qwen3-moe", "q");
  nlohmann::json qc = read_json(q / "config.json");
  qc["num_experts_per_tok"] = 9;
  write_text(q / "config.json", qc.dump());
  refused(q, {"num_experts_per_tok", "[1, 8]", "9"});
  // A router with the wrong number of experts.
  const fs::path r = copy_fixture("qwen2-moe", "r");
  nlohmann::json rc = read_json(r / "config.json");
  rc["num_experts"] = 6;
  write_text(r / "config.json", rc.dump());
  refused(r, {"model.layers.0.mlp.gate.weight", "[4, 64]", "[6, 64]"});
}

// The grouped experts compute what a plain loop over tokens and their top-k experts computes,
// and the routing follows the config (top-k, renormalised or not).
TEST(MoeTest, GroupedExpertsEqualThePerTokenLoop) {
  for (const char* name : {"mixtral", "qwen2-moe", "qwen3-moe"}) {
    c10::InferenceMode guard;
    const LoadedModel m = load_model(fixture_dir(name), test_runtime());
    const ModelConfig& c = m.checkpoint.config();
    int64_t layer = 0;
    while (!c.sparse_layer(layer)) ++layer;
    const auto& moe = m.model->model->layers->items[layer]->moe;
    ASSERT_TRUE(moe) << name;
    const at::Tensor x = at::randn({37, c.hidden_size}, at::TensorOptions().dtype(at::kFloat));
    const at::Tensor route = moe->routing(x);  // [N, E]
    EXPECT_EQ((route > 0).sum(1).eq(c.experts_per_token).all().item<bool>(), true) << name;
    const at::Tensor sums = route.sum(1);
    if (c.norm_topk_prob) EXPECT_LT((sums - 1).abs().max().item<double>(), 1e-6) << name;
    else EXPECT_LT(sums.max().item<double>(), 1.0 - 1e-6) << name;  // un-renormalised top-k of a softmax
    at::Tensor want = at::zeros_like(x);
    for (int64_t t = 0; t < x.size(0); ++t)
      for (int64_t e = 0; e < c.num_experts; ++e) {
        const double w = route[t][e].item<double>();
        if (w > 0) want[t] += moe->experts->items[e]->forward(x[t].unsqueeze(0))[0] * w;
      }
    if (moe->shared_expert)
      want += at::sigmoid(moe->shared_expert_gate->forward(x)) * moe->shared_expert->forward(x);
    EXPECT_LT((moe->forward(x) - want).abs().max().item<double>(), 1e-5) << name;
  }
}

}  // namespace
}  // namespace air::test
