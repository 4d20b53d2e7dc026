// What `air --version` and the meta sidecar say about the build: libtorch's own description of
// itself parsed right, and the facts of the libtorch this binary was built against.

#include "air/build_info.h"
#include "air/nn/model.h"
#include "test_util.h"

#include <torch/version.h>

#include <cstdio>

namespace air::test {
namespace {

// at::show_config() of the PyPI wheel torch 2.15.0+cu132 (torch.__config__.show()), abridged.
constexpr const char* kTorch215 =
    "PyTorch built with:\n"
    "  - GCC 13.3\n"
    "  - C++ Version: 202002\n"
    "  - Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605 for Intel(R) 64 architecture applications\n"
    "  - CPU capability usage: AVX512\n"
    "  - Build settings: BLAS_INFO=mkl, BUILD_TYPE=Release, COMMIT_SHA=d0f2af8b66b20da4baa50644c0cd3f887a2eae2e, "
    "CUDA_FLAGS= -DLIBCUDACXX_ENABLE_SIMPLIFIED_COMPLEX_OPERATIONS -Xfatbin -compress-all -DONNX_NAMESPACE=onnx_torch "
    "-gencode arch=compute_75,code=sm_75 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_86,code=sm_86 "
    "-gencode arch=compute_90,code=sm_90 -gencode arch=compute_100,code=sm_100 -gencode arch=compute_120,code=sm_120 "
    "-Xcudafe --diag_suppress=cc_clobber_ignored --expt-relaxed-constexpr, CUDA_VERSION=13.2, CUDNN_VERSION=9.26.0, "
    "CXX_COMPILER=/opt/rh/gcc-toolset-13/root/usr/bin/c++, LAPACK_INFO=mkl, TORCH_VERSION=2.15.0, USE_CUDA=1, "
    "USE_CUDNN=ON, USE_NCCL=ON, USE_OPENMP=ON, \n";

// Debian's libtorch 1.13.1 (CPU), abridged the same way.
constexpr const char* kDebian113 =
    "PyTorch built with:\n"
    "  - GCC 12.2\n"
    "  - C++ Version: 201402\n"
    "  - Intel(R) MKL-DNN v2.6.3 (Git Hash N/A)\n"
    "  - OpenMP 201511 (a.k.a. OpenMP 4.5)\n"
    "  - LAPACK is enabled (usually provided by MKL)\n"
    "  - CPU capability usage: AVX2\n"
    "  - Build settings: BLAS_INFO=generic, BUILD_TYPE=RelWithDebInfo, CXX_COMPILER=/usr/bin/c++, CXX_FLAGS=-Wdate-time "
    "-D_FORTIFY_SOURCE=2 -g -O2 -fPIC -Wno-narrowing -Wall -Wextra, LAPACK_INFO=generic, PERF_WITH_AVX=1, "
    "PERF_WITH_AVX2=1, PERF_WITH_AVX512=1, TORCH_VERSION=1.13.0, USE_CUDA=OFF, USE_CUDNN=OFF, USE_EXCEPTION_PTR=1, "
    "USE_GFLAGS=ON, USE_GLOG=ON, USE_MKLDNN=ON, USE_MPI=OFF, USE_NCCL=OFF, USE_NNPACK=OFF, USE_OPENMP=ON, USE_ROCM=OFF, \n";

// What a shell command prints (stdout and stderr); its exit status in *status.
std::string output_of(const std::string& cmd, int* status) {
  std::string out;
  std::FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) {
    *status = -1;
    return out;
  }
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  *status = ::pclose(p);
  return out;
}

TEST(BuildInfoTest, ParsesLibtorchsDescriptionOfItself) {
  const TorchConfigFacts w = parse_torch_config(kTorch215);
  EXPECT_EQ(w.cuda_version, "13.2");
  EXPECT_EQ(w.cudnn_version, "9.26.0");
  EXPECT_EQ(w.blas, "mkl");
  EXPECT_EQ(w.cpu_capability, "AVX512");
  EXPECT_EQ(w.cuda_archs, (std::vector<std::string>{"sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"}));
  const TorchConfigFacts d = parse_torch_config(kDebian113);
  EXPECT_EQ(d.cuda_version, "");
  EXPECT_EQ(d.cudnn_version, "");
  EXPECT_EQ(d.blas, "generic");
  EXPECT_EQ(d.cpu_capability, "AVX2");
  EXPECT_TRUE(d.cuda_archs.empty());
}

TEST(BuildInfoTest, DescribesTheLibtorchBuiltAgainst) {
  const BuildInfo& b = build_info();
  EXPECT_EQ(b.torch_version, TORCH_VERSION);
  EXPECT_EQ(b.air_version, AIR_VERSION);
  EXPECT_FALSE(b.commit.empty());
  EXPECT_EQ(b.fused_attention, TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1));
  // CUDA compiled into air only where libtorch has CUDA, and then with architectures.
  if (b.cuda) {
    EXPECT_FALSE(b.torch_cuda_version.empty());
    EXPECT_FALSE(b.cuda_archs.empty());
    EXPECT_EQ(b.cuda_version.substr(0, b.cuda_version.find('.')),
              b.torch_cuda_version.substr(0, b.torch_cuda_version.find('.')))
        << "the toolkit air compiled with and libtorch's CUDA differ in major version";
  }
  EXPECT_FALSE(b.cpu_capability.empty());
  // The libtorch loaded is the one built against (the library folder of its CMake files).
  EXPECT_NE(b.torch_library.find("libtorch_cpu.so"), std::string::npos) << b.torch_library;
  EXPECT_EQ(b.cudart_library.empty(), b.torch_cuda_version.empty()) << b.cudart_library;
  const auto j = build_info_json(b);
  EXPECT_EQ(j["libtorch"], TORCH_VERSION);
  EXPECT_EQ(j["cuda"]["compiled"], b.cuda);
}

TEST(BuildInfoTest, VersionFlagPrintsIt) {
  int status = 0;
  const std::string out = output_of(std::string(AIR_EXE) + " --version", &status);
  ASSERT_EQ(status, 0) << out;
  EXPECT_EQ(out, build_info_text(build_info()));
  EXPECT_EQ(out.rfind("air " AIR_VERSION " (commit ", 0), 0u) << out;
  EXPECT_NE(out.find("libtorch " TORCH_VERSION), std::string::npos) << out;
  EXPECT_NE(out.find(build_info().cuda ? "CUDA compiled into air: yes, toolkit " : "CUDA compiled into air: no"),
            std::string::npos) << out;
}

#ifdef AIR_WHEEL_NVIDIA_DIR
// A PyTorch wheel's CUDA libraries are the ones loaded, even when LD_LIBRARY_PATH points at a CUDA
// toolkit's older copies (as `module load cuda` does).
TEST(BuildInfoTest, TheWheelsCudaLibrariesWinOverLdLibraryPath) {
  int status = 0;
  const std::string out = output_of(std::string("LD_LIBRARY_PATH=/usr/local/cuda/lib64 ") + AIR_EXE + " --version", &status);
  ASSERT_EQ(status, 0) << out;
  const size_t at = out.find("libcudart.so");
  ASSERT_NE(at, std::string::npos) << out;
  const size_t begin = out.rfind(' ', at) + 1;
  const std::string cudart = out.substr(begin, out.find('\n', at) - begin);
  EXPECT_EQ(fs::weakly_canonical(cudart).string().rfind(AIR_WHEEL_NVIDIA_DIR, 0), 0u) << cudart << "\n" << out;
}
#endif

}  // namespace
}  // namespace air::test
