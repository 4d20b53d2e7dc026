#include "air/checkpoint.h"

#include "air/error.h"

#include <nlohmann/json.hpp>
#include <xxhash.h>

#include <cstdio>

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
  return c;
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
