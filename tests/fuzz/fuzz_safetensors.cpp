// safetensors: the header parser on any text, and a whole file (length prefix, header, data).

#include "air/safetensors.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace air;
  // As a header with a data section of a size taken from the input's length.
  fuzz::expect_only_air_errors([&] {
    parse_safetensors_header(std::string(reinterpret_cast<const char*>(data), size), size * 4, "fuzz");
  });
  // As a whole file: every tensor it admits is viewed and summed.
  fuzz::expect_only_air_errors([&] {
    const SafetensorsFile f = SafetensorsFile::open(fuzz::scratch_file("model.safetensors", data, size));
    for (const auto& [name, info] : f.tensors()) {
      if (info.dtype != "F32" && info.dtype != "F16" && info.dtype != "BF16") continue;
      (void)f.tensor(name).sum().item<double>();
    }
  });
  return 0;
}
