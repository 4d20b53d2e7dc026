#include "air/runtime.h"

#include "air/error.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Context.h>

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
  if (name == "fp16" || name == "float16") return at::kHalf;
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

void set_threads(int threads) {
  if (threads < 0) throw UsageError("--threads must be >= 0, got " + std::to_string(threads));
  const int n = threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency());
  at::set_num_threads(n);
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
    if (t.device() != device || t.scalar_type() != dtype) t = t.to(device, dtype);
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
