// config.json: parsing and the values derived from it.

#include "air/config.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  air::fuzz::expect_only_air_errors([&] {
    const air::ModelConfig c =
        air::parse_model_config(std::string(reinterpret_cast<const char*>(data), size), "config.json");
    (void)c.parameter_count();
    for (int64_t l = 0; l < std::min<int64_t>(c.num_hidden_layers, 64); ++l) (void)c.window_for_layer(l);
  });
  return 0;
}
