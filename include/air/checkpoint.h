#pragma once

#include "air/config.h"
#include "air/safetensors.h"

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace air {

// Where a model parameter's values are in a checkpoint: a tensor of its own, or rows of a fused
// one (Phi-3's qkv_proj: q, k, v; gate_up_proj: gate, up).
struct TensorSource {
  std::string tensor;
  int64_t row_begin = 0;
  int64_t rows = -1;        // -1: the whole tensor
  int64_t fused_rows = -1;  // rows of the fused tensor
};
TensorSource source_of(const ModelConfig& c, const std::string& param);

// A HuggingFace model directory: config.json plus its weights, either one model.safetensors or
// shards listed by model.safetensors.index.json. Opening it validates every file header and the
// shard index; no tensor data is read until it is used.
class Checkpoint {
 public:
  static Checkpoint open(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }
  const std::vector<SafetensorsFile>& files() const { return files_; }

  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  // The file holding `name`; throws CheckpointError listing the files when it is absent.
  const SafetensorsFile& file_of(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const { return file_of(name).info(name); }
  at::Tensor tensor(const std::string& name) const { return file_of(name).tensor(name); }
  // "xxh3:<16 hex>" over config.json and every weight file: identifies the exact model.
  // Hashed once (every weight byte is read), then remembered.
  const std::string& fingerprint() const;
  // All tensor names, sorted.
  std::vector<std::string> tensor_names() const;

 private:
  // config.json's sizes against the weights' shapes, before anything is allocated by them.
  void check_sizes() const;

  std::filesystem::path dir_;
  ModelConfig config_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
  std::string config_text_;               // config.json as read
  mutable std::string fingerprint_;       // empty until fingerprint() is first called
};

}  // namespace air
