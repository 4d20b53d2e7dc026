#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace air {

// The model families `air` runs; all are Llama-shaped decoders.
enum class Architecture {
  kLlama, kMistral, kQwen2, kQwen3, kOlmo2, kPhi3, kGemma2, kGemma3, kMixtral, kQwen2Moe, kQwen3Moe
};

// The MLP's activation (config.json "hidden_act", Gemma's "hidden_activation").
enum class Activation { kSilu, kGeluTanh, kGelu };

// HF architecture names accepted in config.json's "architectures".
const std::vector<std::string>& supported_architectures();

// Rotary position embedding frequency scaling (config.json "rope_scaling").
struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3, kLongRope };
  Type type = Type::kNone;
  double factor = 1.0;                         // linear and llama3
  double low_freq_factor = 1.0;                // llama3
  double high_freq_factor = 4.0;               // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3, longrope
  // longrope (Phi-3): each rotary frequency divided by short_factor[i] for sequences of at most
  // original_max_position_embeddings tokens, by long_factor[i] for longer ones, and cos and sin
  // multiplied by attention_factor.
  std::vector<double> short_factor, long_factor;
  double attention_factor = 1.0;
};

// Everything the model needs from config.json, checked for consistency.
struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  std::string architecture_name;   // as in config.json, e.g. "Qwen2ForCausalLM"
  std::string model_type;          // e.g. "qwen2"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;   // query heads per layer
  int64_t num_key_value_heads = 0;   // kv heads per layer (GQA when fewer than query heads)
  int64_t head_dim = 0;              // explicit, or hidden_size / num_attention_heads
  int64_t rotary_dim = 0;            // leading dims of each head that rotate (partial_rotary_factor), even
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;  // lm_head shares embed_tokens.weight
  bool qkv_bias = false;             // q/k/v projections carry a bias (Qwen2, attention_bias)
  bool o_bias = false;               // o_proj carries a bias (attention_bias)
  bool mlp_bias = false;             // gate/up/down projections carry a bias
  bool qk_norm = false;              // RMSNorm on q and k before RoPE: per head (Qwen3), or ...
  bool qk_norm_whole = false;        // ... over the whole q and k projections (OLMo 2)
  bool post_norms = false;           // norms on each sublayer's output before the residual add, none on its input (OLMo 2)
  bool norm_weight_in_float = false; // norms multiply by their weight in fp32, then cast back (OLMo 2)
  bool fused_projections = false;    // qkv_proj and gate_up_proj tensors in the checkpoint (Phi-3)
  int64_t sliding_window = 0;        // attend to the last N keys only (0 = full causal)
  int64_t max_window_layers = 0;     // Qwen2/3: layers >= this use the sliding window
  std::vector<bool> sliding_layers;  // Gemma: the layers with the window (empty: see window_for_layer)
  std::string torch_dtype;           // "float32", "bfloat16", "float16" or empty

  // Gemma 2 and 3.
  Activation activation = Activation::kSilu;
  bool norm_unit_offset = false;     // RMSNorm scales by 1 + weight, in float32
  bool sandwich_norms = false;       // norms on each sublayer's input and on its output
  bool embed_scale = false;          // embeddings times sqrt(hidden_size), rounded to the weights' dtype
  double attention_scale = 0;        // scores times this (query_pre_attn_scalar^-0.5); 0 = head_dim^-0.5
  double attn_softcap = 0;           // attention logits cap * tanh(s / cap) before the mask (0 = none)
  double final_softcap = 0;          // the same on the output logits
  double rope_local_theta = 0;       // Gemma 3: sliding layers' RoPE base, without scaling (0 = none)

  // Sparse mixture-of-experts (Mixtral, Qwen2-MoE, Qwen3-MoE).
  int64_t num_experts = 0;           // experts per sparse layer (0 = dense model)
  int64_t experts_per_token = 0;     // top-k
  int64_t moe_intermediate_size = 0; // each expert's width
  int64_t shared_expert_intermediate_size = 0;  // Qwen2-MoE's shared expert (0 = none)
  bool norm_topk_prob = false;       // the top-k routing weights renormalised to sum 1
  int64_t decoder_sparse_step = 1;   // layer i is sparse when (i + 1) % step == 0 ...
  std::vector<int64_t> mlp_only_layers;  // ... and it is not listed here

  // Keys visible to layer `layer` (0 = all causal keys).
  int64_t window_for_layer(int64_t layer) const;
  // Whether layer `layer` uses the local RoPE base (Gemma 3's sliding layers).
  bool local_rope_layer(int64_t layer) const;
  // Whether layer `layer`'s MLP is a sparse mixture of experts.
  bool sparse_layer(int64_t layer) const;
  // Mixtral names its MoE block and experts' projections its own way.
  bool mixtral_names() const { return architecture == Architecture::kMixtral; }
  // Parameters the model holds (weights, norms; biases left out): sizes its memory.
  int64_t parameter_count() const;
};

// Parses config.json text; `where` names the file in errors (CheckpointError).
ModelConfig parse_model_config(const std::string& json_text, const std::string& where);
// Reads and parses DIR/config.json.
ModelConfig load_model_config(const std::filesystem::path& model_dir);

}  // namespace air
