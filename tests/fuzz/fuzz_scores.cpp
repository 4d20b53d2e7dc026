// A score output as `air score --resume` reads it (torn last lines included).

#include "air/score_output.h"
#include "fuzz_util.h"

#include <spdlog/spdlog.h>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);  // a torn last line is logged; nothing to see here
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  air::fuzz::expect_only_air_errors([&] {
    std::uintmax_t whole = 0;
    const auto lines = air::read_score_lines(air::fuzz::scratch_file("scores.jsonl", data, size), &whole);
    if (whole > size) __builtin_trap();
    (void)lines;
  });
  return 0;
}
