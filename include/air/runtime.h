#pragma once

#include "air/checkpoint.h"
#include "air/nn/model.h"

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>
#include <c10/core/ScalarType.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace air {

// Where and how the model runs.
struct RuntimeOptions {
  c10::Device device{c10::kCPU};
  // Several devices: the decoder layers split into contiguous ranges over them in this order
  // (as HF's device_map="auto"), the embeddings on the first and the final norm and output head
  // on the last; `device` is the first. Empty: everything on `device`.
  std::vector<c10::Device> layer_devices;
  std::optional<at::ScalarType> dtype;  // fp32, bf16 or fp16; empty: fp32 on CPU, the checkpoint's on GPU
  int threads = 0;             // intra-op threads (0 = all CPUs this process may use)
  int64_t max_memory = 0;      // bytes the process may use in all (0 = the memory available at start)
};

// Bytes this process may still take: MemAvailable of /proc/meminfo, lowered to what the memory
// limits of this process's own cgroup and its ancestors leave (a Slurm job's --mem, a container),
// cgroup v2 or v1, found through /proc/self/cgroup. `root` prefixes /proc and /sys (tests).
int64_t available_memory_bytes(const std::filesystem::path& root = "/");
// Resident bytes of this process now (/proc/self/statm).
int64_t resident_bytes();
// "16G", "512M", "1.5G", "2048" (bytes; K, M, G, T are powers of 1024) -> bytes; throws
// UsageError for anything else.
int64_t parse_memory_size(const std::string& text);
// "1.5 GB" for messages.
std::string memory_string(int64_t bytes);

// "cpu", "cuda" or "cuda:N"; throws OptionError ("device") for a bad name or an absent GPU.
c10::Device parse_device(const std::string& name);
// "cuda:0,cuda:1" -> the devices in order (each as parse_device reads it).
std::vector<c10::Device> parse_devices(const std::string& list);
// The device of each of `layers` layers split into contiguous ranges over `devices`, as evenly as
// counts allow (the first ranges one layer longer). Empty devices: empty.
std::vector<c10::Device> place_layers(int64_t layers, const std::vector<c10::Device>& devices);
// "cpu" or "cuda:0,cuda:1".
std::string devices_string(const std::vector<c10::Device>& devices);
// "fp32", "bf16", "fp16" (or float32, bfloat16, float16); "auto": empty. OptionError ("dtype")
// for another name.
std::optional<at::ScalarType> parse_dtype(const std::string& name);
// The bf16 arithmetic this CPU has natively: "AMX-BF16", "AVX512-BF16", or "" (none, or not x86).
// Checked at run time (CPUID, and XGETBV for the operating system's support of the registers).
std::string cpu_native_bf16();

// The dtype a model runs in, and why.
struct DtypeChoice {
  at::ScalarType dtype = at::kFloat;
  std::string why;  // "asked for", "the checkpoint's bfloat16, computed natively by this CPU (AVX512-BF16)", ...
};
// The one asked for; else (auto) on a GPU the checkpoint's torch_dtype, on a CPU bf16 when the
// checkpoint is bf16 and the CPU computes bf16 natively (`native_bf16`, as cpu_native_bf16()
// says), else fp32. Throws OptionError for fp16 on the CPU.
DtypeChoice choose_dtype(std::optional<at::ScalarType> dtype, const c10::Device& device, const ModelConfig& config,
                         const std::string& native_bf16);
// choose_dtype(...).dtype with this CPU's native_bf16.
at::ScalarType resolve_dtype(std::optional<at::ScalarType> dtype, const c10::Device& device,
                             const ModelConfig& config);
// On a GPU in fp32, turns TF32 matmuls off so that fp32 results are fp32-exact.
void use_exact_fp32(const c10::Device& device, at::ScalarType dtype);
// CPUs this process may run on (its affinity mask: what Slurm or taskset granted).
int available_cpus();
// Sets torch's intra-op thread count (0 = all available CPUs). More threads than the CPUs this
// process may run on are capped to them (a shared config must run on smaller nodes): the
// returned note says so ("" when nothing was capped). Throws OptionError for a negative count.
std::string set_threads(int threads);
// Throws CheckpointError "<what>: holds a non-finite value (nan) at flat index I ..." when a
// floating tensor holds NaN or infinity. Reads the tensor in chunks.
void check_finite(const at::Tensor& t, const std::string& what);
// "fp32", "bf16", "fp16".
std::string dtype_name(at::ScalarType t);

// Builds the model for ckpt and fills every parameter from it: each must be present with the
// checkpoint's shape and a floating dtype. Tensors already on the device in the right dtype
// are used in place (no copy). Throws CheckpointError naming file, tensor, expected and got.
// With layer_devices (see RuntimeOptions), the layers are placed over them.
nn::CausalLM load_causal_lm(const Checkpoint& ckpt, const c10::Device& device,
                            at::ScalarType dtype, const std::vector<c10::Device>& layer_devices = {});

// A model ready to run, with what it was loaded from.
struct LoadedModel {
  Checkpoint checkpoint;
  nn::CausalLM model{nullptr};
  c10::Device device{c10::kCPU};  // the first device
  std::vector<c10::Device> layer_devices;  // the devices the layers are split over (else empty; see model->layer_device)
  at::ScalarType dtype = at::kFloat;
  std::string dtype_why;  // DtypeChoice::why
  std::vector<std::string> notes;  // what the caller should tell (a --threads capped to the CPUs)
  // Bytes left for work once the model is loaded: the limit (RuntimeOptions::max_memory, or the
  // memory available at start) less what the process holds after loading.
  int64_t memory_budget = 0;
};

// Opens DIR and loads it under the runtime options (threads set too). Refuses (UsageError, with
// the figures) a model whose parameters, built in fp32, would not fit the memory limit.
LoadedModel load_model(const std::string& dir, const RuntimeOptions& rt);

// What a loaded checkpoint holds (`air inspect --json`): architecture and shapes, parameters,
// tensor dtypes, files, and tensors the model does not use.
nlohmann::json describe_model(const LoadedModel& m);

}  // namespace air
