// tokenizer.json: loading, then encoding a fixed text and the input's own tail. The input is
// the file, optionally followed by "\n\x00" and text to encode.

#include "air/tokenizer.h"
#include "fuzz_util.h"

#include <cstring>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* sep = static_cast<const char*>(std::memchr(data, 0, size));
  const size_t file_size = sep ? static_cast<size_t>(sep - reinterpret_cast<const char*>(data)) : size;
  const std::string text = sep ? std::string(sep + 1, reinterpret_cast<const char*>(data) + size) : "";
  air::fuzz::expect_only_air_errors([&] {
    const auto tok = air::load_tokenizer(air::fuzz::scratch_file("tokenizer.json", data, file_size));
    for (const std::string& t : {std::string("Natalia sold clips to 48 of her friends in April.\n\n  x"), text}) {
      const air::Encoding e = tok->encode(t, true);
      for (size_t i = 0; i < e.ids.size(); ++i)
        if (e.ids[i] < 0 || e.ids[i] >= tok->vocab_size() || e.offsets[i].second > t.size()) __builtin_trap();
    }
  });
  return 0;
}
