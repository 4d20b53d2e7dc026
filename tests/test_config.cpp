#include "air/config.h"
#include "air/error.h"
#include "air/nn/model.h"
#include "test_util.h"

#include <ATen/ATen.h>

#include <cmath>
#include <functional>

namespace air::test {
namespace {

nlohmann::json base_config() { return read_json(fixture_dir("llama") / "config.json"); }

ModelConfig parse(const nlohmann::json& j) { return parse_model_config(j.dump(), "cfg.json"); }

std::string error_of(const nlohmann::json& j) {
  try {
    parse(j);
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}

TEST(ConfigTest, ReadsEveryFixture) {
  for (const char* f : {"llama", "mistral", "qwen2", "qwen2-tied", "qwen3", "gemma2", "gemma3", "mixtral",
                        "qwen2-moe", "qwen3-moe"}) {
    const ModelConfig c = load_model_config(fixture_dir(f));
    EXPECT_EQ(c.num_attention_heads, 4) << f;
    EXPECT_EQ(c.num_key_value_heads, 2) << f;
  }
  const ModelConfig q2 = load_model_config(fixture_dir("qwen2"));
  EXPECT_TRUE(q2.qkv_bias);
  EXPECT_FALSE(q2.o_bias);
  const ModelConfig q3 = load_model_config(fixture_dir("qwen3"));
  EXPECT_TRUE(q3.qk_norm);
  EXPECT_EQ(q3.head_dim, 32);  // explicit, not hidden / heads = 16
  EXPECT_TRUE(load_model_config(fixture_dir("qwen2-tied")).tie_word_embeddings);
}

// Values that pass as positive numbers but overflow the forward pass are refused naming the
// field, not left to end as "loss at position 0 is not finite" (which blames the input).
TEST(ConfigTest, ValuesThatOverflowTheModelNameTheirField) {
  auto with = [](const char* fixture, const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = read_json(fixture_dir(fixture) / "config.json");
    edit(j);
    return error_of(j);
  };
  EXPECT_NE(with("llama", [](auto& j) { j["rope_theta"] = 1e-300; }).find("field 'rope_theta' must be in"), std::string::npos);
  EXPECT_NE(with("gemma2", [](auto& j) { j["query_pre_attn_scalar"] = 1e-300; }).find("'query_pre_attn_scalar' must be in"),
            std::string::npos);
  EXPECT_NE(with("gemma2", [](auto& j) { j["attn_logit_softcapping"] = 1e308; }).find("'attn_logit_softcapping' must be in"),
            std::string::npos);
  EXPECT_NE(with("gemma2", [](auto& j) { j["final_logit_softcapping"] = 1e308; }).find("'final_logit_softcapping' must be in"),
            std::string::npos);
  EXPECT_NE(with("phi3-longrope", [](auto& j) { j["rope_scaling"]["long_factor"][0] = 1e200; })
                .find("'rope_scaling.long_factor' must be in"),
            std::string::npos);
  // What real checkpoints hold still reads.
  EXPECT_EQ(with("llama", [](auto& j) { j["rope_theta"] = 1e6; }), "");
  EXPECT_EQ(with("gemma2", [](auto&) {}), "");
  EXPECT_EQ(with("phi3-longrope", [](auto&) {}), "");
}

TEST(ConfigTest, HeadDimDefaultsToHiddenOverHeads) {
  auto j = base_config();
  j.erase("head_dim");
  EXPECT_EQ(parse(j).head_dim, 64 / 4);
}

TEST(ConfigTest, UnknownArchitectureListsSupported) {
  auto j = base_config();
  j["architectures"] = {"GPTNeoXForCausalLM"};
  const std::string e = error_of(j);
  EXPECT_NE(e.find("cfg.json"), std::string::npos);
  EXPECT_NE(e.find("GPTNeoXForCausalLM"), std::string::npos);
  for (const auto& a : supported_architectures()) EXPECT_NE(e.find(a), std::string::npos) << e;
}

TEST(ConfigTest, MalformedJsonAndBadFields) {
  EXPECT_NE(std::string([] {
              try {
                parse_model_config("{\"architectures\": [", "cfg.json");
              } catch (const CheckpointError& e) {
                return std::string(e.what());
              }
              return std::string();
            }())
                .find("not valid JSON"),
            std::string::npos);
  auto j = base_config();
  j["hidden_size"] = "64";
  EXPECT_NE(error_of(j).find("'hidden_size': expected an integer, got \"64\""), std::string::npos);
  j = base_config();
  j.erase("vocab_size");
  EXPECT_NE(error_of(j).find("missing field 'vocab_size'"), std::string::npos);
  j = base_config();
  j["num_key_value_heads"] = 3;
  EXPECT_NE(error_of(j).find("not a multiple"), std::string::npos);
  j = base_config();
  j["hidden_act"] = "relu";
  EXPECT_NE(error_of(j).find("hidden_act 'relu'"), std::string::npos);
}

TEST(ConfigTest, RopeScalingKinds) {
  auto j = base_config();
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_NE(error_of(j).find("'yarn' is not supported"), std::string::npos);
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  const ModelConfig lin = parse(j);
  EXPECT_EQ(lin.rope_scaling.type, RopeScaling::Type::kLinear);
  j["rope_scaling"] = {{"rope_type", "default"}};
  EXPECT_EQ(parse(j).rope_scaling.type, RopeScaling::Type::kNone);
}

TEST(RopeTest, LinearScalingDividesEveryFrequency) {
  auto j = base_config();
  const at::Tensor plain = nn::rope_inv_freq(parse(j));
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  EXPECT_TRUE(nn::rope_inv_freq(parse(j)).allclose(plain / 4.0));
}

TEST(RopeTest, Llama3ScalingKeepsHighAndScalesLowFrequencies) {
  auto j = base_config();
  j["head_dim"] = 128;
  j["hidden_size"] = 512;
  j["rope_theta"] = 500000.0;
  const at::Tensor plain = nn::rope_inv_freq(parse(j));
  const double factor = 8, low = 1, high = 4, old_len = 8192;
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", factor}, {"low_freq_factor", low},
                       {"high_freq_factor", high}, {"original_max_position_embeddings", old_len}};
  const at::Tensor scaled = nn::rope_inv_freq(parse(j));
  int seen_high = 0, seen_low = 0, seen_mid = 0;
  for (int64_t i = 0; i < plain.size(0); ++i) {
    const double f = plain[i].item<double>(), g = scaled[i].item<double>();
    const double wavelen = 2 * M_PI / f;
    if (wavelen < old_len / high) {  // short wavelengths: unchanged
      EXPECT_FLOAT_EQ(g, f);
      ++seen_high;
    } else if (wavelen > old_len / low) {  // long wavelengths: divided by factor
      EXPECT_NEAR(g, f / factor, 1e-6 * f);
      ++seen_low;
    } else {  // in between: strictly between the two
      EXPECT_LT(g, f);
      EXPECT_GT(g, f / factor);
      ++seen_mid;
    }
  }
  EXPECT_GT(seen_high, 0);
  EXPECT_GT(seen_low, 0);
  EXPECT_GT(seen_mid, 0);
}

TEST(ConfigTest, SlidingWindowPerFamily) {
  auto j = read_json(fixture_dir("mistral") / "config.json");
  j["sliding_window"] = 16;
  EXPECT_EQ(parse(j).window_for_layer(0), 16);
  auto q = read_json(fixture_dir("qwen2") / "config.json");
  q["sliding_window"] = 16;
  EXPECT_EQ(parse(q).window_for_layer(3), 0);  // use_sliding_window false
  q["use_sliding_window"] = true;
  q["max_window_layers"] = 2;
  EXPECT_EQ(parse(q).window_for_layer(1), 0);
  EXPECT_EQ(parse(q).window_for_layer(2), 16);
}

// Gemma: which layers slide (Gemma 2 even layers; Gemma 3 by sliding_window_pattern or by
// layer_types), the local RoPE base, HF's defaults for absent fields, and null soft-caps.
TEST(ConfigTest, GemmaLayersCapsAndDefaults) {
  auto g2 = read_json(fixture_dir("gemma2") / "config.json");
  ModelConfig c = parse(g2);
  EXPECT_TRUE(c.norm_unit_offset && c.sandwich_norms && c.embed_scale);
  EXPECT_EQ(c.activation, Activation::kGeluTanh);
  EXPECT_DOUBLE_EQ(c.attention_scale, 1.0 / std::sqrt(24.0));
  EXPECT_DOUBLE_EQ(c.attn_softcap, 5.0);
  EXPECT_DOUBLE_EQ(c.final_softcap, 3.0);
  EXPECT_FALSE(c.tie_word_embeddings);  // said so
  for (int64_t l = 0; l < 4; ++l) EXPECT_EQ(c.window_for_layer(l), l % 2 == 0 ? 16 : 0) << l;
  g2["attn_logit_softcapping"] = nullptr;
  g2.erase("final_logit_softcapping");
  g2.erase("tie_word_embeddings");
  g2.erase("query_pre_attn_scalar");
  c = parse(g2);
  EXPECT_EQ(c.attn_softcap, 0);          // null: none
  EXPECT_DOUBLE_EQ(c.final_softcap, 30); // absent: Gemma 2's default
  EXPECT_TRUE(c.tie_word_embeddings);    // absent: tied
  EXPECT_DOUBLE_EQ(c.attention_scale, 1.0 / 16);  // 256^-0.5

  auto g3 = read_json(fixture_dir("gemma3") / "config.json");
  c = parse(g3);
  EXPECT_TRUE(c.qk_norm && !c.qk_norm_whole && c.tie_word_embeddings);
  EXPECT_EQ(c.attn_softcap, 0);
  for (int64_t l = 0; l < 6; ++l) {
    EXPECT_EQ(c.window_for_layer(l), (l + 1) % 3 == 0 ? 0 : 16) << l;
    EXPECT_EQ(c.local_rope_layer(l), (l + 1) % 3 != 0) << l;
  }
  EXPECT_DOUBLE_EQ(c.rope_local_theta, 10000);
  g3["layer_types"] = {"full_attention", "sliding_attention", "full_attention",
                       "sliding_attention", "sliding_attention", "full_attention"};
  c = parse(g3);
  for (int64_t l = 0; l < 6; ++l) EXPECT_EQ(c.window_for_layer(l) > 0, l == 1 || l == 3 || l == 4) << l;
  g3["layer_types"] = {"full_attention"};
  EXPECT_NE(error_of(g3).find("layer_types"), std::string::npos);
  g3.erase("layer_types");
  g3["final_logit_softcapping"] = -1;
  EXPECT_NE(error_of(g3).find("final_logit_softcapping"), std::string::npos);
  g3["final_logit_softcapping"] = 0;  // HF would divide by it
  EXPECT_NE(error_of(g3).find("final_logit_softcapping"), std::string::npos);
  g3.erase("final_logit_softcapping");
  g3["sliding_window"] = 0;  // sliding layers without a window
  EXPECT_NE(error_of(g3).find("sliding_window"), std::string::npos) << error_of(g3);
}

// MoE: experts, top-k, renormalisation, and which layers are sparse.
TEST(ConfigTest, MoeFieldsAndSparseLayers) {
  ModelConfig c = load_model_config(fixture_dir("mixtral"));
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.experts_per_token, 2);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.moe_intermediate_size, c.intermediate_size);
  EXPECT_TRUE(c.mixtral_names());
  c = load_model_config(fixture_dir("qwen2-moe"));
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_EQ(c.shared_expert_intermediate_size, 96);
  EXPECT_TRUE(c.qkv_bias);
  c = load_model_config(fixture_dir("qwen3-moe"));
  EXPECT_TRUE(c.qk_norm && c.norm_topk_prob);
  EXPECT_FALSE(c.sparse_layer(0));  // mlp_only_layers [0]
  EXPECT_TRUE(c.sparse_layer(1));
  auto j = read_json(fixture_dir("qwen3-moe") / "config.json");
  j["decoder_sparse_step"] = 2;
  j["mlp_only_layers"] = {3};
  c = parse(j);
  for (int64_t l = 0; l < 4; ++l) EXPECT_EQ(c.sparse_layer(l), l == 1) << l;
  j["mlp_only_layers"] = {7};  // a 4-layer model
  EXPECT_NE(error_of(j).find("[0, 4)"), std::string::npos) << error_of(j);
  j["mlp_only_layers"] = "0";
  EXPECT_NE(error_of(j).find("mlp_only_layers"), std::string::npos);
  j.erase("mlp_only_layers");
  j["decoder_sparse_step"] = 0;
  EXPECT_NE(error_of(j).find("decoder_sparse_step"), std::string::npos);
  // A bigger model costs more: the experts count.
  const ModelConfig dense = load_model_config(fixture_dir("qwen3"));
  EXPECT_GT(load_model_config(fixture_dir("qwen3-moe")).parameter_count(), dense.parameter_count());
}

}  // namespace
}  // namespace air::test
