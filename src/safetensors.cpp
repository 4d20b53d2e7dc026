#include "air/safetensors.h"

#include "air/error.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <xxhash.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>

namespace air {
namespace {

// Safetensors caps headers at 100 MB; anything larger is a corrupt length field.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DTypeEntry {
  const char* name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {"F64", 8}, {"F32", 4},  {"F16", 2},     {"BF16", 2},    {"I64", 8},
    {"I32", 4}, {"I16", 2},  {"I8", 1},      {"U8", 1},      {"BOOL", 1},
    {"U16", 2}, {"U32", 4},  {"U64", 8},     {"F8_E4M3", 1}, {"F8_E5M2", 1},
};

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

size_t safetensors_dtype_size(const std::string& dtype) {
  for (const auto& d : kDTypes)
    if (dtype == d.name) return d.size;
  return 0;
}

struct SafetensorsFile::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr && addr != MAP_FAILED) munmap(addr, size);
  }
};

std::map<std::string, TensorInfo> parse_safetensors_header(const std::string& header,
                                                           uint64_t data_size,
                                                           const std::string& where) {
  nlohmann::json j;
  // A key given twice would silently take the later entry: the file is ambiguous, refuse it.
  std::set<std::string> keys;
  std::string duplicate;
  auto no_duplicates = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    if (ev == nlohmann::json::parse_event_t::key && depth == 1 && parsed.is_string() &&
        !keys.insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  try {
    j = nlohmann::json::parse(header, no_duplicates);
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(where + ": header is not valid JSON (" + e.what() + ")");
  }
  if (!duplicate.empty())
    throw CheckpointError(where + ": header: tensor '" + duplicate + "' is listed twice");
  if (!j.is_object())
    throw CheckpointError(where + ": header: expected a JSON object, got " +
                          std::string(j.type_name()));

  std::map<std::string, TensorInfo> out;
  for (const auto& [name, entry] : j.items()) {
    if (name == "__metadata__") continue;
    const std::string at = where + ": tensor '" + name + "'";
    if (!entry.is_object()) throw CheckpointError(at + ": expected an object");
    if (!entry.contains("dtype") || !entry["dtype"].is_string())
      throw CheckpointError(at + ": missing string field 'dtype'");
    if (!entry.contains("shape") || !entry["shape"].is_array())
      throw CheckpointError(at + ": missing array field 'shape'");
    if (!entry.contains("data_offsets") || !entry["data_offsets"].is_array() ||
        entry["data_offsets"].size() != 2)
      throw CheckpointError(at + ": 'data_offsets' must be an array of two integers");

    TensorInfo info;
    info.dtype = entry["dtype"].get<std::string>();
    const size_t elem = safetensors_dtype_size(info.dtype);
    if (elem == 0) throw CheckpointError(at + ": unknown dtype '" + info.dtype + "'");

    uint64_t numel = 1;
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_unsigned())
        throw CheckpointError(at + ": shape entries must be non-negative integers, got " +
                              d.dump());
      const uint64_t v = d.get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (v != 0 && numel > std::numeric_limits<uint64_t>::max() / v))
        throw CheckpointError(at + ": shape " + entry["shape"].dump() + " overflows");
      numel *= v;
      info.shape.push_back(static_cast<int64_t>(v));
    }
    for (const auto& o : entry["data_offsets"])
      if (!o.is_number_unsigned())
        throw CheckpointError(at + ": data_offsets must be non-negative integers, got " +
                              entry["data_offsets"].dump());
    info.begin = entry["data_offsets"][0].get<uint64_t>();
    info.end = entry["data_offsets"][1].get<uint64_t>();
    if (info.end < info.begin)
      throw CheckpointError(at + ": data_offsets " + entry["data_offsets"].dump() +
                            " end before begin");
    if (info.end > data_size)
      throw CheckpointError(at + ": data_offsets " + entry["data_offsets"].dump() +
                            " out of range: data section has " + std::to_string(data_size) +
                            " bytes");
    if (numel > std::numeric_limits<uint64_t>::max() / elem ||
        numel * elem != info.end - info.begin)
      throw CheckpointError(at + ": byte size mismatch: shape " + shape_string(info.shape) +
                            " x " + info.dtype + " needs " + std::to_string(numel * elem) +
                            " bytes, data_offsets give " + std::to_string(info.end - info.begin));
    out.emplace(name, std::move(info));
  }

  // Offsets must not overlap: sort by begin and compare neighbours.
  std::vector<std::pair<const std::string*, const TensorInfo*>> order;
  for (const auto& [name, info] : out) order.emplace_back(&name, &info);
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.second->begin < b.second->begin ||
           (a.second->begin == b.second->begin && a.second->end < b.second->end);
  });
  for (size_t i = 1; i < order.size(); ++i) {
    const auto& prev = *order[i - 1].second;
    const auto& cur = *order[i].second;
    if (cur.begin < prev.end && cur.end > cur.begin)
      throw CheckpointError(where + ": tensors '" + *order[i - 1].first + "' [" +
                            std::to_string(prev.begin) + ", " + std::to_string(prev.end) +
                            ") and '" + *order[i].first + "' [" + std::to_string(cur.begin) +
                            ", " + std::to_string(cur.end) + ") overlap");
  }
  return out;
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  const std::string where = path.string();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw CheckpointError(where + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw CheckpointError(where + ": cannot stat: " + std::strerror(err));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    throw CheckpointError(where + ": truncated: " + std::to_string(size) +
                          " bytes, expected at least 8 (the header length)");
  }
  auto map = std::make_shared<Mapping>();
  map->size = size;
  // Private and writable: the pages are copy-on-write, so a tensor viewing them can never
  // modify the file, and no byte is read until it is used.
  map->addr = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);
  if (map->addr == MAP_FAILED) {
    map->addr = nullptr;
    throw CheckpointError(where + ": mmap failed: " + std::strerror(map_err));
  }

  uint64_t header_len = 0;
  const auto* bytes = static_cast<const unsigned char*>(map->addr);
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > size - 8)
    throw CheckpointError(where + ": header length " + std::to_string(header_len) +
                          " runs past the end of the file (" + std::to_string(size) +
                          " bytes): truncated or not a safetensors file");
  if (header_len > kMaxHeaderBytes)
    throw CheckpointError(where + ": header length " + std::to_string(header_len) +
                          " exceeds the 100 MB limit");

  SafetensorsFile f;
  f.path_ = path;
  f.data_offset_ = 8 + header_len;
  f.tensors_ = parse_safetensors_header(
      std::string(reinterpret_cast<const char*>(bytes) + 8, header_len), size - 8 - header_len,
      where);
  f.map_ = std::move(map);
  return f;
}

uint64_t SafetensorsFile::file_size() const { return map_ ? map_->size : 0; }

uint64_t SafetensorsFile::content_hash() const {
  return map_ ? XXH3_64bits(map_->addr, map_->size) : 0;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end())
    throw CheckpointError(path_.string() + ": no tensor '" + name + "'");
  return it->second;
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorInfo& ti = info(name);
  at::ScalarType st;
  if (ti.dtype == "F32") st = at::kFloat;
  else if (ti.dtype == "F16") st = at::kHalf;
  else if (ti.dtype == "BF16") st = at::kBFloat16;
  else if (ti.dtype == "F64") st = at::kDouble;
  else
    throw CheckpointError(path_.string() + ": tensor '" + name + "': dtype " + ti.dtype +
                          " is not supported (expected F32, F16 or BF16)");
  char* base = static_cast<char*>(map_->addr) + data_offset_ + ti.begin;
  auto keep = map_;
  const size_t elem = safetensors_dtype_size(ti.dtype);
  at::Tensor t = at::from_blob(
      base, ti.shape, [keep](void*) {}, at::TensorOptions().dtype(st));
  // Misaligned data (a header not padded to 8 bytes) is copied rather than viewed.
  if (reinterpret_cast<uintptr_t>(base) % elem != 0) t = t.clone();
  return t;
}

}  // namespace air
