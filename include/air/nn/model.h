#pragma once

// Llama-shaped decoders (Llama, Mistral, Qwen2/3, OLMo 2, Phi-3, Gemma 2/3, and the sparse
// mixture-of-experts Mixtral, Qwen2-MoE and Qwen3-MoE) as libtorch modules. Submodules and
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
  // Attention on the explicit, blocked path even where libtorch's fused kernel applies (the
  // tests compare the two; the fused path needs libtorch 2.1 or later).
  bool explicit_attention = false;
  // Called after each layer (nullptr = none): a long batch's progress, and where a stop request
  // may end it (by throwing).
  const std::function<void()>* after_layer = nullptr;
};

// Whether this build has the fused attention path (libtorch 2.1 or later).
bool fused_attention_compiled();

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
  // unit_offset: the scale is 1 + weight, in float32 (Gemma).
  RMSNormImpl(int64_t dim, double eps, bool weight_in_float = false, bool unit_offset = false);
  at::Tensor forward(const at::Tensor& x) const;
  at::Tensor weight;  // [dim]
  double eps;
  bool weight_in_float;
  bool unit_offset;
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
  Rope rope_local;               // Gemma 3's sliding layers' tables (else undefined)
  bool padded() const { return N != B * T; }
  // The same layout with its tensors on `device`.
  Layout to(const c10::Device& device) const;
};

struct AttentionImpl : torch::nn::Module {
  AttentionImpl(const ModelConfig& c, int64_t layer);
  // x: packed [N, hidden] -> [N, hidden]
  at::Tensor forward(const at::Tensor& x, const Layout& lay, const ForwardOptions& opt) const;

  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};  // Qwen3, Gemma 3 (per head), OLMo 2 (whole projection)
  int64_t layer, num_heads, num_kv_heads, head_dim, window;
  double scale;    // on q k^T
  double softcap;  // attention logits cap * tanh(s / cap) before the mask (0 = none)
  bool qk_norm_whole = false;
  bool local_rope = false;  // Layout::rope_local, not Layout::rope
};
TORCH_MODULE(Attention);

// down(act(gate x) * up x). Mixtral's experts name gate, up and down w1, w3 and w2.
struct MLPImpl : torch::nn::Module {
  MLPImpl(const ModelConfig& c, int64_t intermediate, bool mixtral_names = false);
  at::Tensor forward(const at::Tensor& x) const;
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
  Activation activation;
};
TORCH_MODULE(MLP);

// Experts registered as "0", "1", ... (HF's experts.N).
struct ExpertListImpl : torch::nn::Module {
  ExpertListImpl(const ModelConfig& c);
  std::vector<MLP> items;
};
TORCH_MODULE(ExpertList);

// A sparse mixture-of-experts block: the router's logits and softmax in float32, each token to
// its top-k experts (weights renormalised when norm_topk_prob), the experts run grouped: the
// tokens sorted by expert, one matmul per expert. Qwen2-MoE adds a shared expert scaled by
// sigmoid(shared_expert_gate x).
struct SparseMoeImpl : torch::nn::Module {
  SparseMoeImpl(const ModelConfig& c);
  at::Tensor forward(const at::Tensor& x) const;  // [N, hidden] -> [N, hidden]
  // [N, num_experts] routing weights (0 off the top-k), in float32: for tests and inspection.
  at::Tensor routing(const at::Tensor& x) const;
  Linear gate{nullptr};
  ExpertList experts{nullptr};
  MLP shared_expert{nullptr};
  Linear shared_expert_gate{nullptr};
  int64_t top_k;
  bool norm_topk;
};
TORCH_MODULE(SparseMoe);

struct DecoderLayerImpl : torch::nn::Module {
  DecoderLayerImpl(const ModelConfig& c, int64_t layer);
  // x: packed [N, hidden] -> [N, hidden]
  at::Tensor forward(const at::Tensor& x, const Layout& lay, const ForwardOptions& opt) const;
  at::Tensor mlp_blocks(at::Tensor h, const std::function<at::Tensor(const at::Tensor&)>& f) const;
  at::Tensor feed_forward(const at::Tensor& x) const;  // the MLP or the experts
  Attention self_attn{nullptr};
  MLP mlp{nullptr};        // dense layers
  SparseMoe moe{nullptr};  // sparse layers (HF's mlp, or Mixtral's block_sparse_moe)
  // Norms around each sublayer (null = none), under HF's names by family:
  //   Llama & co: attn_in input_layernorm, mlp_in post_attention_layernorm;
  //   OLMo 2:     attn_out post_attention_layernorm, mlp_out post_feedforward_layernorm;
  //   Gemma:      all four (input_layernorm, post_attention_layernorm, pre_feedforward_layernorm,
  //               post_feedforward_layernorm). An output norm acts before the residual add.
  RMSNorm attn_in{nullptr}, attn_out{nullptr}, mlp_in{nullptr}, mlp_out{nullptr};
  int64_t ffn_width = 0;  // intermediate activations per token, for blocking
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
  at::Tensor inv_freq_local; // Gemma 3's sliding layers' (else undefined)
  // Each layer's device when the model is split over several (empty: all on one); run_layers
  // moves the hidden states and the layout where a layer's device changes.
  std::vector<c10::Device> layer_device;
};

// cap * tanh(z / cap) in place when cap > 0 (Gemma's soft-capping); returns z.
at::Tensor& softcap_(at::Tensor& z, double cap);
TORCH_MODULE(CausalLM);

// RoPE inverse frequencies for the config, scaling applied: [rotary_dim / 2] float32;
// `long_factors` picks LongRoPE's long factors.
at::Tensor rope_inv_freq(const ModelConfig& c, bool long_factors = false);
// Plain inverse frequencies 1 / theta^(2i / d) over `dim` rotary dims.
at::Tensor plain_inv_freq(double theta, int64_t dim);

}  // namespace air::nn
