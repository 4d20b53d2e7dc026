#include "air/config.h"

#include "air/error.h"

#include <nlohmann/json.hpp>

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

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s;
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
        into->push_back(v.get<double>());
      }
    }
    r.attention_factor = f.number_or("attention_factor", 0.0);  // 0: from the context lengths
    r.original_max_position_embeddings = f.integer_or("original_max_position_embeddings", 0);
    return r;
  }
  throw CheckpointError(at + ": type '" + type +
                        "' is not supported (supported: none, linear, llama3, longrope)");
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
  static const std::vector<std::string> kNames = {"LlamaForCausalLM", "MistralForCausalLM",
                                                  "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                                                  "Olmo2ForCausalLM", "Phi3ForCausalLM"};
  return kNames;
}

int64_t ModelConfig::window_for_layer(int64_t layer) const {
  if (sliding_window <= 0) return 0;
  if (architecture == Architecture::kQwen2 || architecture == Architecture::kQwen3)
    return layer >= max_window_layers ? sliding_window : 0;
  return sliding_window;
}

int64_t ModelConfig::parameter_count() const {
  const int64_t D = hidden_size, q = num_attention_heads * head_dim, kv = num_key_value_heads * head_dim;
  const int64_t qk_norms = !qk_norm ? 0 : qk_norm_whole ? q + kv : 2 * head_dim;
  const int64_t layer = D * q * 2 + D * kv * 2 + 3 * D * intermediate_size + 2 * D + qk_norms;
  return vocab_size * D * (tie_word_embeddings ? 1 : 2) + num_hidden_layers * layer + D;
}

ModelConfig parse_model_config(const std::string& json_text, const std::string& where) {
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
  if (c.architecture_name == "LlamaForCausalLM") c.architecture = Architecture::kLlama;
  else if (c.architecture_name == "MistralForCausalLM") c.architecture = Architecture::kMistral;
  else if (c.architecture_name == "Qwen2ForCausalLM") c.architecture = Architecture::kQwen2;
  else if (c.architecture_name == "Qwen3ForCausalLM") c.architecture = Architecture::kQwen3;
  else if (c.architecture_name == "Olmo2ForCausalLM") c.architecture = Architecture::kOlmo2;
  else if (c.architecture_name == "Phi3ForCausalLM") c.architecture = Architecture::kPhi3;
  else
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
  c.tie_word_embeddings = f.boolean_or("tie_word_embeddings", false);
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
  if (!(c.rms_norm_eps >= 0 && c.rms_norm_eps <= 1))
    throw CheckpointError(where + ": field 'rms_norm_eps' must be in [0, 1], got " +
                          j.value("rms_norm_eps", json()).dump());
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    throw CheckpointError(where + ": num_attention_heads (" +
                          std::to_string(c.num_attention_heads) +
                          ") is not a multiple of num_key_value_heads (" +
                          std::to_string(c.num_key_value_heads) + ")");
  c.head_dim = f.integer_or("head_dim", 0);
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

  const std::string act = f.string_or("hidden_act", "silu");
  if (act != "silu")
    throw CheckpointError(where + ": hidden_act '" + act + "' is not supported (expected silu)");
  if (f.integer_or("pretraining_tp", 1) != 1)
    throw CheckpointError(where + ": pretraining_tp other than 1 is not supported");

  const bool attention_bias = f.boolean_or("attention_bias", false);
  c.qkv_bias = attention_bias || c.architecture == Architecture::kQwen2;
  c.o_bias = attention_bias;
  c.mlp_bias = f.boolean_or("mlp_bias", false);
  c.qk_norm = c.architecture == Architecture::kQwen3 || c.architecture == Architecture::kOlmo2;
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
  if (c.architecture == Architecture::kMistral || c.architecture == Architecture::kPhi3) {
    c.sliding_window = window;
  } else if (c.architecture == Architecture::kQwen2 || c.architecture == Architecture::kQwen3) {
    if (f.boolean_or("use_sliding_window", false)) c.sliding_window = window;
    c.max_window_layers = f.integer_or("max_window_layers", c.num_hidden_layers);
  }
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
