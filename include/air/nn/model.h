#pragma once

// Llama-family decoder (Llama, Mistral, Qwen2, Qwen3) as libtorch modules. Submodules and
// parameters carry HuggingFace's names, so named_parameters() keys are checkpoint keys
// (model.layers.3.self_attn.q_proj.weight). The forward is a pure function of its inputs and
// ForwardOptions: no module holds "masking enabled" state.

#include "air/config.h"
#include "air/head_set.h"

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <functional>
#include <vector>

namespace air::nn {

// Sees attention probabilities as the forward computes them (llama.cpp's cb_eval idea): the
// model does not know who watches. Called for each layer in order, once per query block.
class AttentionObserver {
 public:
  virtual ~AttentionObserver() = default;
  // probs: [B, H, Tq, Tk] float32, rows sum to 1; queries query_start..query_start+Tq-1 over
  // keys 0..Tk-1 (Tk = query_start + Tq; keys after the query have probability 0).
  virtual void observe(int64_t layer, int64_t query_start, const at::Tensor& probs) = 0;
};

// Per-call options of the forward pass; defaults give the plain model.
struct ForwardOptions {
  // Heads whose attention is made uniform over the visible keys, AIR's weakened reference
  // model (AIR-METHOD.md §3) (nullptr or empty = none).
  const HeadSet* uniform_heads = nullptr;
  // Receives every layer's attention probabilities (nullptr = none; forces the explicit path).
  AttentionObserver* observer = nullptr;
  // Queries per attention block, bounding the [B, H, Tq, T] score tensor (0 = automatic).
  int64_t query_chunk = 0;
};

// Next-token statistics of one sequence, float32 on the CPU.
struct NextTokenStats {
  at::Tensor logprob;  // [len-1]: log p(ids[k+1] | ids[0..k])
  at::Tensor entropy;  // [len-1]: entropy of p(. | ids[0..k]) in nats (undefined unless asked)
};

struct LinearImpl : torch::nn::Module {
  LinearImpl(int64_t in, int64_t out, bool bias);
  at::Tensor forward(const at::Tensor& x) const;
  at::Tensor weight;  // [out, in]
  at::Tensor bias;    // [out] or undefined
};
TORCH_MODULE(Linear);

struct EmbeddingImpl : torch::nn::Module {
  EmbeddingImpl(int64_t vocab, int64_t dim);
  at::Tensor forward(const at::Tensor& ids) const;
  at::Tensor weight;  // [vocab, dim]
};
TORCH_MODULE(Embedding);

// RMSNorm over the last dimension, computed in float32 and cast back (as HF does).
struct RMSNormImpl : torch::nn::Module {
  // weight_in_float: the weight multiplies in float32 before the cast back (OLMo 2), not after.
  RMSNormImpl(int64_t dim, double eps, bool weight_in_float = false);
  at::Tensor forward(const at::Tensor& x) const;
  at::Tensor weight;  // [dim]
  double eps;
  bool weight_in_float;
};
TORCH_MODULE(RMSNorm);

// Rotary tables, one row per token.
struct Rope {
  at::Tensor cos;  // [N, 1, rotary_dim], model dtype
  at::Tensor sin;  // [N, 1, rotary_dim], model dtype
};

// Where the real tokens of a right-padded [B, T] batch are. Everything but attention runs on
// the N real tokens packed as rows of [N, hidden], so padding does no work in the weight
// matmuls; attention scatters them into [B, heads, T, head_dim] and gathers its output back.
struct Layout {
  int64_t B = 0, T = 0, N = 0;
  std::vector<int64_t> lengths;  // real tokens of row b (at most T)
  std::vector<int64_t> offsets;  // packed index of token (b, 0)
  at::Tensor flat;               // [N] int64 on the model's device: b * T + t; undefined unless padded
  Rope rope;                     // rotary tables of the packed tokens' positions
  bool padded() const { return N != B * T; }
};

struct AttentionImpl : torch::nn::Module {
  AttentionImpl(const ModelConfig& c, int64_t layer);
  // x: packed [N, hidden] -> [N, hidden]
  at::Tensor forward(const at::Tensor& x, const Layout& lay, const ForwardOptions& opt) const;

  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};  // Qwen3 (per head), OLMo 2 (whole projection)
  int64_t layer, num_heads, num_kv_heads, head_dim, window;
  bool qk_norm_whole = false;
};
TORCH_MODULE(Attention);

struct MLPImpl : torch::nn::Module {
  MLPImpl(const ModelConfig& c);
  at::Tensor forward(const at::Tensor& x) const;
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(MLP);

struct DecoderLayerImpl : torch::nn::Module {
  DecoderLayerImpl(const ModelConfig& c, int64_t layer);
  // x: packed [N, hidden] -> [N, hidden]
  at::Tensor forward(const at::Tensor& x, const Layout& lay, const ForwardOptions& opt) const;
  at::Tensor mlp_blocks(at::Tensor h, const std::function<at::Tensor(const at::Tensor&)>& f) const;
  Attention self_attn{nullptr};
  MLP mlp{nullptr};
  // Before each sublayer: input_layernorm (attention), post_attention_layernorm (MLP). With
  // post_norms (OLMo 2), after each sublayer instead: post_attention_layernorm (attention),
  // post_feedforward_layernorm (MLP).
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr}, post_feedforward_layernorm{nullptr};
  bool post_norms = false;
};
TORCH_MODULE(DecoderLayer);

// The decoder stack registered as "0", "1", ... (HF's model.layers.N).
struct LayerListImpl : torch::nn::Module {
  LayerListImpl(const ModelConfig& c);
  std::vector<DecoderLayer> items;
};
TORCH_MODULE(LayerList);

struct DecoderImpl : torch::nn::Module {
  DecoderImpl(const ModelConfig& c);
  Embedding embed_tokens{nullptr};
  LayerList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(Decoder);

struct CausalLMImpl : torch::nn::Module {
  explicit CausalLMImpl(const ModelConfig& c);

  // ids: [B, T] int64, sequences right-padded (padding never influences real positions:
  // attention is causal). Returns the final-norm hidden states [B, T, hidden].
  at::Tensor hidden_states(const at::Tensor& ids, const ForwardOptions& opt = {}) const;

  // Full logits [B, T, vocab] in float32. Memory grows with T x vocab: for inspection and tests.
  at::Tensor logits(const at::Tensor& ids, const ForwardOptions& opt = {}) const;

  // Per-sequence next-token log-probabilities (and entropies when `entropy`) for the first
  // lengths[b] tokens of row b; log-softmax in float32 over position blocks, never the whole
  // [B, T, vocab] at once.
  std::vector<NextTokenStats> next_token_stats(const at::Tensor& ids,
                                               const std::vector<int64_t>& lengths,
                                               const ForwardOptions& opt = {},
                                               bool entropy = false) const;

  // The forward in stages, so that callers can share a prefix of layers between passes:
  // layout -> embed -> run_layers(h, 0, L) -> final norm inside stats_from_hidden.
  // Layout of a [B, T] batch whose row b holds lengths[b] real tokens (empty: all T).
  Layout layout(int64_t B, int64_t T, const std::vector<int64_t>& lengths = {}) const;
  // The same for ids [B, T] (throws unless ids has two dimensions).
  Layout layout_of(const at::Tensor& ids, const std::vector<int64_t>& lengths = {}) const;
  at::Tensor embed(const at::Tensor& ids, const Layout& lay) const;  // [B, T] -> packed [N, hidden]
  // Layers [begin, end) on packed h: [N, hidden].
  at::Tensor run_layers(at::Tensor h, int64_t begin, int64_t end, const Layout& lay,
                        const ForwardOptions& opt) const;
  // Final norm and next-token statistics from the last layer's packed output h: [N, hidden].
  // `starts` (optional, per row): positions before starts[b] are not scored, and row b's
  // statistics cover positions [starts[b], lengths[b] - 1).
  std::vector<NextTokenStats> stats_from_hidden(const at::Tensor& h, const at::Tensor& ids,
                                                const Layout& lay, bool entropy,
                                                const std::vector<int64_t>& starts = {}) const;

  // lm_head.weight, or embed_tokens.weight when tied. [vocab, hidden]
  const at::Tensor& output_weight() const;

  ModelConfig config;
  Decoder model{nullptr};
  Linear lm_head{nullptr};  // null when tie_word_embeddings
  at::Tensor inv_freq;      // [rotary_dim / 2] float32 (buffer, not a checkpoint tensor)
  at::Tensor inv_freq_long; // LongRoPE's, for sequences longer than the original context (else undefined)
};
TORCH_MODULE(CausalLM);

// RoPE inverse frequencies for the config, scaling applied: [rotary_dim / 2] float32;
// `long_factors` picks LongRoPE's long factors.
at::Tensor rope_inv_freq(const ModelConfig& c, bool long_factors = false);

}  // namespace air::nn
