#pragma once

// The one reader of line-oriented inputs (corpora, score files): a file, "-" (stdin), or a
// gzip-compressed file (read as the text it holds), line by line with a cap on line length.

#include <cstdint>
#include <memory>
#include <string>

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
  int64_t line_number() const { return line_no_; }  // 1-based number of the last line read
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
  std::string pending_;  // a first line peeked at open
  bool has_pending_ = false, pending_too_long_ = false;
};

}  // namespace air
