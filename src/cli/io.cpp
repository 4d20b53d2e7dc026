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

}  // namespace air::cli
