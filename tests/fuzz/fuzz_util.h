#pragma once

// Shared by the libFuzzer targets: a scratch file per process for loaders that read paths, and
// the rule that only air::Error may escape a loader (anything else is a finding).

#include "air/error.h"

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace air::fuzz {

// `name` under a directory of this process's own, holding `bytes`.
inline std::string scratch_file(const std::string& name, const uint8_t* data, size_t size) {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("air-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  const std::string path = (dir / name).string();
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data),
                                                                static_cast<std::streamsize>(size));
  return path;
}

// Runs fn; air::Error (a clear refusal) is the expected outcome for bad input.
template <class Fn>
void expect_only_air_errors(Fn&& fn) {
  try {
    fn();
  } catch (const air::Error&) {
  }
}

}  // namespace air::fuzz
