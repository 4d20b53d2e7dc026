#include "cli/io.h"

#include "air/line_reader.h"

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

nlohmann::json parse_json_line(const std::string& line, const std::string& where) {
  try {
    return nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw DataError(where + ": malformed JSON (" + e.what() + ")");
  }
}

void check_jsonl(const std::string& path) {
  if (path.empty() || path == "-" || !std::filesystem::is_regular_file(path)) return;
  LineReader probe(path);  // reads the first line only
}

void for_each_line(const std::string& path,
                   const std::function<void(const std::string&, int64_t)>& fn) {
  LineReader in(path);
  std::string line;
  bool too_long = false;
  while (in.next(line, &too_long)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (too_long)
      throw DataError(path + ":" + std::to_string(in.line_number()) + ": the line is longer than " +
                      std::to_string(kMaxLineBytes >> 20) + " MB");
    fn(line, in.line_number());
  }
}

}  // namespace air::cli
