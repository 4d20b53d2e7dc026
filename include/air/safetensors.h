#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace air {

// One tensor entry of a safetensors header, validated against the file.
struct TensorInfo {
  std::string dtype;            // safetensors name: "F32", "BF16", ...
  std::vector<int64_t> shape;   // may be empty (a scalar)
  uint64_t begin = 0;           // byte offset into the data section
  uint64_t end = 0;             // one past the last byte
};

// Bytes per element of a safetensors dtype name; 0 when the name is unknown.
size_t safetensors_dtype_size(const std::string& dtype);

// A memory-mapped safetensors file whose header has been checked in full:
// header length within the file, JSON well-formed, every dtype known, offsets inside the data
// section and not overlapping, byte size = numel x dtype size. Throws CheckpointError naming
// the file and tensor otherwise.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  uint64_t file_size() const;
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;

  // xxh3-64 of the whole file (header and data).
  uint64_t content_hash() const;

  // A CPU tensor viewing the mapped bytes (no copy); it keeps the mapping alive.
  // Only floating dtypes (F32, F16, BF16, F64) can be viewed; others throw CheckpointError.
  at::Tensor tensor(const std::string& name) const;

 private:
  struct Mapping;
  std::filesystem::path path_;
  std::shared_ptr<const Mapping> map_;
  uint64_t data_offset_ = 0;  // 8 + header length
  std::map<std::string, TensorInfo> tensors_;
};

// Parses and validates a safetensors header (the JSON after the 8-byte length) against a data
// section of data_size bytes. `where` names the file in errors.
std::map<std::string, TensorInfo> parse_safetensors_header(const std::string& header,
                                                           uint64_t data_size,
                                                           const std::string& where);

}  // namespace air
