#pragma once

// The one reader of line-oriented inputs (corpora, score files): a file, "-" (stdin), or a
// gzip-compressed file (read as the text it holds), line by line with a cap on line length.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace air {

// Longest line kept (bytes): a longer one is reported too long and its rest skipped, so that an
// input without newlines (a device, a binary file) never fills memory.
constexpr size_t kMaxLineBytes = size_t{256} << 20;

class LineReader {
 public:
  // Opens `path` ("-" = stdin); gzip input is decompressed. Throws DataError naming the file
  // when it cannot be opened, and, with jsonl, when it is plainly not JSON Lines: a JSON
  // array, or one JSON document spread over several lines.
  explicit LineReader(const std::string& path, bool jsonl = true, size_t max_bytes = kMaxLineBytes);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // The next line, without its '\n' (a '\r' before it is kept); false at the end. *too_long
  // tells that the line was longer than max_bytes (only its start is kept). Throws DataError on
  // a read error or a corrupt gzip stream, naming the file and line.
  bool next(std::string& line, bool* too_long = nullptr);
  // The next record line: blank lines (spaces, tabs, CR only) are passed over and a CR before
  // the newline is dropped, the one rule for every JSONL input.
  bool next_record(std::string& line, bool* too_long = nullptr);
  // "<path>:<line>: the line is longer than 256 MB", for the line just read.
  std::string too_long_message() const;
  int64_t line_number() const { return line_no_; }  // 1-based number of the last line read
  // Whether the last line read ended with a newline (a write cut short leaves the last without).
  bool had_newline() const { return had_newline_; }
  // Input bytes behind the lines read so far (compressed bytes for gzip, to the read chunk), and
  // the input's size (-1 when not a regular file: stdin, a pipe), for progress.
  int64_t bytes_consumed() const;
  int64_t size() const { return size_; }
  bool compressed() const { return compressed_; }
  const std::string& path() const { return path_; }

 private:
  bool fill();
  size_t read_raw(char* into, size_t n);  // read(2) what is there (a pipe gives what it has)

  std::string path_;
  size_t max_bytes_;
  int fd_ = -1;
  void* z_ = nullptr;  // z_stream, for gzip input
  std::string raw_;    // compressed bytes not yet inflated
  size_t raw_pos_ = 0;
  bool raw_eof_ = false;
  std::string buf_;
  size_t pos_ = 0;
  bool eof_ = false, compressed_ = false;
  int64_t line_no_ = 0;
  int64_t read_total_ = 0;  // bytes read(2) from the input
  int64_t size_ = -1;
  std::string pending_;  // a first line peeked at open
  bool has_pending_ = false, pending_too_long_ = false, pending_newline_ = true;
  bool had_newline_ = true;
};

// Calls fn(line, line_number) for each record line of a JSONL input ("-" = stdin); a line over
// the length cap throws DataError naming it.
void for_each_line(const std::string& path, const std::function<void(const std::string&, int64_t)>& fn);

// The record lines (non-blank) of a file, read through once for progress; -1 for stdin, a pipe
// or a device, which cannot be read twice.
int64_t count_records(const std::string& path);

// How deep JSON may nest in any record or file air reads (docs/RELIABILITY.md): deeper ones
// are refused before parsing, since writing or copying them would recurse that deep.
constexpr int kMaxJsonDepth = 512;

// Whether `text` opens more than `limit` arrays and objects inside each other (strings skipped).
bool json_too_deep(const std::string& text, int limit = kMaxJsonDepth);

// The DataError message for such a text: "nested deeper than 512 arrays and objects ...".
std::string json_too_deep_message();

// `s` unchanged when it is valid UTF-8; else with each byte that is not part of a character
// written as \xHH and each backslash doubled, so that the bytes can be recovered (a path that is
// not UTF-8 in a JSON output).
std::string escape_invalid_utf8(const std::string& s);

// j.dump(indent), where strings that are not valid UTF-8 (a path the user gave) are written as
// escape_invalid_utf8 gives them rather than failing.
template <class Json>
std::string dump_json(const Json& j, int indent = -1) {
  try {
    return j.dump(indent);
  } catch (const nlohmann::json::type_error& e) {
    if (e.id != 316) throw;
  }
  Json c = j;
  std::vector<Json*> todo{&c};
  while (!todo.empty()) {
    Json* v = todo.back();
    todo.pop_back();
    if (v->is_string()) *v = escape_invalid_utf8(v->template get<std::string>());
    else if (v->is_structured())
      for (auto& x : *v) todo.push_back(&x);
  }
  return c.dump(indent);
}

// Parses one JSONL line; throws DataError "where: malformed JSON (...)" or, for one nested deeper
// than kMaxJsonDepth, "where: nested deeper than ...".
nlohmann::json parse_json_line(const std::string& line, const std::string& where);

// A corpus that is a regular file is checked to be JSON Lines (not a JSON array, not one
// document over several lines) before anything slow runs; DataError naming it otherwise.
void check_jsonl(const std::string& path);

}  // namespace air
