#pragma once
// What this build of air is and what it runs on: the facts a bug report needs (`air --version`),
// also kept in the meta sidecar of every score run.

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace air {

struct BuildInfo {
  std::string air_version;    // "0.1.0"
  std::string commit;         // "295b162a1c3e" ("+dirty" when built from changed files), or "unknown"
  std::string torch_version;  // libtorch's, "2.15.0" / "1.13.1"
  // CUDA code compiled into air itself (the library's CUDA translation unit).
  bool cuda = false;
  std::string cuda_version;               // the toolkit air was compiled with, "13.0"
  std::vector<std::string> cuda_archs;    // what air's CUDA code is compiled for: "sm_80", "sm_90", ...
  // libtorch's own build (at::show_config()).
  std::string torch_cuda_version;         // "13.2", "" without CUDA
  std::vector<std::string> torch_cuda_archs;
  std::string cudnn_version;              // "9.26.0", "" without cuDNN
  std::string blas;                       // "mkl", "open", ... (libtorch's BLAS_INFO)
  std::string blas_library;               // the BLAS shared library loaded in this process, if any
  std::string torch_library;              // the libtorch_cpu loaded in this process (which environment)
  std::string cudart_library;             // the CUDA runtime loaded, if any
  std::string cpu_capability;             // ATen's kernels: "AVX512", "AVX2", "DEFAULT"
  std::vector<std::string> cpu_features;  // what air's own kernels use here: "AVX2", "FMA", "AVX512-BF16", "AMX-BF16"
  bool fused_attention = false;           // scaled_dot_product_attention compiled in (libtorch >= 2.1)
  int cuda_devices = 0;                   // visible now
};

// Read once per process (later calls return the same facts).
const BuildInfo& build_info();

// Several lines, as `air --version` prints them.
std::string build_info_text(const BuildInfo& b);
nlohmann::ordered_json build_info_json(const BuildInfo& b);

// The parts of libtorch's at::show_config() text that BuildInfo keeps (exposed for tests).
struct TorchConfigFacts {
  std::string cuda_version, cudnn_version, blas, cpu_capability;
  std::vector<std::string> cuda_archs;
};
TorchConfigFacts parse_torch_config(const std::string& show_config);

}  // namespace air
