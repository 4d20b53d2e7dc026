#include "air/runtime.h"

#include "air/error.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Context.h>

#include <sched.h>

#include <algorithm>
#include <thread>

namespace air {
namespace {

std::string shape_string(c10::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

c10::Device parse_device(const std::string& name) {
  if (name == "cpu") return c10::Device(c10::kCPU);
  if (name.rfind("cuda", 0) == 0) {
    c10::Device dev(c10::kCUDA);
    try {
      dev = c10::Device(name);
    } catch (const std::exception&) {
      throw UsageError("--device '" + name + "': expected cpu, cuda or cuda:N");
    }
    if (!at::hasCUDA())
      throw UsageError("--device " + name + ": this build of libtorch has no CUDA, or no GPU is visible");
    return dev;
  }
  throw UsageError("--device '" + name + "': expected cpu, cuda or cuda:N");
}

at::ScalarType resolve_dtype(const std::string& name, const c10::Device& device,
                             const ModelConfig& config) {
  if (name == "fp32" || name == "float32") return at::kFloat;
  if (name == "bf16" || name == "bfloat16") return at::kBFloat16;
  if (name == "fp16" || name == "float16") {
    if (device.is_cpu())
      throw UsageError("dtype fp16 is not supported on the CPU (its matmuls have no fp16 kernels): use fp32 or bf16");
    return at::kHalf;
  }
  if (name == "auto") {
    if (device.is_cpu()) return at::kFloat;
    if (config.torch_dtype == "bfloat16") return at::kBFloat16;
    if (config.torch_dtype == "float16") return at::kHalf;
    return at::kFloat;
  }
  throw UsageError("--dtype '" + name + "': expected auto, fp32, bf16 or fp16");
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

void set_threads(int threads) {
  const int cpus = available_cpus();
  if (threads < 0) throw UsageError("threads must be >= 0, got " + std::to_string(threads));
  if (threads > cpus)
    throw UsageError("threads " + std::to_string(threads) + ": this process may run on " +
                     std::to_string(cpus) + " CPUs; more threads than CPUs only wait on each other "
                     "(0 = all of them)");
  at::set_num_threads(threads > 0 ? threads : cpus);
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

nn::CausalLM load_causal_lm(const Checkpoint& ckpt, const c10::Device& device,
                            at::ScalarType dtype) {
  nn::CausalLM model(ckpt.config());
  for (auto& item : model->named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    at::Tensor& p = item.value();
    const SafetensorsFile& file = ckpt.file_of(name);
    const TensorInfo& info = file.info(name);
    if (c10::IntArrayRef(info.shape) != p.sizes())
      throw CheckpointError(file.path().string() + ": tensor '" + name + "': expected shape " +
                            shape_string(p.sizes()) + ", got " + shape_string(info.shape));
    at::Tensor t = file.tensor(name);  // throws for non-float dtypes
    const bool converted = t.scalar_type() != dtype;
    if (t.device() != device || converted) t = t.to(device, dtype);
    check_finite(t, file.path().string() + ": tensor '" + name + "'" +
                        (converted ? " (in " + dtype_name(dtype) + ")" : ""));
    p.set_data(t);
  }
  return model;
}

LoadedModel load_model(const std::string& dir, const RuntimeOptions& rt) {
  set_threads(rt.threads);
  LoadedModel m;
  m.device = parse_device(rt.device);
  m.checkpoint = with_context("loading checkpoint " + dir, [&] { return Checkpoint::open(dir); });
  m.dtype = resolve_dtype(rt.dtype, m.device, m.checkpoint.config());
  use_exact_fp32(m.device, m.dtype);
  m.model = with_context("loading checkpoint " + dir,
                         [&] { return load_causal_lm(m.checkpoint, m.device, m.dtype); });
  m.model->eval();
  return m;
}

}  // namespace air
