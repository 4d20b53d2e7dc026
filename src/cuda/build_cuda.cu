// The CUDA translation unit of air's library: compiled by nvcc for each architecture of
// TORCH_CUDA_ARCH_LIST, it reports what it was compiled with.
#include <cuda_runtime_api.h>

#include <string>

namespace air::cuda_build {

std::string toolkit_version() {
  return std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10);
}

// nvcc (11.5 and later) defines __CUDA_ARCH_LIST__ in every compilation pass as the list of
// architectures it compiles for, e.g. 800,900,1000.
std::string archs() {
#ifdef __CUDA_ARCH_LIST__
#define AIR_STR2(...) #__VA_ARGS__
#define AIR_STR(...) AIR_STR2(__VA_ARGS__)
  return AIR_STR(__CUDA_ARCH_LIST__);
#else
  return "";
#endif
}

}  // namespace air::cuda_build
