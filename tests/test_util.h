#pragma once

#include "air/runtime.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace air::test {

namespace fs = std::filesystem;

// Vendored fixtures (tests/data/fixtures) and bundled models (models/).
fs::path fixture_dir(const std::string& name);
fs::path model_dir(const std::string& name);
nlohmann::json read_json(const fs::path& path);
std::string read_text(const fs::path& path);
void write_text(const fs::path& path, const std::string& text);

// Where parity tests run: AIR_TEST_DEVICE (default cpu) and AIR_TEST_DTYPE (default fp32).
RuntimeOptions test_runtime();

// Gives a score command line its heads file: appends --heads FILE and takes out --num-heads N
// (a probe setting, refused together with --heads).
void use_heads(std::vector<std::string>& args, const std::string& heads);

// Runs an air command line in this process; returns the exit code, stderr in *err.
int run_air(const std::vector<std::string>& args, std::string* err = nullptr);

// One tensor to write into a safetensors file.
struct RawTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};
// Writes a well-formed safetensors file (header padded to 8 bytes).
void write_safetensors(const fs::path& path, const std::vector<RawTensor>& tensors);
// Reads every tensor of a safetensors file back as RawTensor, in offset order.
std::vector<RawTensor> read_raw_tensors(const fs::path& path);
// Writes an 8-byte length, the header text as given, then `data`.
void write_raw_safetensors(const fs::path& path, const std::string& header,
                           const std::string& data);

// A fresh directory under the system temp dir, removed when the test ends.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  // Copies a fixture checkpoint into tmp_/name and returns that folder.
  fs::path copy_fixture(const std::string& fixture, const std::string& name);
  fs::path tmp_;
};

}  // namespace air::test
