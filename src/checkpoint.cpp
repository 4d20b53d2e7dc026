#include "air/checkpoint.h"

#include "air/error.h"

#include <nlohmann/json.hpp>
#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <fstream>
#include <set>
#include <sstream>

namespace air {

namespace fs = std::filesystem;

Checkpoint Checkpoint::open(const fs::path& dir) {
  if (!fs::is_directory(dir))
    throw CheckpointError(dir.string() + ": not a directory (expected a HuggingFace model folder)");
  Checkpoint c;
  c.dir_ = dir;
  c.config_ = load_model_config(dir);
  {
    std::ifstream in(dir / "config.json", std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    c.config_text_ = ss.str();
  }

  const fs::path single = dir / "model.safetensors";
  const fs::path index = dir / "model.safetensors.index.json";
  if (fs::exists(single)) {
    c.files_.push_back(SafetensorsFile::open(single));
    for (const auto& [name, info] : c.files_[0].tensors()) c.where_[name] = 0;
    c.check_sizes();
    return c;
  }
  if (!fs::exists(index))
    throw CheckpointError(dir.string() +
                          ": no weights: expected model.safetensors or "
                          "model.safetensors.index.json");

  nlohmann::json j;
  {
    std::ifstream in(index);
    if (!in) throw CheckpointError(index.string() + ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    try {
      j = nlohmann::json::parse(ss.str());
    } catch (const nlohmann::json::exception& e) {
      throw CheckpointError(index.string() + ": not valid JSON (" + e.what() + ")");
    }
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw CheckpointError(index.string() + ": missing object 'weight_map'");

  // Open each shard once, in name order, and check the index against what each really holds.
  std::map<std::string, size_t> shard_index;
  std::set<std::string> shard_names;
  for (const auto& [tensor, shard] : j["weight_map"].items()) {
    if (!shard.is_string())
      throw CheckpointError(index.string() + ": weight_map['" + tensor +
                            "']: expected a file name, got " + shard.dump());
    const std::string name = shard.get<std::string>();
    if (name.find('/') != std::string::npos || name == ".." || name.empty())
      throw CheckpointError(index.string() + ": weight_map['" + tensor +
                            "']: shard name '" + name + "' is not a plain file name");
    shard_names.insert(name);
  }
  for (const auto& name : shard_names) {
    const fs::path p = dir / name;
    if (!fs::exists(p))
      throw CheckpointError(index.string() + ": shard '" + name + "' is missing (expected " +
                            p.string() + ")");
    shard_index[name] = c.files_.size();
    c.files_.push_back(SafetensorsFile::open(p));
  }
  for (const auto& [tensor, shard] : j["weight_map"].items()) {
    const size_t i = shard_index.at(shard.get<std::string>());
    if (!c.files_[i].contains(tensor))
      throw CheckpointError(index.string() + ": tensor '" + tensor + "' is listed in shard '" +
                            shard.get<std::string>() + "' but that file does not hold it");
    c.where_[tensor] = i;
  }
  c.check_sizes();
  return c;
}

TensorSource source_of(const ModelConfig& c, const std::string& param) {
  TensorSource s{param};
  if (!c.fused_projections) return s;
  auto ends_with = [&](const std::string& tail) {
    return param.size() > tail.size() && param.compare(param.size() - tail.size(), tail.size(), tail) == 0;
  };
  const int64_t q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  const int64_t I = c.intermediate_size;
  const struct {
    const char* tail;
    const char* fused;
    int64_t begin, rows, total;
  } parts[] = {{"self_attn.q_proj.weight", "self_attn.qkv_proj.weight", 0, q, q + 2 * kv},
               {"self_attn.k_proj.weight", "self_attn.qkv_proj.weight", q, kv, q + 2 * kv},
               {"self_attn.v_proj.weight", "self_attn.qkv_proj.weight", q + kv, kv, q + 2 * kv},
               {"mlp.gate_proj.weight", "mlp.gate_up_proj.weight", 0, I, 2 * I},
               {"mlp.up_proj.weight", "mlp.gate_up_proj.weight", I, I, 2 * I}};
  for (const auto& p : parts)
    if (ends_with(p.tail)) {
      s.tensor = param.substr(0, param.size() - std::strlen(p.tail)) + p.fused;
      s.row_begin = p.begin;
      s.rows = p.rows;
      s.fused_rows = p.total;
    }
  return s;
}

void Checkpoint::check_sizes() const {
  const ModelConfig& c = config_;
  const std::string where = (dir_ / "config.json").string();
  auto shape = [](std::vector<int64_t> v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
  };
  // Tensors whose shapes pin every size the model allocates by.
  std::vector<std::pair<std::string, std::vector<int64_t>>> expect = {
      {"model.embed_tokens.weight", {c.vocab_size, c.hidden_size}}};
  std::vector<std::pair<std::string, int64_t>> rows_of = {
      {"model.layers.0.self_attn.q_proj.weight", c.num_attention_heads * c.head_dim},
      {"model.layers.0.self_attn.k_proj.weight", c.num_key_value_heads * c.head_dim}};
  // The first dense MLP, and the first sparse layer's router and first expert.
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    if (!c.sparse_layer(l)) {
      rows_of.push_back({"model.layers." + std::to_string(l) + ".mlp.gate_proj.weight", c.intermediate_size});
      break;
    }
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    if (c.sparse_layer(l)) {
      const std::string moe = "model.layers." + std::to_string(l) + (c.mixtral_names() ? ".block_sparse_moe." : ".mlp.");
      rows_of.push_back({moe + "gate.weight", c.num_experts});
      rows_of.push_back({moe + "experts.0." + (c.mixtral_names() ? "w1" : "gate_proj") + ".weight", c.moe_intermediate_size});
      break;
    }
  for (const auto& [param, rows] : rows_of) {
    const TensorSource s = source_of(c, param);  // a fused tensor is checked whole
    expect.push_back({s.tensor, {s.rows < 0 ? rows : s.fused_rows, c.hidden_size}});
  }
  if (!c.tie_word_embeddings) expect.push_back({"lm_head.weight", {c.vocab_size, c.hidden_size}});
  for (const auto& [name, want] : expect) {
    if (!contains(name))
      throw CheckpointError(where + ": tensor '" + name + "' is missing from the weights (config.json implies shape " +
                            shape(want) + ")");
    const TensorInfo& got = info(name);
    if (got.shape != want)
      throw CheckpointError(where + ": its sizes do not match the weights: tensor '" + name +
                            "' is " + shape(got.shape) + ", config.json implies " + shape(want));
  }
  // Layers: every layer the config names must be in the weights.
  std::set<int64_t> present;
  const std::string prefix = "model.layers.";
  for (const auto& [name, file] : where_) {
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const int64_t i = std::strtoll(name.c_str() + prefix.size(), nullptr, 10);
    if (i >= 0 && i < c.num_hidden_layers) present.insert(i);
  }
  const int64_t layers = static_cast<int64_t>(present.size());
  if (c.num_hidden_layers > layers)
    throw CheckpointError(where + ": num_hidden_layers is " + std::to_string(c.num_hidden_layers) +
                          ", but the weights hold " + std::to_string(layers) + " of those layers");
}

const SafetensorsFile& Checkpoint::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) {
    std::string files;
    for (const auto& f : files_) files += (files.empty() ? "" : ", ") + f.path().filename().string();
    throw CheckpointError("tensor '" + name + "' is missing from the checkpoint (" + files + ")");
  }
  return files_[it->second];
}

const std::string& Checkpoint::fingerprint() const {
  if (!fingerprint_.empty()) return fingerprint_;
  std::vector<uint64_t> parts = {XXH3_64bits(config_text_.data(), config_text_.size())};
  for (const auto& f : files_) parts.push_back(f.content_hash());
  char buf[32];
  std::snprintf(buf, sizeof(buf), "xxh3:%016llx",
                static_cast<unsigned long long>(XXH3_64bits(parts.data(), parts.size() * sizeof(uint64_t))));
  fingerprint_ = buf;
  return fingerprint_;
}

std::vector<std::string> Checkpoint::tensor_names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& kv : where_) out.push_back(kv.first);
  return out;
}

}  // namespace air
