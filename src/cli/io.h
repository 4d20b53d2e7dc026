#pragma once

#include "air/output.h"
#include "air/score_output.h"

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

// Parses one JSONL line; throws DataError "where: malformed JSON (...)".
nlohmann::json parse_json_line(const std::string& line, const std::string& where);

// A corpus that is a regular file is checked to be JSON Lines (not a JSON array, not one
// document over several lines) before anything slow runs; DataError naming it otherwise.
void check_jsonl(const std::string& path);

// Calls fn(line, line_number) for each non-blank line of a JSONL file ("-" = stdin).
// Throws DataError if the file cannot be read.
void for_each_line(const std::string& path,
                   const std::function<void(const std::string&, int64_t)>& fn);

}  // namespace air::cli
