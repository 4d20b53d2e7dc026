#include "air/runtime.h"

#include "air/error.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Context.h>

#include <sched.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include <algorithm>
#include <map>
#include <set>
#include <thread>

namespace air {
namespace {

std::string shape_string(c10::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string rope_string(const RopeScaling& r) {
  switch (r.type) {
    case RopeScaling::Type::kNone: return "none";
    case RopeScaling::Type::kLinear: return "linear";
    case RopeScaling::Type::kLlama3: return "llama3";
    case RopeScaling::Type::kLongRope: return "longrope";
  }
  return "?";
}

}  // namespace

c10::Device parse_device(const std::string& name) {
  if (name == "cpu") return c10::Device(c10::kCPU);
  if (name.rfind("cuda", 0) == 0) {
    c10::Device dev(c10::kCUDA);
    try {
      dev = c10::Device(name);
    } catch (const std::exception&) {
      throw OptionError("device", option_name("device") + " '" + name + "': expected cpu, cuda or cuda:N");
    }
    if (!at::hasCUDA())
      throw OptionError("device", option_name("device") + " " + name + ": this build of libtorch has no CUDA, or no GPU is visible");
    return dev;
  }
  throw OptionError("device", option_name("device") + " '" + name + "': expected cpu, cuda or cuda:N");
}

std::vector<c10::Device> parse_devices(const std::string& list) {
  std::vector<c10::Device> out;
  size_t b = 0;
  while (true) {
    const size_t e = list.find(',', b);
    out.push_back(parse_device(list.substr(b, e == std::string::npos ? std::string::npos : e - b)));
    if (e == std::string::npos) break;
    b = e + 1;
  }
  return out;
}

std::vector<c10::Device> place_layers(int64_t layers, const std::vector<c10::Device>& devices) {
  std::vector<c10::Device> out;
  if (devices.empty()) return out;
  const int64_t n = static_cast<int64_t>(devices.size());
  for (int64_t d = 0; d < n; ++d) {
    const int64_t count = layers / n + (d < layers % n ? 1 : 0);
    for (int64_t i = 0; i < count; ++i) out.push_back(devices[d]);
  }
  return out;
}

std::string devices_string(const std::vector<c10::Device>& devices) {
  std::string s;
  for (const auto& d : devices) s += (s.empty() ? "" : ",") + d.str();
  return s;
}

std::optional<at::ScalarType> parse_dtype(const std::string& name) {
  if (name == "auto") return std::nullopt;
  if (name == "fp32" || name == "float32") return at::kFloat;
  if (name == "bf16" || name == "bfloat16") return at::kBFloat16;
  if (name == "fp16" || name == "float16") return at::kHalf;
  throw OptionError("dtype", option_name("dtype") + " '" + name + "': expected auto, fp32, bf16 or fp16");
}

std::string cpu_native_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, nullptr) < 7 || !__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE)) return "";
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  const uint64_t xcr0 = (uint64_t{hi} << 32) | lo;
  const bool avx512_state = (xcr0 & 0xE6) == 0xE6;  // SSE, AVX, opmask, ZMM upper halves, ZMM16-31
  const bool amx_state = (xcr0 & (uint64_t{3} << 17)) == (uint64_t{3} << 17);  // XTILECFG, XTILEDATA
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx512f = b & (1u << 16), amx_bf16 = d & (1u << 22);
  __cpuid_count(7, 1, a, b, c, d);
  const bool avx512_bf16 = a & (1u << 5);
  if (amx_bf16 && amx_state) return "AMX-BF16";
  if (avx512f && avx512_bf16 && avx512_state) return "AVX512-BF16";
#endif
  return "";
}

DtypeChoice choose_dtype(std::optional<at::ScalarType> dtype, const c10::Device& device, const ModelConfig& config,
                         const std::string& native_bf16) {
  if (dtype == at::kHalf && device.is_cpu())
    throw OptionError("dtype", option_name("dtype") + " fp16 is not supported on the CPU (its matmuls have no fp16 kernels): use fp32 or bf16");
  if (dtype) return {*dtype, "asked for"};
  const std::string ckpt = config.torch_dtype.empty() ? "no torch_dtype" : config.torch_dtype;
  if (device.is_cpu()) {
    if (config.torch_dtype != "bfloat16") return {at::kFloat, "auto: the checkpoint's " + ckpt + " is not bfloat16"};
    if (native_bf16.empty())
      return {at::kFloat, "auto: the checkpoint is bfloat16, but this CPU has no native bf16 arithmetic (AVX512-BF16 or AMX)"};
    return {at::kBFloat16, "auto: the checkpoint's bfloat16, computed natively by this CPU (" + native_bf16 + ")"};
  }
  if (config.torch_dtype == "bfloat16") return {at::kBFloat16, "auto: the checkpoint's bfloat16"};
  if (config.torch_dtype == "float16") return {at::kHalf, "auto: the checkpoint's float16"};
  return {at::kFloat, "auto: the checkpoint's " + ckpt};
}

at::ScalarType resolve_dtype(std::optional<at::ScalarType> dtype, const c10::Device& device,
                             const ModelConfig& config) {
  return choose_dtype(dtype, device, config, device.is_cpu() ? cpu_native_bf16() : "").dtype;
}

std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "fp32";
    case at::kBFloat16: return "bf16";
    case at::kHalf: return "fp16";
    default: return c10::toString(t);
  }
}

void use_exact_fp32(const c10::Device& device, at::ScalarType dtype) {
  // fp32 on a GPU means fp32: no TF32 shortcuts in matmuls (they cost ~1e-2 in losses).
  if (device.is_cuda() && dtype == at::kFloat) {
    at::globalContext().setAllowTF32CuBLAS(false);
    at::globalContext().setFloat32MatmulPrecision("highest");
  }
}

int available_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

std::string set_threads(int threads) {
  const int cpus = available_cpus();
  if (threads < 0) throw OptionError("threads", option_name("threads") + " must be >= 0, got " + std::to_string(threads));
  std::string note;
  if (threads > cpus) {
    note = option_name("threads") + " " + std::to_string(threads) + ": this process may run on " + std::to_string(cpus) +
           " CPUs, so it uses " + std::to_string(cpus) + " threads (more only wait on each other; 0 = all of them)";
    threads = cpus;
  }
  at::set_num_threads(threads > 0 ? threads : cpus);
  return note;
}

void check_finite(const at::Tensor& t, const std::string& what) {
  if (!at::isFloatingType(t.scalar_type()) || t.numel() == 0) return;
  const at::Tensor flat = t.reshape({-1});
  constexpr int64_t kChunk = int64_t{1} << 24;  // elements checked at once (bounds the mask's memory)
  for (int64_t s = 0; s < flat.numel(); s += kChunk) {
    const at::Tensor part = flat.narrow(0, s, std::min(kChunk, flat.numel() - s));
    const at::Tensor bad = at::isfinite(part).logical_not();
    if (!bad.any().item<bool>()) continue;
    const int64_t k = bad.nonzero()[0][0].item<int64_t>();
    throw CheckpointError(what + ": holds a non-finite value (" + std::to_string(part[k].item<double>()) +
                          ") at flat index " + std::to_string(s + k) + "; the checkpoint is damaged");
  }
}

// Weights of the decoder layers that the model the config describes would not use (a shared
// expert with shared_expert_intermediate_size 0, experts on layers the config makes dense): the
// config describes another model than the weights, and what would be scored is not the model.
static void check_every_layer_tensor_is_used(const Checkpoint& ckpt, nn::CausalLM& model) {
  const ModelConfig& c = ckpt.config();
  std::set<std::string> used;
  for (const auto& p : model->named_parameters(/*recurse=*/true)) used.insert(source_of(c, p.key()).tensor);
  std::vector<std::string> left;
  const std::string prefix = "model.layers.";
  for (const auto& name : ckpt.tensor_names()) {
    if (used.count(name) || name.compare(0, prefix.size(), prefix) != 0) continue;
    const long long layer = std::strtoll(name.c_str() + prefix.size(), nullptr, 10);
    if (layer < 0 || layer >= c.num_hidden_layers) continue;  // e.g. DeepSeek-V3's multi-token-prediction layer
    if (name.size() >= 8 && name.compare(name.size() - 8, 8, "inv_freq") == 0) continue;  // a buffer, not a weight
    left.push_back(name);
  }
  if (left.empty()) return;
  std::string field = "the architecture's fields";
  if (left[0].find("shared_expert") != std::string::npos)
    field = "shared_expert_intermediate_size (" + std::to_string(c.shared_expert_intermediate_size) + ")";
  else if (left[0].find("experts") != std::string::npos || left[0].find(".gate.") != std::string::npos)
    field = "num_experts (" + std::to_string(c.num_experts) + "), mlp_only_layers or decoder_sparse_step";
  throw CheckpointError(ckpt.dir().string() + "/config.json: the checkpoint holds " + std::to_string(left.size()) +
                        " weight(s) of its decoder layers that this config leaves unused (first: '" + left[0] +
                        "'): check " + field + "; scoring without them would score another model");
}

nn::CausalLM load_causal_lm(const Checkpoint& ckpt, const c10::Device& first, at::ScalarType dtype,
                            const std::vector<c10::Device>& layer_devices) {
  nn::CausalLM model(ckpt.config());
  check_every_layer_tensor_is_used(ckpt, model);
  const std::vector<c10::Device> placed = place_layers(ckpt.config().num_hidden_layers, layer_devices);
  model->layer_device = placed;
  // A parameter's device: its layer's; the final norm and the output head on the last device.
  auto device_of = [&](const std::string& name) {
    if (placed.empty()) return first;
    const std::string prefix = "model.layers.";
    if (name.compare(0, prefix.size(), prefix) == 0)
      return placed[static_cast<size_t>(std::strtoll(name.c_str() + prefix.size(), nullptr, 10))];
    if (name.rfind("model.norm.", 0) == 0 || name.rfind("lm_head.", 0) == 0) return layer_devices.back();
    return layer_devices.front();
  };
  for (auto& item : model->named_parameters(/*recurse=*/true)) {
    at::Tensor& p = item.value();
    const c10::Device device = device_of(item.key());
    const TensorSource src = source_of(ckpt.config(), item.key());
    const std::string& name = src.tensor;
    const SafetensorsFile& file = ckpt.file_of(name);
    const TensorInfo& info = file.info(name);
    std::vector<int64_t> want = p.sizes().vec();
    if (src.rows >= 0) want[0] = src.fused_rows;  // a fused tensor: rows of it
    if (info.shape != want)
      throw CheckpointError(file.path().string() + ": tensor '" + name + "': expected shape " + shape_string(want) +
                            ", got " + shape_string(info.shape));
    at::Tensor t = file.tensor(name);  // throws for non-float dtypes
    if (src.rows >= 0) t = t.narrow(0, src.row_begin, src.rows);
    const bool converted = t.scalar_type() != dtype;
    if (t.device() != device || converted) t = t.to(device, dtype);
    check_finite(t, file.path().string() + ": tensor '" + name + "'" +
                        (converted ? " (in " + dtype_name(dtype) + ")" : ""));
    p.set_data(t);
  }
  return model;
}

namespace {

// The first number in a file (-1 when there is none: absent, "max", empty).
int64_t number_in(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::string text;
  if (!(in >> text) || text.empty() || !std::isdigit(static_cast<unsigned char>(text[0]))) return -1;
  return std::strtoll(text.c_str(), nullptr, 10);
}

// What the memory controller leaves to the cgroup at `dir` (under `mount`) and its ancestors up
// to the mount: the least of each level's limit less its use (-1 when no level sets one).
int64_t cgroup_room(const std::filesystem::path& mount, const std::string& group, const char* limit_file,
                    const char* usage_file) {
  int64_t room = -1;
  std::filesystem::path rel = std::filesystem::path(group).relative_path();
  for (;;) {
    const std::filesystem::path dir = mount / rel;
    const int64_t limit = number_in(dir / limit_file), used = number_in(dir / usage_file);
    // cgroup v1 writes "no limit" as a number near 2^63.
    if (limit >= 0 && limit < (int64_t{1} << 60) && used >= 0) {
      const int64_t left = std::max<int64_t>(0, limit - used);
      room = room < 0 ? left : std::min(room, left);
    }
    if (rel.empty()) break;
    rel = rel.parent_path();
    if (rel == rel.root_path()) rel.clear();
  }
  return room;
}

}  // namespace

int64_t available_memory_bytes(const std::filesystem::path& root) {
  int64_t avail = 0;
  {
    std::ifstream in(root / "proc/meminfo");
    std::string key, unit;
    int64_t kb = 0;
    while (in >> key >> kb) {
      std::getline(in, unit);
      if (key == "MemAvailable:") avail = kb * 1024;
    }
  }
  // This process's own cgroup (a Slurm job's --mem, a container's limit), found through
  // /proc/self/cgroup: "0::/path" for cgroup v2, "N:...memory...:/path" for v1's memory
  // controller; its limit and its ancestors' lower what MemAvailable says.
  std::ifstream groups(root / "proc/self/cgroup");
  int64_t room = -1;
  for (std::string line; std::getline(groups, line);) {
    const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    int64_t r = -1;
    if (line.compare(0, a, "0") == 0 && controllers.empty()) {
      r = cgroup_room(root / "sys/fs/cgroup", path, "memory.max", "memory.current");
    } else {
      bool memory = false;
      for (size_t s = 0; s <= controllers.size();) {
        const size_t e = std::min(controllers.find(',', s), controllers.size());
        memory = memory || controllers.compare(s, e - s, "memory") == 0;
        s = e + 1;
      }
      if (memory) r = cgroup_room(root / "sys/fs/cgroup/memory", path, "memory.limit_in_bytes", "memory.usage_in_bytes");
    }
    if (r >= 0) room = room < 0 ? r : std::min(room, r);
  }
  if (room >= 0 && (avail == 0 || room < avail)) avail = room;
  return avail;
}

int64_t resident_bytes() {
  std::ifstream in("/proc/self/statm");
  int64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

int64_t parse_memory_size(const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  const std::string unit = end ? std::string(end) : "";
  double scale = 1;
  std::string u = unit;
  for (char& ch : u) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (u == "K" || u == "KB" || u == "KIB") scale = 1024.0;
  else if (u == "M" || u == "MB" || u == "MIB") scale = 1024.0 * 1024;
  else if (u == "G" || u == "GB" || u == "GIB") scale = 1024.0 * 1024 * 1024;
  else if (u == "T" || u == "TB" || u == "TIB") scale = 1024.0 * 1024 * 1024 * 1024;
  else if (!unit.empty() || end == text.c_str()) scale = -1;
  if (scale < 0 || !(v >= 0) || v * scale > 9e18)
    throw UsageError("memory size '" + text + "': expected a number of bytes with an optional K, M, G or T, e.g. 16G");
  return static_cast<int64_t>(v * scale);
}

std::string memory_string(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  char buf[32];
  if (b >= 1024.0 * 1024 * 1024) std::snprintf(buf, sizeof(buf), "%.2f GB", b / (1024.0 * 1024 * 1024));
  else if (b >= 1024.0 * 1024) std::snprintf(buf, sizeof(buf), "%.1f MB", b / (1024.0 * 1024));
  else std::snprintf(buf, sizeof(buf), "%.0f KB", std::ceil(b / 1024.0));
  return buf;
}

LoadedModel load_model(const std::string& dir, const RuntimeOptions& rt) {
  std::string threads_note = set_threads(rt.threads);
  if (rt.max_memory < 0) throw OptionError("max_memory", option_name("max_memory") + " must be >= 0");
  const int64_t limit = rt.max_memory > 0 ? rt.max_memory : resident_bytes() + available_memory_bytes();
  LoadedModel m;
  if (!threads_note.empty()) m.notes.push_back(std::move(threads_note));
  m.device = rt.layer_devices.empty() ? rt.device : rt.layer_devices.front();
  if (m.device.is_cuda() && !at::hasCUDA())
    throw OptionError("device", option_name("device") + " " + m.device.str() + ": this build of libtorch has no CUDA, or no GPU is visible");
  m.checkpoint = with_context("loading checkpoint " + dir, [&] { return Checkpoint::open(dir); });
  // The modules are built in fp32 on the host before the weights replace their parameters.
  const int64_t build = m.checkpoint.config().parameter_count() * 4;
  if (resident_bytes() + build > limit)
    throw UsageError("loading checkpoint " + dir + ": building the model takes about " + memory_string(build) +
                     " of host memory (" + std::to_string(m.checkpoint.config().parameter_count()) +
                     " parameters in fp32), more than the " + memory_string(limit) + " memory limit");
  const DtypeChoice dc =
      choose_dtype(rt.dtype, m.device, m.checkpoint.config(), m.device.is_cpu() ? cpu_native_bf16() : "");
  m.dtype = dc.dtype;
  m.dtype_why = dc.why;
  use_exact_fp32(m.device, m.dtype);
  m.model = with_context("loading checkpoint " + dir,
                         [&] { return load_causal_lm(m.checkpoint, m.device, m.dtype, rt.layer_devices); });
  m.layer_devices = rt.layer_devices;
  m.model->eval();
  m.memory_budget = std::max<int64_t>(0, limit - resident_bytes());
  return m;
}

nlohmann::json describe_model(const LoadedModel& m) {
  const ModelConfig& c = m.checkpoint.config();
  nlohmann::json j;
  j["path"] = m.checkpoint.dir().string();
  j["architecture"] = c.architecture_name;
  j["model_type"] = c.model_type;
  j["layers"] = c.num_hidden_layers;
  j["heads"] = c.num_attention_heads;
  j["kv_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rope_theta"] = c.rope_theta;
  j["rope_scaling"] = rope_string(c.rope_scaling);
  j["sliding_window"] = c.sliding_window;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["qkv_bias"] = c.qkv_bias;
  j["qk_norm"] = c.qk_norm;
  if (c.qk_norm) j["qk_norm_over"] = c.qk_norm_whole ? "whole projection" : "each head";
  j["sublayer_norms"] = c.sandwich_norms ? "on the input, and on the output before the residual add"
                       : c.post_norms   ? "on the output, before the residual add"
                                        : "on the input";
  if (c.norm_unit_offset) j["norm_scale"] = "1 + weight";
  j["activation"] = c.activation == Activation::kSilu ? "silu" : c.activation == Activation::kGeluTanh ? "gelu_tanh" : "gelu";
  if (c.rotary_dim != c.head_dim) j["rotary_dim"] = c.rotary_dim;
  if (!c.sliding_layers.empty() || c.max_window_layers > 0) {
    nlohmann::json windowed = nlohmann::json::array();
    for (int64_t l = 0; l < c.num_hidden_layers; ++l)
      if (c.window_for_layer(l) > 0) windowed.push_back(l);
    j["window_layers"] = windowed;
  }
  if (c.attention_scale > 0) j["attention_scale"] = c.attention_scale;
  if (c.attn_softcap > 0) j["attn_logit_softcap"] = c.attn_softcap;
  if (c.final_softcap > 0) j["final_logit_softcap"] = c.final_softcap;
  if (c.embed_scale) j["embedding_scale"] = "sqrt(hidden_size)";
  if (c.rope_local_theta > 0) j["rope_local_theta"] = c.rope_local_theta;
  if (c.num_experts > 0) {
    nlohmann::json sparse = nlohmann::json::array();
    for (int64_t l = 0; l < c.num_hidden_layers; ++l)
      if (c.sparse_layer(l)) sparse.push_back(l);
    j["experts"] = {{"count", c.num_experts},
                    {"per_token", c.experts_per_token},
                    {"intermediate_size", c.moe_intermediate_size},
                    {"renormalised", c.norm_topk_prob},
                    {"shared_expert_intermediate_size", c.shared_expert_intermediate_size},
                    {"sparse_layers", sparse}};
  }
  j["torch_dtype"] = c.torch_dtype;

  int64_t params = 0;
  std::set<std::string> used;
  for (const auto& p : m.model->named_parameters()) {
    params += p.value().numel();
    used.insert(source_of(c, p.key()).tensor);
  }
  j["parameters"] = params;
  std::map<std::string, int64_t> dtypes;
  nlohmann::json files = nlohmann::json::array();
  uint64_t total = 0;
  for (const auto& f : m.checkpoint.files()) {
    for (const auto& [name, info] : f.tensors()) dtypes[info.dtype] += 1;
    files.push_back({{"name", f.path().filename().string()},
                     {"bytes", f.file_size()},
                     {"tensors", f.tensors().size()}});
    total += f.file_size();
  }
  j["tensor_dtypes"] = dtypes;
  j["files"] = files;
  j["total_bytes"] = total;
  nlohmann::json unused = nlohmann::json::array();
  for (const auto& name : m.checkpoint.tensor_names())
    if (!used.count(name)) unused.push_back(name);
  j["unused_tensors"] = unused;
  return j;
}

}  // namespace air
