#include "air/build_info.h"

#include "air/nn/model.h"
#include "air/runtime.h"
#include "nn/cpu_kernels.h"

#include "air_commit.h"  // generated at build time (cmake/commit.cmake)

#include <ATen/Version.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <fstream>
#include <regex>
#include <sstream>

#ifdef AIR_WITH_CUDA
namespace air::cuda_build {
std::string toolkit_version();
std::string archs();
}  // namespace air::cuda_build
#endif

namespace air {

namespace {

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

// The path of the first shared library mapped into this process whose file name matches `name`.
std::string loaded_library(const std::regex& name) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  std::smatch m;
  while (std::getline(maps, line))
    if (std::regex_search(line, m, name)) return m[1].str();
  return "";
}

std::vector<std::string> cpu_features() {
  std::vector<std::string> f;
#if defined(__x86_64__) || defined(__i386__)
  if (__builtin_cpu_supports("avx2")) f.push_back("AVX2");
  if (__builtin_cpu_supports("fma")) f.push_back("FMA");
  if (__builtin_cpu_supports("avx512f")) f.push_back("AVX512F");
#endif
  const std::string bf16 = cpu_native_bf16();
  if (!bf16.empty()) f.push_back(bf16);
  return f;
}

}  // namespace

TorchConfigFacts parse_torch_config(const std::string& text) {
  TorchConfigFacts t;
  std::smatch m;
  auto setting = [&](const char* key) {
    const std::regex re(std::string("[ ,]") + key + "=([^,\\s]*)");
    return std::regex_search(text, m, re) ? m[1].str() : std::string();
  };
  t.cuda_version = setting("CUDA_VERSION");
  t.cudnn_version = setting("CUDNN_VERSION");
  t.blas = setting("BLAS_INFO");
  static const std::regex kCapability(R"(CPU capability usage: (\S+))");
  if (std::regex_search(text, m, kCapability)) t.cpu_capability = m[1].str();
  static const std::regex kArch(R"(arch=compute_(\d+)a?,code=(sm|compute)_(\d+a?))");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), kArch); it != std::sregex_iterator(); ++it) {
    const std::string a = (*it)[2].str() + "_" + (*it)[3].str();
    if (std::find(t.cuda_archs.begin(), t.cuda_archs.end(), a) == t.cuda_archs.end()) t.cuda_archs.push_back(a);
  }
  return t;
}

const BuildInfo& build_info() {
  static const BuildInfo info = [] {
    BuildInfo b;
    b.air_version = AIR_VERSION;
    b.commit = AIR_COMMIT;
    b.torch_version = TORCH_VERSION;
#ifdef AIR_WITH_CUDA
    b.cuda = true;
    b.cuda_version = cuda_build::toolkit_version();
    std::stringstream archs(cuda_build::archs());
    for (std::string a; std::getline(archs, a, ',');) {
      const int v = std::stoi(a);  // 800 -> sm_80, 1000 -> sm_100
      b.cuda_archs.push_back("sm_" + std::to_string(v / 10));
    }
#endif
    const TorchConfigFacts t = parse_torch_config(at::show_config());
    b.torch_cuda_version = t.cuda_version;
    b.torch_cuda_archs = t.cuda_archs;
    b.cudnn_version = t.cudnn_version;
    b.blas = t.blas;
    b.blas_library = loaded_library(std::regex(R"((/\S*/(lib(open)?blas[^/\s]*|libmkl_[^/\s]*|libblis[^/\s]*)))"));
    b.torch_library = loaded_library(std::regex(R"((/\S*/libtorch_cpu\.so[^/\s]*))"));
    b.cudart_library = loaded_library(std::regex(R"((/\S*/libcudart\.so[^/\s]*))"));
    b.cpu_capability = t.cpu_capability;
    b.cpu_features = cpu_features();
    b.fused_attention = nn::fused_attention_compiled();
    b.cuda_devices = static_cast<int>(torch::cuda::device_count());
    return b;
  }();
  return info;
}

std::string build_info_text(const BuildInfo& b) {
  std::ostringstream o;
  auto or_none = [](const std::string& s) { return s.empty() ? std::string("none") : s; };
  o << "air " << b.air_version << " (commit " << b.commit << ")\n";
  o << "libtorch " << b.torch_version << (b.fused_attention ? " (fused attention)" : " (explicit attention only)")
    << ", CUDA " << or_none(b.torch_cuda_version);
  if (!b.torch_cuda_archs.empty()) o << " [" << join(b.torch_cuda_archs) << "]";
  o << ", cuDNN " << or_none(b.cudnn_version) << "\n";
  o << "CUDA compiled into air: ";
  if (b.cuda)
    o << "yes, toolkit " << b.cuda_version << ", architectures " << join(b.cuda_archs) << "\n";
  else
    o << "no\n";
  o << "CUDA devices visible: " << b.cuda_devices << "\n";
  o << "loaded: " << or_none(b.torch_library);
  if (!b.cudart_library.empty()) o << ", " << b.cudart_library;
  o << "\n";
  o << "BLAS: " << or_none(b.blas);
  if (!b.blas_library.empty()) o << " (" << b.blas_library << ")";
  o << "\n";
  o << "CPU: ATen kernels " << or_none(b.cpu_capability) << "; features " << or_none(join(b.cpu_features)) << "\n";
  return o.str();
}

nlohmann::ordered_json build_info_json(const BuildInfo& b) {
  nlohmann::ordered_json j;
  j["air"] = b.air_version;
  j["commit"] = b.commit;
  j["libtorch"] = b.torch_version;
  j["fused_attention"] = b.fused_attention;
  j["cuda"] = {{"compiled", b.cuda}, {"toolkit", b.cuda_version}, {"architectures", b.cuda_archs}};
  j["libtorch_cuda"] = {{"version", b.torch_cuda_version}, {"architectures", b.torch_cuda_archs}};
  j["cudnn"] = b.cudnn_version;
  j["cuda_devices"] = b.cuda_devices;
  j["blas"] = {{"libtorch", b.blas}, {"library", b.blas_library}};
  j["loaded"] = {{"libtorch", b.torch_library}, {"cudart", b.cudart_library}};
  j["cpu"] = {{"aten_capability", b.cpu_capability}, {"features", b.cpu_features}};
  return j;
}

}  // namespace air
