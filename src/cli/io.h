#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>

namespace air::cli {

// Shortest decimal that reads back as the same float ("1.25", "-0.0034"), for JSON output.
std::string format_float(float v);

// "" when before == now, else "what: <before>, now <now>" (absent values named so), for
// messages that say how a setting differs from an earlier run's.
std::string json_change(const std::string& what, const nlohmann::json& before, const nlohmann::json& now);

// Parses one JSONL line; throws DataError "where: malformed JSON (...)".
nlohmann::json parse_json_line(const std::string& line, const std::string& where);

// Calls fn(line, line_number) for each non-blank line of a JSONL file ("-" = stdin).
// Throws DataError if the file cannot be read.
void for_each_line(const std::string& path,
                   const std::function<void(const std::string&, int64_t)>& fn);

// Output to a file (written to FILE.tmp, renamed over FILE on commit()) or to stdout ("-" or
// empty). A file not committed is removed, so a failed run never leaves a partial output.
class OutputFile {
 public:
  explicit OutputFile(const std::string& path);
  ~OutputFile();
  std::ostream& stream();
  void commit();

 private:
  std::string path_, tmp_;
  std::unique_ptr<std::ofstream> file_;
  bool committed_ = false;
};

}  // namespace air::cli
