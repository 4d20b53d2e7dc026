// A tokenizer file (AIR_FUZZ_TOKENIZER_FILE: tokenizer.json or a SentencePiece tokenizer.model):
// loading, then encoding a fixed text and the input's own tail. The input is the file,
// optionally followed by the marker "#AIR-TEXT#" and text to encode (binary .model files hold
// NUL bytes, so the last marker splits).

#include "air/tokenizer.h"
#include "fuzz_util.h"

#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  constexpr std::string_view kMarker = "#AIR-TEXT#";
  const size_t at = input.rfind(kMarker);
  const size_t file_size = at == std::string_view::npos ? size : at;
  const std::string text(at == std::string_view::npos ? "" : input.substr(at + kMarker.size()));
  air::fuzz::expect_only_air_errors([&] {
    const auto tok = air::load_tokenizer(air::fuzz::scratch_file(AIR_FUZZ_TOKENIZER_FILE, data, file_size));
    for (const std::string& t : {std::string("Natalia sold clips to 48 of her friends in April.\n\n  x"), text}) {
      const air::Encoding e = tok->encode(t, true);
      for (size_t i = 0; i < e.ids.size(); ++i)
        if (e.ids[i] < 0 || e.ids[i] >= tok->vocab_size() || e.offsets[i].second > t.size()) __builtin_trap();
    }
  });
  return 0;
}
