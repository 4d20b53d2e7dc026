// Invariants of the forward pass that hold whatever the weights: uniform heads are exactly
// uniform and touch nothing else, padding and batching change nothing, blocked attention and
// chunked loss equal the plain computation.

#include "air/batching.h"
#include "air/runtime.h"
#include "nn/logit_stats.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/version.h>

namespace air::test {
namespace {

class Recorder : public nn::AttentionObserver {
 public:
  explicit Recorder(int64_t layers) : maps(layers) {}
  void observe(int64_t layer, int64_t q0, const at::Tensor& probs) override {
    const int64_t T = q0 + probs.size(2);
    if (!maps[layer].defined() || maps[layer].size(2) < T) {
      at::Tensor m = at::zeros({probs.size(0), probs.size(1), T, T});
      if (maps[layer].defined())
        m.narrow(2, 0, maps[layer].size(2)).narrow(3, 0, maps[layer].size(3)).copy_(maps[layer]);
      maps[layer] = m;
    }
    maps[layer].narrow(2, q0, probs.size(2)).narrow(3, 0, probs.size(3)).copy_(probs);
  }
  std::vector<at::Tensor> maps;  // per layer [B, H, T, T]
};

at::Tensor random_ids(int64_t vocab, int64_t T, uint64_t seed) {
  at::manual_seed(seed);
  return at::randint(vocab, {1, T}, at::TensorOptions().dtype(at::kLong));
}

// Five random sequences (29, 4, 17, 1 and 29 tokens) right-padded into one batch.
struct PaddedBatch {
  at::Tensor ids;
  std::vector<int64_t> lengths;
};
PaddedBatch padded_random_batch(uint64_t seed) {
  std::vector<std::vector<int64_t>> seqs;
  for (int64_t T : {29, 4, 17, 1, 29}) {
    const at::Tensor ids = random_ids(1000, T, seed + T + seqs.size());
    seqs.emplace_back(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + T);
  }
  PaddedBatch b;
  for (const auto& s : seqs) b.lengths.push_back(static_cast<int64_t>(s.size()));
  b.ids = pad_right(seqs, {0, 1, 2, 3, 4}, 5);
  return b;
}

// An observer that keeps nothing: it only forces the explicit attention path.
class NoObserver : public nn::AttentionObserver {
  void observe(int64_t, int64_t, const at::Tensor&) override {}
};

class InvariantTest : public ::testing::Test {
 protected:
  // fp32: the invariants are exact there (the fixture is a bf16 checkpoint, which auto would run in
  // bf16 on a CPU that computes it natively).
  void SetUp() override { m_ = load_model(fixture_dir("llama"), test_runtime()); }
  LoadedModel m_;
  c10::InferenceMode guard_;
};

TEST_F(InvariantTest, UniformHeadIsExactlyUniformAndTouchesNothingElse) {
  const int64_t T = 37, L = 4;
  const at::Tensor ids = random_ids(1000, T, 1);
  const HeadSet heads = HeadSet::parse("1:2");  // shares kv head 1 with query head 3
  Recorder plain(L), masked(L);
  nn::ForwardOptions o;
  o.observer = &plain;
  m_.model->hidden_states(ids, o);
  o.observer = &masked;
  o.uniform_heads = &heads;
  m_.model->hidden_states(ids, o);

  const at::Tensor probs = masked.maps[1][0][2];  // [T, T]
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < T; ++j) {
      const float want = j <= t ? 1.0f / static_cast<float>(t + 1) : 0.0f;
      ASSERT_EQ(probs[t][j].item<float>(), want) << "t=" << t << " j=" << j;
    }
  }
  // Earlier layers, and the other heads of the masked layer, are bit-identical.
  EXPECT_TRUE(plain.maps[0].equal(masked.maps[0]));
  for (int64_t h : {0, 1, 3}) EXPECT_TRUE(plain.maps[1][0][h].equal(masked.maps[1][0][h])) << h;
  // Later layers see a different residual stream.
  EXPECT_FALSE(plain.maps[2].allclose(masked.maps[2]));
}

TEST_F(InvariantTest, UniformHeadRespectsSlidingWindow) {
  nn::CausalLM windowed = load_causal_lm(m_.checkpoint, c10::kCPU, at::kFloat);
  windowed->model->layers->items[0]->self_attn->window = 5;  // layer 0 windowed only
  const at::Tensor ids = random_ids(1000, 20, 2);
  const HeadSet heads = HeadSet::parse("0:1");
  Recorder rec(4);
  nn::ForwardOptions o;
  o.observer = &rec;
  o.uniform_heads = &heads;
  windowed->hidden_states(ids, o);
  const at::Tensor p = rec.maps[0][0];  // [H, T, T]
  for (int64_t t = 0; t < 20; ++t) {
    const int64_t n = std::min<int64_t>(t + 1, 5);
    for (int64_t j = 0; j < 20; ++j) {
      const bool visible = j <= t && t - j < 5;
      EXPECT_EQ(p[1][t][j].item<float>(), visible ? 1.0f / n : 0.0f);
      if (!visible) EXPECT_EQ(p[0][t][j].item<float>(), 0.0f);
    }
  }
}

TEST_F(InvariantTest, RunningMeanOfValuesEqualsUniformSoftmax) {
  // Without an observer the critical heads' output is the running mean of the values and they
  // stay out of the score matmuls; with one they go through the softmax with a zeroed query.
  // Both must give the same model, for a head sharing its kv group, a whole kv group, a whole
  // layer, on padded batches and on a windowed layer.
  nn::CausalLM windowed = load_causal_lm(m_.checkpoint, c10::kCPU, at::kFloat);
  windowed->model->layers->items[1]->self_attn->window = 6;
  const PaddedBatch batch = padded_random_batch(40);
  const at::Tensor& ids = batch.ids;
  const std::vector<int64_t>& lengths = batch.lengths;
  NoObserver nothing;
  for (const nn::CausalLM* model : {&m_.model, &windowed}) {
    for (const char* spec : {"1:2", "1:2,1:3", "1:0,1:1,1:2,1:3", "0:1,1:0,3:3", "0:0,0:1,0:2,0:3,2:1"}) {
      const HeadSet heads = HeadSet::parse(spec);
      nn::ForwardOptions direct, softmax;
      direct.uniform_heads = softmax.uniform_heads = &heads;
      softmax.observer = &nothing;
      const auto a = (*model)->next_token_stats(ids, lengths, direct);
      const auto b = (*model)->next_token_stats(ids, lengths, softmax);
      const auto plain = (*model)->next_token_stats(ids, lengths);
      for (size_t r = 0; r < a.size(); ++r) {
        if (!a[r].logprob.numel()) continue;
        EXPECT_LT((a[r].logprob - b[r].logprob).abs().max().item<double>(), 1e-5) << spec << " row " << r;
        if (lengths[r] > 2)  // the masked heads do change the model
          EXPECT_GT((a[r].logprob - plain[r].logprob).abs().max().item<double>(), 1e-4) << spec << " row " << r;
      }
    }
  }
}

TEST_F(InvariantTest, Bf16FusedAttentionMatchesAtenSoftmax) {
  // In bf16 on a CPU the attention probabilities come from one fused kernel; with an observer
  // they come from ATen's masked float32 softmax. Same model, within bf16 rounding, on padded
  // batches, in query blocks, causal and windowed. The queries are sharpened so that attention
  // is peaked and a key seen or missed in error moves the losses (by about 2 nats here).
  auto sharp = [&](int64_t window) {
    nn::CausalLM m = load_causal_lm(m_.checkpoint, c10::kCPU, at::kBFloat16);
    for (auto& layer : m->model->layers->items) {
      layer->self_attn->q_proj->weight.mul_(24);
      if (window) layer->self_attn->window = window;
    }
    return m;
  };
  const PaddedBatch batch = padded_random_batch(70);
  const at::Tensor& ids = batch.ids;
  const std::vector<int64_t>& lengths = batch.lengths;
  NoObserver nothing;
  for (int64_t window : {0, 6}) {
    const nn::CausalLM m = sharp(window);
    for (int64_t chunk : {0, 5}) {
      nn::ForwardOptions fused, aten;
      fused.query_chunk = aten.query_chunk = chunk;
      fused.explicit_attention = true;  // the CPU kernel, not libtorch's fused attention (2.x)
      aten.observer = &nothing;
      const auto a = m->next_token_stats(ids, lengths, fused);
      const auto b = m->next_token_stats(ids, lengths, aten);
      for (size_t r = 0; r < a.size(); ++r) {
        ASSERT_EQ(a[r].logprob.numel(), b[r].logprob.numel());
        if (!a[r].logprob.numel()) continue;
        EXPECT_TRUE(at::isfinite(a[r].logprob).all().item<bool>());
        EXPECT_LT((a[r].logprob - b[r].logprob).abs().max().item<double>(), 0.05)
            << "window " << window << " chunk " << chunk << " row " << r;
      }
    }
  }
}

TEST_F(InvariantTest, PaddingAndBatchCompositionDoNotChangeLosses) {
  std::vector<std::vector<int64_t>> seqs;
  for (int64_t T : {5, 31, 2, 17, 31, 1}) {
    const at::Tensor ids = random_ids(1000, T, 10 + T + seqs.size());
    seqs.emplace_back(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + T);
  }
  std::vector<int64_t> lengths;
  for (const auto& s : seqs) lengths.push_back(static_cast<int64_t>(s.size()));
  const HeadSet heads = HeadSet::parse("0:0,2:3");
  for (const HeadSet* hs : {static_cast<const HeadSet*>(nullptr), &heads}) {
    nn::ForwardOptions o;
    o.uniform_heads = hs;
    std::vector<at::Tensor> alone;
    for (size_t i = 0; i < seqs.size(); ++i)
      alone.push_back(m_.model->next_token_stats(pad_right(seqs, {i}), {lengths[i]}, o)[0].logprob);
    for (int64_t budget : {1, 40, 64, 1000}) {
      for (const auto& rows : plan_batches(lengths, budget)) {
        std::vector<int64_t> lens;
        for (size_t r : rows) lens.push_back(lengths[r]);
        const auto stats = m_.model->next_token_stats(pad_right(seqs, rows, 7), lens, o);
        for (size_t b = 0; b < rows.size(); ++b) {
          ASSERT_EQ(stats[b].logprob.numel(), std::max<int64_t>(0, lengths[rows[b]] - 1));
          if (stats[b].logprob.numel())
            EXPECT_LT((stats[b].logprob - alone[rows[b]]).abs().max().item<double>(), 1e-5);
        }
      }
    }
  }
}

TEST_F(InvariantTest, QueryBlocksAndFusedPathMatchOneBlock) {
  const at::Tensor ids = random_ids(1000, 50, 3);
  const at::Tensor plain = m_.model->logits(ids);  // fused attention on libtorch 2.x
  Recorder rec(4);
  for (int64_t chunk : {1, 7, 50}) {
    nn::ForwardOptions o;
    o.query_chunk = chunk;
    o.observer = &rec;  // forces the explicit, blocked path
    EXPECT_LT((m_.model->logits(ids, o) - plain).abs().max().item<double>(), 1e-5) << chunk;
  }
}

// libtorch's fused attention (2.1 and later) against the explicit path, on the layers it serves:
// causal and windowed (windows shorter than the sequence), grouped kv heads and not, whole
// sequences and query blocks, padded batches, and with heads made uniform (the fused path then
// runs on subsets of a layer's heads). Soft-capped layers (Gemma 2) always take the explicit path,
// so both options must give the same bits there.
TEST(FusedAttentionTest, MatchesTheExplicitPath) {
  if (!nn::fused_attention_compiled())
    GTEST_SKIP() << "libtorch " << TORCH_VERSION << " has no fused attention path (2.1 and later)";
  c10::InferenceMode guard;
  const PaddedBatch batch = padded_random_batch(90);
  const HeadSet heads = HeadSet::parse("0:1,1:0,1:1,2:3");  // a whole kv group, half of one, one head
  for (const char* fixture : {"llama", "olmo2", "gemma3", "phi3", "mistral", "gemma2"}) {
    for (int64_t window : {int64_t{0}, int64_t{5}}) {
      LoadedModel m = load_model(fixture_dir(fixture), test_runtime());
      int64_t windowed = 0;
      for (auto& layer : m.model->model->layers->items) {
        if (window) layer->self_attn->window = window;  // every layer windowed, shorter than the rows
        windowed += layer->self_attn->window > 0;
      }
      for (int64_t chunk : {int64_t{0}, int64_t{4}}) {
        for (const HeadSet* hs : {static_cast<const HeadSet*>(nullptr), &heads}) {
          nn::ForwardOptions fused, explicit_path;
          fused.query_chunk = explicit_path.query_chunk = chunk;
          fused.uniform_heads = explicit_path.uniform_heads = hs;
          explicit_path.explicit_attention = true;
          const auto a = m.model->next_token_stats(batch.ids, batch.lengths, fused);
          const auto b = m.model->next_token_stats(batch.ids, batch.lengths, explicit_path);
          for (size_t r = 0; r < a.size(); ++r) {
            ASSERT_EQ(a[r].logprob.numel(), b[r].logprob.numel());
            if (!a[r].logprob.numel()) continue;
            const double d = (a[r].logprob - b[r].logprob).abs().max().item<double>();
            const std::string where = std::string(fixture) + " window " + std::to_string(window) + " (" +
                                      std::to_string(windowed) + " windowed layers) chunk " + std::to_string(chunk) +
                                      (hs ? " uniform heads" : "") + " row " + std::to_string(r);
            if (std::string(fixture) == "gemma2")
              EXPECT_EQ(d, 0) << where;  // soft-capped: the explicit path either way
            else
              EXPECT_LT(d, 2e-5) << where;
          }
        }
      }
    }
  }
}

TEST_F(InvariantTest, ChunkedLossAndEntropyMatchFullLogits) {
  const at::Tensor ids = random_ids(1000, 40, 4);
  const at::Tensor logp = m_.model->logits(ids)[0].log_softmax(-1);  // [T, V]
  const at::Tensor want_lp =
      logp.narrow(0, 0, 39).gather(1, ids[0].narrow(0, 1, 39).unsqueeze(1)).squeeze(1);
  const at::Tensor want_ent = -(logp.exp() * logp).sum(-1).narrow(0, 0, 39);
  // The CPU head's blocks of rows and chunks of the vocabulary (one block and one chunk by
  // default here; uneven ones below), and ATen's reductions, the GPU's path.
  nn::LossHeadTuning& tune = nn::loss_head_tuning();
  const nn::LossHeadTuning saved = tune;
  for (const nn::LossHeadTuning t : {saved, nn::LossHeadTuning{7, 96, false},
                                     nn::LossHeadTuning{1, 999, false}, nn::LossHeadTuning{7, 96, true}}) {
    tune = t;
    const auto stats = m_.model->next_token_stats(ids, {40}, {}, /*entropy=*/true)[0];
    EXPECT_LT((stats.logprob - want_lp).abs().max().item<double>(), 1e-5) << t.rows << " " << t.cols << " " << t.aten;
    EXPECT_LT((stats.entropy - want_ent).abs().max().item<double>(), 1e-5) << t.rows << " " << t.cols << " " << t.aten;
    EXPECT_TRUE((stats.entropy > 0).all().item<bool>());
  }
  tune = saved;
}

TEST(BatchingTest, PlansRespectTheBudgetAndCoverEverySequenceOnce) {
  const std::vector<int64_t> lengths = {10, 3, 50, 7, 7, 120, 1, 0};
  for (int64_t budget : {1, 20, 64, 200, 10000}) {
    std::vector<int> seen(lengths.size(), 0);
    for (const auto& rows : plan_batches(lengths, budget)) {
      int64_t longest = 0;
      for (size_t r : rows) {
        ++seen[r];
        longest = std::max(longest, lengths[r]);
      }
      if (rows.size() > 1) EXPECT_LE(static_cast<int64_t>(rows.size()) * longest, budget);
    }
    for (int s : seen) EXPECT_EQ(s, 1);
  }
}

}  // namespace
}  // namespace air::test
