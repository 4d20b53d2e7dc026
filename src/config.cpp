#include "air/config.h"

#include "air/error.h"
#include "air/line_reader.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

namespace air {
namespace {

using nlohmann::json;

class Fields {
 public:
  Fields(const json& j, std::string where) : j_(j), where_(std::move(where)) {}

  bool has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }

  int64_t integer(const char* key) const {
    if (!has(key)) throw CheckpointError(where_ + ": missing field '" + key + "'");
    return integer_or(key, 0);
  }
  int64_t integer_or(const char* key, int64_t fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_[key];
    // Some exporters write integral values as floats (8192.0); those are accepted.
    if (v.is_number_float() && std::nearbyint(v.get<double>()) == v.get<double>() &&
        std::abs(v.get<double>()) < 9e15)
      return static_cast<int64_t>(v.get<double>());
    if (!v.is_number_integer())
      throw CheckpointError(where_ + ": field '" + key + "': expected an integer, got " +
                            v.dump());
    return v.get<int64_t>();
  }
  double number_or(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_[key];
    if (!v.is_number())
      throw CheckpointError(where_ + ": field '" + key + "': expected a number, got " + v.dump());
    return v.get<double>();
  }
  bool boolean_or(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_[key];
    if (!v.is_boolean())
      throw CheckpointError(where_ + ": field '" + key + "': expected true or false, got " +
                            v.dump());
    return v.get<bool>();
  }
  std::string string_or(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_[key];
    if (!v.is_string())
      throw CheckpointError(where_ + ": field '" + key + "': expected a string, got " + v.dump());
    return v.get<std::string>();
  }

 private:
  const json& j_;
  std::string where_;
};

const std::pair<const char*, Architecture> kArchitectures[] = {
    {"LlamaForCausalLM", Architecture::kLlama},     {"MistralForCausalLM", Architecture::kMistral},
    {"Qwen2ForCausalLM", Architecture::kQwen2},     {"Qwen3ForCausalLM", Architecture::kQwen3},
    {"Olmo2ForCausalLM", Architecture::kOlmo2},     {"Phi3ForCausalLM", Architecture::kPhi3},
    {"Gemma2ForCausalLM", Architecture::kGemma2},   {"Gemma3ForCausalLM", Architecture::kGemma3},
    {"MixtralForCausalLM", Architecture::kMixtral}, {"Qwen2MoeForCausalLM", Architecture::kQwen2Moe},
    {"Qwen3MoeForCausalLM", Architecture::kQwen3Moe}};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s;
}

// A value the model's arithmetic stays finite with: in [lo, hi], else a CheckpointError naming
// the field (1e-300 or 1e308 pass as positive numbers, then overflow the forward pass).
double bounded(double v, double lo, double hi, const std::string& field, const std::string& where) {
  if (std::isfinite(v) && v >= lo && v <= hi) return v;
  std::ostringstream o;
  o.precision(17);
  o << where << ": field '" << field << "' must be in [" << lo << ", " << hi << "] (outside it the model's "
    << "arithmetic overflows and every loss is not a number), got " << v;
  throw CheckpointError(o.str());
}

RopeScaling parse_rope_scaling(const json& j, const std::string& where) {
  RopeScaling r;
  if (j.is_null()) return r;
  const std::string at = where + ": rope_scaling";
  if (!j.is_object()) throw CheckpointError(at + ": expected an object or null, got " + j.dump());
  Fields f(j, at);
  // HF spells the kind "rope_type" (current) or "type" (older configs).
  const std::string type = f.string_or("rope_type", f.string_or("type", "default"));
  if (type == "default") return r;
  if (type == "linear") {
    r.type = RopeScaling::Type::kLinear;
    r.factor = f.number_or("factor", 0.0);
    if (r.factor <= 0) throw CheckpointError(at + ": linear scaling needs factor > 0");
    bounded(r.factor, 1e-6, 1e6, "rope_scaling.factor", where);
    return r;
  }
  if (type == "llama3") {
    r.type = RopeScaling::Type::kLlama3;
    r.factor = f.number_or("factor", 0.0);
    r.low_freq_factor = f.number_or("low_freq_factor", 1.0);
    r.high_freq_factor = f.number_or("high_freq_factor", 4.0);
    r.original_max_position_embeddings = f.integer_or("original_max_position_embeddings", 8192);
    if (r.factor <= 0 || r.high_freq_factor <= r.low_freq_factor ||
        r.original_max_position_embeddings <= 0)
      throw CheckpointError(at + ": llama3 scaling needs factor > 0, high_freq_factor > "
                                 "low_freq_factor and original_max_position_embeddings > 0, got " +
                            j.dump());
    bounded(r.factor, 1e-6, 1e6, "rope_scaling.factor", where);
    return r;
  }
  if (type == "longrope") {
    r.type = RopeScaling::Type::kLongRope;
    for (const auto& [key, into] : {std::pair{"short_factor", &r.short_factor}, std::pair{"long_factor", &r.long_factor}}) {
      if (!j.contains(key) || !j[key].is_array())
        throw CheckpointError(at + ": longrope needs a list '" + key + "'");
      for (const auto& v : j[key]) {
        if (!v.is_number() || !(v.get<double>() > 0))
          throw CheckpointError(at + ": " + key + ": expected positive numbers, got " + v.dump());
        into->push_back(bounded(v.get<double>(), 1e-6, 1e4, std::string("rope_scaling.") + key, where));
      }
    }
    r.attention_factor = bounded(f.number_or("attention_factor", 0.0), 0, 1e4, "rope_scaling.attention_factor", where);  // 0: from the context lengths
    r.original_max_position_embeddings = f.integer_or("original_max_position_embeddings", 0);
    return r;
  }
  throw CheckpointError(at + ": type '" + type +
                        "' is not supported (supported: none, linear, llama3, longrope)");
}

// Qwen-style windows: use_sliding_window, on layers from max_window_layers on.
bool qwen_windows(Architecture a) {
  return a == Architecture::kQwen2 || a == Architecture::kQwen3 || a == Architecture::kQwen2Moe ||
         a == Architecture::kQwen3Moe;
}

// A positive number, or the fallback when absent or null; anything else names the field.
double optional_positive(const Fields& f, const char* key, double fallback, const std::string& where) {
  const double v = f.number_or(key, fallback);
  if (!(v > 0) || !std::isfinite(v))
    throw CheckpointError(where + ": field '" + key + "' must be a positive number or null, got " + json(v).dump());
  return v;
}

// Gemma 2 and 3: norms, scaling, soft-caps, which layers slide, Gemma 3's local RoPE base. The
// defaults are HF's Gemma2Config / Gemma3TextConfig ones.
void parse_gemma(ModelConfig& c, const Fields& f, const json& j, const std::string& where) {
  const bool g3 = c.architecture == Architecture::kGemma3;
  c.norm_unit_offset = c.sandwich_norms = c.embed_scale = true;
  const double scalar = f.number_or("query_pre_attn_scalar", 256);
  if (!(scalar > 0)) throw CheckpointError(where + ": field 'query_pre_attn_scalar' must be > 0, got " + std::to_string(scalar));
  bounded(scalar, 1e-2, 1e12, "query_pre_attn_scalar", where);
  c.attention_scale = 1.0 / std::sqrt(scalar);
  // An explicit null means no soft-capping; absent means the family's default.
  auto cap = [&](const char* key, double fallback) {
    if (!j.contains(key)) return fallback;
    if (j[key].is_null()) return 0.0;
    return bounded(optional_positive(f, key, fallback, where), 1e-3, 1e6, key, where);
  };
  c.attn_softcap = cap("attn_logit_softcapping", g3 ? 0.0 : 50.0);
  c.final_softcap = cap("final_logit_softcapping", g3 ? 0.0 : 30.0);
  if (!j.contains("sliding_window")) c.sliding_window = 4096;
  else c.sliding_window = f.integer_or("sliding_window", 0);
  if (c.sliding_window < 0) throw CheckpointError(where + ": sliding_window must be >= 0");
  if (g3) c.rope_local_theta = bounded(optional_positive(f, "rope_local_base_freq", 10000.0, where), 1, 1e30, "rope_local_base_freq", where);
  c.sliding_layers.assign(static_cast<size_t>(c.num_hidden_layers), false);
  // Sliding layers need a window (HF would mask every key of them).
  auto check_window = [&] {
    if (c.sliding_window <= 0 && std::find(c.sliding_layers.begin(), c.sliding_layers.end(), true) != c.sliding_layers.end())
      throw CheckpointError(where + ": field 'sliding_window' must be >= 1: this config has sliding-window layers, got " +
                            (j.contains("sliding_window") ? j["sliding_window"].dump() : std::string("none")));
  };
  if (f.has("layer_types")) {  // newer configs list each layer's kind
    const json& types = j["layer_types"];
    if (!types.is_array() || static_cast<int64_t>(types.size()) != c.num_hidden_layers)
      throw CheckpointError(where + ": field 'layer_types': expected a list of " + std::to_string(c.num_hidden_layers) +
                            " entries (num_hidden_layers), got " + types.dump());
    for (size_t i = 0; i < types.size(); ++i) {
      const std::string t = types[i].is_string() ? types[i].get<std::string>() : types[i].dump();
      if (t != "sliding_attention" && t != "full_attention")
        throw CheckpointError(where + ": layer_types[" + std::to_string(i) +
                              "]: expected \"sliding_attention\" or \"full_attention\", got " + types[i].dump());
      c.sliding_layers[i] = t == "sliding_attention";
    }
    check_window();
    return;
  }
  const int64_t pattern = g3 ? f.integer_or("sliding_window_pattern", 6) : 2;
  if (pattern <= 0) throw CheckpointError(where + ": field 'sliding_window_pattern' must be >= 1, got " + std::to_string(pattern));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    c.sliding_layers[l] = g3 ? (l + 1) % pattern != 0 : l % 2 == 0;
  check_window();
}

// Sparse mixture-of-experts fields (HF's MixtralConfig, Qwen2MoeConfig and Qwen3MoeConfig defaults).
void parse_moe(ModelConfig& c, const Fields& f, const json& j, const std::string& where) {
  const Architecture a = c.architecture;
  if (a != Architecture::kMixtral && a != Architecture::kQwen2Moe && a != Architecture::kQwen3Moe) return;
  if (a == Architecture::kMixtral) {
    c.num_experts = f.integer_or("num_local_experts", 8);
    c.experts_per_token = f.integer_or("num_experts_per_tok", 2);
    c.moe_intermediate_size = c.intermediate_size;
    c.norm_topk_prob = true;
  } else {
    const bool q2 = a == Architecture::kQwen2Moe;
    c.num_experts = f.integer_or("num_experts", q2 ? 60 : 128);
    c.experts_per_token = f.integer_or("num_experts_per_tok", q2 ? 4 : 8);
    c.moe_intermediate_size = f.integer_or("moe_intermediate_size", q2 ? 1408 : 768);
    if (q2) c.shared_expert_intermediate_size = f.integer_or("shared_expert_intermediate_size", 5632);
    c.norm_topk_prob = f.boolean_or("norm_topk_prob", false);
    c.decoder_sparse_step = f.integer_or("decoder_sparse_step", 1);
    if (f.has("mlp_only_layers")) {
      const json& layers = j["mlp_only_layers"];
      if (!layers.is_array()) throw CheckpointError(where + ": field 'mlp_only_layers': expected a list of layer indices, got " + layers.dump());
      for (const auto& v : layers) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= c.num_hidden_layers)
          throw CheckpointError(where + ": field 'mlp_only_layers': expected layer indices in [0, " +
                                std::to_string(c.num_hidden_layers) + ") (num_hidden_layers), got " + v.dump());
        c.mlp_only_layers.push_back(v.get<int64_t>());
      }
    }
  }
  constexpr int64_t kMax = int64_t{1} << 31;
  if (c.num_experts <= 0 || c.num_experts >= (1 << 16))
    throw CheckpointError(where + ": the number of experts must be in [1, 65536), got " + std::to_string(c.num_experts));
  if (c.experts_per_token < 1 || c.experts_per_token > c.num_experts)
    throw CheckpointError(where + ": field 'num_experts_per_tok' must be in [1, " + std::to_string(c.num_experts) +
                          "] (the number of experts), got " + std::to_string(c.experts_per_token));
  if (c.moe_intermediate_size <= 0 || c.moe_intermediate_size >= kMax || c.shared_expert_intermediate_size < 0 ||
      c.shared_expert_intermediate_size >= kMax)
    throw CheckpointError(where + ": expert sizes must be in [1, 2^31), got moe_intermediate_size " +
                          std::to_string(c.moe_intermediate_size) + ", shared_expert_intermediate_size " +
                          std::to_string(c.shared_expert_intermediate_size));
  if (c.decoder_sparse_step < 1)
    throw CheckpointError(where + ": field 'decoder_sparse_step' must be >= 1, got " + std::to_string(c.decoder_sparse_step));
}

// LongRoPE's context lengths come from the config's top level; the factors must cover the rotary
// dims; the attention factor, unless given, is sqrt(1 + ln(s) / ln(original)) with s = the
// context over the original one (1 when s <= 1), as HF computes it.
void finish_longrope(ModelConfig& c, const Fields& f, const std::string& where) {
  RopeScaling& r = c.rope_scaling;
  // As HF: the config's own original_max_position_embeddings, when it has one, sets both the
  // switch to the long factors and the scale; else the context is the original one (scale 1).
  const int64_t original = f.integer_or("original_max_position_embeddings", 0);
  double s = 1;
  if (original > 0) {
    r.original_max_position_embeddings = original;
    s = static_cast<double>(c.max_position_embeddings) / static_cast<double>(original);
  } else if (r.original_max_position_embeddings <= 0) {
    r.original_max_position_embeddings = c.max_position_embeddings;
  }
  if (r.original_max_position_embeddings <= 0)
    throw CheckpointError(where + ": longrope needs original_max_position_embeddings or max_position_embeddings");
  const size_t half = static_cast<size_t>(c.rotary_dim / 2);
  if (r.short_factor.size() != half || r.long_factor.size() != half)
    throw CheckpointError(where + ": rope_scaling: short_factor and long_factor need " + std::to_string(half) +
                          " entries (half the rotary dims), got " + std::to_string(r.short_factor.size()) + " and " +
                          std::to_string(r.long_factor.size()));
  if (r.attention_factor <= 0) {
    r.attention_factor =
        s <= 1 ? 1.0 : std::sqrt(1 + std::log(s) / std::log(static_cast<double>(r.original_max_position_embeddings)));
  }
}

}  // namespace

const std::vector<std::string>& supported_architectures() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> v;
    for (const auto& [name, arch] : kArchitectures) v.push_back(name);
    return v;
  }();
  return kNames;
}

int64_t ModelConfig::window_for_layer(int64_t layer) const {
  if (sliding_window <= 0) return 0;
  if (!sliding_layers.empty())
    return layer >= 0 && layer < static_cast<int64_t>(sliding_layers.size()) && sliding_layers[layer] ? sliding_window : 0;
  if (qwen_windows(architecture)) return layer >= max_window_layers ? sliding_window : 0;
  return sliding_window;
}

bool ModelConfig::local_rope_layer(int64_t layer) const {
  return rope_local_theta > 0 && layer >= 0 && layer < static_cast<int64_t>(sliding_layers.size()) &&
         sliding_layers[layer];
}

bool ModelConfig::sparse_layer(int64_t layer) const {
  if (num_experts <= 0) return false;
  if (std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) != mlp_only_layers.end()) return false;
  return (layer + 1) % decoder_sparse_step == 0;
}

int64_t ModelConfig::parameter_count() const {
  const int64_t D = hidden_size, q = num_attention_heads * head_dim, kv = num_key_value_heads * head_dim;
  const int64_t qk_norms = !qk_norm ? 0 : qk_norm_whole ? q + kv : 2 * head_dim;
  const int64_t norms = (sandwich_norms ? 4 : 2) * D;
  int64_t total = vocab_size * D * (tie_word_embeddings ? 1 : 2) + D;
  for (int64_t l = 0; l < num_hidden_layers; ++l) {
    const int64_t ffn = !sparse_layer(l) ? 3 * D * intermediate_size
                                         : num_experts * (3 * D * moe_intermediate_size + D) +
                                               (shared_expert_intermediate_size > 0 ? 3 * D * shared_expert_intermediate_size + D : 0);
    total += D * q * 2 + D * kv * 2 + norms + qk_norms + ffn;
  }
  return total;
}

ModelConfig parse_model_config(const std::string& json_text, const std::string& where) {
  if (json_too_deep(json_text)) throw CheckpointError(where + ": " + json_too_deep_message());
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    throw CheckpointError(where + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) throw CheckpointError(where + ": expected a JSON object");
  Fields f(j, where);

  ModelConfig c;
  if (!f.has("architectures") || !j["architectures"].is_array() || j["architectures"].empty() ||
      !j["architectures"][0].is_string())
    throw CheckpointError(where + ": missing 'architectures' (supported: " +
                          join(supported_architectures()) + ")");
  c.architecture_name = j["architectures"][0].get<std::string>();
  bool known = false;
  for (const auto& [name, arch] : kArchitectures)
    if (c.architecture_name == name) {
      c.architecture = arch;
      known = true;
    }
  if (!known)
    throw CheckpointError(where + ": unknown architecture '" + c.architecture_name +
                          "' (supported: " + join(supported_architectures()) + ")");
  c.model_type = f.string_or("model_type", "");

  c.vocab_size = f.integer("vocab_size");
  c.hidden_size = f.integer("hidden_size");
  c.intermediate_size = f.integer("intermediate_size");
  c.num_hidden_layers = f.integer("num_hidden_layers");
  c.num_attention_heads = f.integer("num_attention_heads");
  c.num_key_value_heads = f.integer_or("num_key_value_heads", c.num_attention_heads);
  c.max_position_embeddings = f.integer_or("max_position_embeddings", 0);
  c.rms_norm_eps = f.number_or("rms_norm_eps", 1e-6);
  c.rope_theta = f.number_or("rope_theta", 10000.0);
  const bool gemma = c.architecture == Architecture::kGemma2 || c.architecture == Architecture::kGemma3;
  // Gemma's configs tie the output to the embeddings unless they say otherwise.
  c.tie_word_embeddings = f.boolean_or("tie_word_embeddings", gemma);
  c.torch_dtype = f.string_or("torch_dtype", f.string_or("dtype", ""));

  // Sizes are checked against the weights before anything is allocated (Checkpoint::open); the
  // bound here only keeps products of sizes from overflowing.
  constexpr int64_t kMaxSize = int64_t{1} << 31;
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "num_key_value_heads", "max_position_embeddings"}) {
    if (!f.has(key)) continue;
    const int64_t v = f.integer(key);
    if (v <= 0 || v >= kMaxSize)
      throw CheckpointError(where + ": field '" + key + "' must be in [1, 2^31), got " + j[key].dump());
  }
  if (!(c.rope_theta > 0) || !std::isfinite(c.rope_theta))
    throw CheckpointError(where + ": field 'rope_theta' must be a positive number, got " +
                          j.value("rope_theta", json()).dump());
  bounded(c.rope_theta, 1, 1e30, "rope_theta", where);
  if (!(c.rms_norm_eps >= 0 && c.rms_norm_eps <= 1))
    throw CheckpointError(where + ": field 'rms_norm_eps' must be in [0, 1], got " +
                          j.value("rms_norm_eps", json()).dump());
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    throw CheckpointError(where + ": num_attention_heads (" +
                          std::to_string(c.num_attention_heads) +
                          ") is not a multiple of num_key_value_heads (" +
                          std::to_string(c.num_key_value_heads) + ")");
  c.head_dim = f.integer_or("head_dim", gemma ? 256 : 0);
  if (c.head_dim == 0) {
    if (c.hidden_size % c.num_attention_heads != 0)
      throw CheckpointError(where + ": hidden_size " + std::to_string(c.hidden_size) +
                            " is not divisible by num_attention_heads " +
                            std::to_string(c.num_attention_heads) + " and no head_dim is given");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.head_dim <= 0 || c.head_dim % 2 != 0 || c.head_dim >= kMaxSize)
    throw CheckpointError(where + ": head_dim must be positive and even, got " +
                          std::to_string(c.head_dim));

  // Gemma reads "hidden_activation" (its "hidden_act" is a legacy field).
  const char* act_key = gemma && f.has("hidden_activation") ? "hidden_activation" : "hidden_act";
  const std::string act = f.string_or(act_key, gemma ? "gelu_pytorch_tanh" : "silu");
  if (act == "silu" || act == "swish") c.activation = Activation::kSilu;
  else if (act == "gelu_pytorch_tanh" || act == "gelu_new") c.activation = Activation::kGeluTanh;
  else if (act == "gelu") c.activation = Activation::kGelu;
  else
    throw CheckpointError(where + ": " + act_key + " '" + act +
                          "' is not supported (supported: silu, gelu_pytorch_tanh, gelu_new, gelu)");
  if (f.integer_or("pretraining_tp", 1) != 1)
    throw CheckpointError(where + ": pretraining_tp other than 1 is not supported");

  const bool attention_bias = f.boolean_or("attention_bias", false);
  c.qkv_bias = attention_bias || c.architecture == Architecture::kQwen2 || c.architecture == Architecture::kQwen2Moe;
  c.o_bias = attention_bias;
  c.mlp_bias = f.boolean_or("mlp_bias", false);
  c.qk_norm = c.architecture == Architecture::kQwen3 || c.architecture == Architecture::kQwen3Moe ||
              c.architecture == Architecture::kOlmo2 || c.architecture == Architecture::kGemma3;
  c.qk_norm_whole = c.post_norms = c.norm_weight_in_float = c.architecture == Architecture::kOlmo2;

  const double partial = f.number_or("partial_rotary_factor", 1.0);
  if (!(partial > 0 && partial <= 1))
    throw CheckpointError(where + ": partial_rotary_factor must be in (0, 1], got " + std::to_string(partial));
  c.rotary_dim = static_cast<int64_t>(static_cast<double>(c.head_dim) * partial);
  if (c.rotary_dim < 2 || c.rotary_dim % 2 != 0)
    throw CheckpointError(where + ": partial_rotary_factor " + std::to_string(partial) + " x head_dim " +
                          std::to_string(c.head_dim) + " gives " + std::to_string(c.rotary_dim) +
                          " rotary dims; expected an even number >= 2");
  c.fused_projections = c.architecture == Architecture::kPhi3;
  if (j.contains("rope_scaling")) c.rope_scaling = parse_rope_scaling(j["rope_scaling"], where);
  if (c.rope_scaling.type == RopeScaling::Type::kLongRope) finish_longrope(c, f, where);

  const int64_t window = f.integer_or("sliding_window", 0);
  if (window < 0) throw CheckpointError(where + ": sliding_window must be >= 0");
  if (c.architecture == Architecture::kMistral || c.architecture == Architecture::kPhi3 ||
      c.architecture == Architecture::kMixtral) {
    c.sliding_window = window;
  } else if (qwen_windows(c.architecture)) {
    if (f.boolean_or("use_sliding_window", false)) c.sliding_window = window;
    c.max_window_layers = f.integer_or("max_window_layers", c.num_hidden_layers);
  }
  if (gemma) parse_gemma(c, f, j, where);
  parse_moe(c, f, j, where);
  return c;
}

ModelConfig load_model_config(const std::filesystem::path& model_dir) {
  const auto path = model_dir / "config.json";
  std::ifstream in(path);
  if (!in) throw CheckpointError(path.string() + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_model_config(ss.str(), path.string());
}

}  // namespace air
