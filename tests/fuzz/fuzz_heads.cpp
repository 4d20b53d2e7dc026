// A heads file (air probe's heads.json).

#include "air/heads_file.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  air::fuzz::expect_only_air_errors([&] {
    const air::HeadsFile h = air::read_heads_file(air::fuzz::scratch_file("heads.json", data, size));
    h.selected.validate(64, 64);
  });
  return 0;
}
