#include "cli/io.h"

#include "air/error.h"

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <iostream>

namespace air::cli {

std::string format_float(float v) {
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, res.ptr);
}

std::string json_change(const std::string& what, const nlohmann::json& before, const nlohmann::json& now) {
  if (before == now) return "";
  auto show = [](const nlohmann::json& j) { return j.is_null() ? std::string("absent") : j.dump(); };
  return what + ": " + show(before) + ", now " + show(now);
}

nlohmann::json parse_json_line(const std::string& line, const std::string& where) {
  try {
    return nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw DataError(where + ": malformed JSON (" + e.what() + ")");
  }
}

void for_each_line(const std::string& path,
                   const std::function<void(const std::string&, int64_t)>& fn) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (path != "-") {
    file.open(path);
    if (!file) throw DataError(path + ": cannot open for reading");
    in = &file;
  }
  std::string line;
  int64_t n = 0;
  while (std::getline(*in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    fn(line, n);
  }
  if (in->bad()) throw DataError(path + ": read error after line " + std::to_string(n));
}

OutputFile::OutputFile(const std::string& path) : path_(path) {
  if (path_.empty() || path_ == "-") return;
  tmp_ = path_ + ".tmp";
  file_ = std::make_unique<std::ofstream>(tmp_, std::ios::binary | std::ios::trunc);
  if (!*file_) throw IoError(path_ + ": cannot open for writing (" + tmp_ + ")");
}

OutputFile::~OutputFile() {
  if (file_ && !committed_) {
    file_->close();
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
  }
}

std::ostream& OutputFile::stream() { return file_ ? *file_ : std::cout; }

void OutputFile::commit() {
  if (!file_) {
    std::cout.flush();
    if (!std::cout) throw IoError("writing to stdout failed");
    return;
  }
  file_->close();
  if (!*file_) throw IoError(path_ + ": write failed");
  std::error_code ec;
  std::filesystem::rename(tmp_, path_, ec);
  if (ec) throw IoError(path_ + ": cannot move " + tmp_ + " into place: " + ec.message());
  committed_ = true;
}

}  // namespace air::cli
