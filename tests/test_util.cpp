#include "test_util.h"

#include "air/safetensors.h"
#include "cli/cli.h"

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

namespace air::test {

fs::path fixture_dir(const std::string& name) { return fs::path(AIR_TEST_DATA_DIR) / "fixtures" / name; }
fs::path model_dir(const std::string& name) { return fs::path(AIR_MODELS_DIR) / name; }

RuntimeOptions test_runtime() {
  RuntimeOptions rt;
  rt.dtype = at::kFloat;  // parity is defined in fp32 (auto would pick a bf16 checkpoint's dtype on GPU)
  if (const char* d = std::getenv("AIR_TEST_DEVICE")) rt.device = parse_device(d);
  if (const char* t = std::getenv("AIR_TEST_DTYPE")) rt.dtype = parse_dtype(t);
  rt.threads = 0;
  return rt;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

nlohmann::json read_json(const fs::path& path) { return nlohmann::json::parse(read_text(path)); }

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

void write_raw_safetensors(const fs::path& path, const std::string& header,
                           const std::string& data) {
  std::string bytes(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  write_text(path, bytes + header + data);
}

void write_safetensors(const fs::path& path, const std::vector<RawTensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h += ' ';
  write_raw_safetensors(path, h, data);
}

std::vector<RawTensor> read_raw_tensors(const fs::path& path) {
  const std::string bytes = read_text(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  const auto infos = parse_safetensors_header(bytes.substr(8, n), bytes.size() - 8 - n, path);
  std::vector<RawTensor> out;
  for (const auto& [name, info] : infos)
    out.push_back({name, info.dtype, info.shape,
                   bytes.substr(8 + n + info.begin, info.end - info.begin)});
  return out;
}

void TempDirTest::SetUp() {
  std::random_device rd;
  tmp_ = fs::temp_directory_path() /
         ("air-test-" + std::to_string(rd()) + "-" + std::to_string(rd()));
  fs::create_directories(tmp_);
}

void TempDirTest::TearDown() {
  std::error_code ec;
  fs::remove_all(tmp_, ec);
}

fs::path TempDirTest::copy_fixture(const std::string& fixture, const std::string& name) {
  const fs::path dst = tmp_ / name;
  fs::create_directories(dst);
  for (const char* f : {"config.json", "model.safetensors"}) {
    fs::copy_file(fixture_dir(fixture) / f, dst / f, fs::copy_options::overwrite_existing);
    fs::permissions(dst / f, fs::perms::owner_read | fs::perms::owner_write,
                    fs::perm_options::add);
  }
  return dst;
}

void use_heads(std::vector<std::string>& args, const std::string& heads) {
  for (size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == "--num-heads") {
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i), args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
      break;
    }
  args.insert(args.end(), {"--heads", heads});
}

int run_air(const std::vector<std::string>& args, std::string* err) {
  testing::internal::CaptureStderr();
  const int rc = cli::run(args);
  const std::string e = testing::internal::GetCapturedStderr();
  if (err) *err = e;
  return rc;
}

}  // namespace air::test
