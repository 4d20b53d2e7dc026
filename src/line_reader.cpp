#include "air/line_reader.h"

#include "air/error.h"

#include <nlohmann/json.hpp>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace air {
namespace {

constexpr size_t kChunk = size_t{1} << 17;

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

}  // namespace

LineReader::LineReader(const std::string& path, bool jsonl, size_t max_bytes) : path_(path), max_bytes_(max_bytes) {
  fd_ = path == "-" ? dup(STDIN_FILENO) : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw DataError(path + ": cannot open for reading (" + std::strerror(errno) + ")");
  struct stat st {};
  if (fstat(fd_, &st) == 0 && S_ISREG(st.st_mode)) size_ = static_cast<int64_t>(st.st_size);
  // gzip: the first two bytes are 1f 8b.
  raw_.resize(kChunk);
  size_t got = 0;
  while (got < 2) {
    const size_t n = read_raw(raw_.data() + got, raw_.size() - got);
    if (n == 0) break;
    got += n;
  }
  raw_.resize(got);
  if (got >= 2 && static_cast<unsigned char>(raw_[0]) == 0x1f && static_cast<unsigned char>(raw_[1]) == 0x8b) {
    auto* z = new z_stream{};
    if (inflateInit2(z, 15 + 16) != Z_OK) {
      delete z;
      throw DataError(path + ": cannot start reading it as gzip");
    }
    z_ = z;
    compressed_ = true;
  } else {
    buf_ = std::move(raw_);  // plain text: what was read is the first of it
    raw_.clear();
  }
  // The first non-blank line tells a JSON array or a pretty-printed document from JSON Lines.
  bool too_long = false;
  std::string first;
  while (next(first, &too_long) && trim(first).empty()) {
  }
  if (line_no_ == 0) return;
  const std::string t = trim(first);
  if (jsonl && !too_long && !t.empty()) {
    const std::string convert = "convert it to one JSON object per line, e.g. jq -c '.[]' " + path + " > corpus.jsonl";
    if (t == "[" || t == "{" || t == "[{")
      throw DataError(path + ": line " + std::to_string(line_no_) + " is '" + t + "': one JSON " +
                      (t[0] == '[' ? "array" : "document") + " spread over lines, not JSON Lines; " +
                      (t[0] == '[' ? convert : "write each record on its own line (jq -c . FILE)"));
    if (t[0] == '[') {
      const auto j = nlohmann::json::parse(t, nullptr, false);
      if (j.is_array() && !j.empty() && j[0].is_object())
        throw DataError(path + ": line " + std::to_string(line_no_) + " is a JSON array of " +
                        std::to_string(j.size()) + " objects, not JSON Lines; " + convert);
    }
  }
  // The first line is given again by the first next(); the blank lines before it were read.
  pending_ = std::move(first);
  pending_too_long_ = too_long;
  pending_newline_ = had_newline_;
  has_pending_ = true;
}

LineReader::~LineReader() {
  if (z_) {
    inflateEnd(static_cast<z_stream*>(z_));
    delete static_cast<z_stream*>(z_);
  }
  if (fd_ >= 0) ::close(fd_);
}

size_t LineReader::read_raw(char* into, size_t n) {
  for (;;) {
    const ssize_t got = ::read(fd_, into, n);
    if (got >= 0) {
      read_total_ += got;
      return static_cast<size_t>(got);
    }
    if (errno == EINTR) continue;
    throw DataError(path_ + ": read error after line " + std::to_string(line_no_) + " (" + std::strerror(errno) + ")");
  }
}

// Refills buf_ with the next text: read(2) as much as is there (a pipe's records arrive as they
// are written), inflated when the input is gzip. False at the end.
bool LineReader::fill() {
  if (eof_) return false;
  buf_.clear();
  pos_ = 0;
  if (!z_) {
    buf_.resize(kChunk);
    const size_t n = read_raw(buf_.data(), buf_.size());
    buf_.resize(n);
    if (n == 0) eof_ = true;
    return n > 0;
  }
  auto* z = static_cast<z_stream*>(z_);
  buf_.resize(kChunk);
  while (true) {
    if (raw_pos_ >= raw_.size() && !raw_eof_) {
      raw_.resize(kChunk);
      const size_t n = read_raw(raw_.data(), raw_.size());
      raw_.resize(n);
      raw_pos_ = 0;
      raw_eof_ = n == 0;
    }
    z->next_in = reinterpret_cast<Bytef*>(raw_.data() + raw_pos_);
    z->avail_in = static_cast<uInt>(raw_.size() - raw_pos_);
    z->next_out = reinterpret_cast<Bytef*>(buf_.data());
    z->avail_out = static_cast<uInt>(buf_.size());
    const bool in_member = z->total_in > 0 || z->avail_in > 0;
    const int rc = inflate(z, Z_NO_FLUSH);
    raw_pos_ = raw_.size() - z->avail_in;
    const size_t produced = buf_.size() - z->avail_out;
    if (rc == Z_STREAM_END) {
      inflateReset(z);  // one gzip member done; another may follow (concatenated .gz files)
    } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
      throw DataError(path_ + ": corrupt gzip data after line " + std::to_string(line_no_) + " (" +
                      (z->msg ? z->msg : "inflate error " + std::to_string(rc)) + ")");
    }
    if (produced > 0) {
      buf_.resize(produced);
      return true;
    }
    if (raw_eof_ && raw_pos_ >= raw_.size()) {
      if (rc != Z_STREAM_END && in_member && z->total_in > 0)
        throw DataError(path_ + ": the gzip stream ends early, after line " + std::to_string(line_no_) +
                        " (a truncated .gz file)");
      eof_ = true;
      return false;
    }
  }
}

bool LineReader::next(std::string& line, bool* too_long) {
  if (has_pending_) {
    has_pending_ = false;
    line = std::move(pending_);
    if (too_long) *too_long = pending_too_long_;
    had_newline_ = pending_newline_;
    return true;
  }
  line.clear();
  bool longer = false, any = false, newline = false;
  for (;;) {
    if (pos_ >= buf_.size() && !fill()) break;
    any = true;
    const char* begin = buf_.data() + pos_;
    const void* nl = std::memchr(begin, '\n', buf_.size() - pos_);
    const size_t len = nl ? static_cast<size_t>(static_cast<const char*>(nl) - begin) : buf_.size() - pos_;
    const size_t keep = std::min(len, max_bytes_ - std::min(max_bytes_, line.size()));
    line.append(begin, keep);
    longer |= keep < len;
    pos_ += len + (nl ? 1 : 0);
    if (nl) {
      newline = true;
      break;
    }
  }
  had_newline_ = newline;
  if (too_long) *too_long = longer;
  if (!any) return false;
  ++line_no_;
  return true;
}

bool LineReader::next_record(std::string& line, bool* too_long) {
  while (next(line, too_long)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t\r") != std::string::npos) return true;
  }
  return false;
}

std::string LineReader::too_long_message() const {
  return path_ + ":" + std::to_string(line_no_) + ": the line is longer than " + std::to_string(max_bytes_ >> 20) +
         " MB";
}

int64_t LineReader::bytes_consumed() const {
  const int64_t unread = z_ ? static_cast<int64_t>(raw_.size() - raw_pos_) : static_cast<int64_t>(buf_.size() - pos_);
  return read_total_ - unread;
}

void for_each_line(const std::string& path, const std::function<void(const std::string&, int64_t)>& fn) {
  LineReader in(path);
  std::string line;
  bool too_long = false;
  while (in.next_record(line, &too_long)) {
    if (too_long) throw DataError(in.too_long_message());
    fn(line, in.line_number());
  }
}

std::string escape_invalid_utf8(const std::string& s) {
  auto seq = [&](size_t i) -> size_t {  // length of the valid UTF-8 character at i, 0 if none
    const auto b = [&](size_t k) { return k < s.size() ? static_cast<unsigned char>(s[k]) : 0u; };
    const unsigned c = b(i);
    auto cont = [&](size_t k) { return (b(k) & 0xC0u) == 0x80u; };
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return cont(i + 1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
      const unsigned d = b(i + 1);
      if ((c == 0xE0 && d < 0xA0) || (c == 0xED && d > 0x9F)) return 0;
      return cont(i + 1) && cont(i + 2) ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
      const unsigned d = b(i + 1);
      if ((c == 0xF0 && d < 0x90) || (c == 0xF4 && d > 0x8F)) return 0;
      return cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0;
    }
    return 0;
  };
  bool valid = true;
  for (size_t i = 0; i < s.size() && valid;) {
    const size_t n = seq(i);
    valid = n > 0;
    i += n;
  }
  if (valid) return s;
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const size_t n = seq(i);
    if (n == 0) {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02X", static_cast<unsigned char>(s[i]));
      out += buf;
      ++i;
    } else {
      if (s[i] == '\\') out += '\\';
      out.append(s, i, n);
      i += n;
    }
  }
  return out;
}

bool json_too_deep(const std::string& text, int limit) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

std::string json_too_deep_message() {
  return "nested deeper than " + std::to_string(kMaxJsonDepth) +
         " arrays and objects, the most air reads (docs/RELIABILITY.md)";
}

nlohmann::json parse_json_line(const std::string& line, const std::string& where) {
  if (json_too_deep(line)) throw DataError(where + ": " + json_too_deep_message());
  try {
    return nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw DataError(where + ": malformed JSON (" + e.what() + ")");
  }
}

void check_jsonl(const std::string& path) {
  struct stat st {};
  if (path.empty() || path == "-" || stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;
  LineReader probe(path);  // reads the first line only
}

int64_t count_records(const std::string& path) {
  struct stat st {};
  if (path == "-" || ::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return -1;
  LineReader in(path, false);
  std::string line;
  int64_t n = 0;
  bool too_long = false;
  while (in.next_record(line, &too_long)) ++n;
  return n;
}

}  // namespace air
