#include "air/line_reader.h"

#include "air/error.h"

#include <nlohmann/json.hpp>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
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
  int fd = path == "-" ? dup(STDIN_FILENO) : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw DataError(path + ": cannot open for reading (" + std::strerror(errno) + ")");
  gzFile gz = gzdopen(fd, "rb");
  if (!gz) {
    ::close(fd);
    throw DataError(path + ": cannot open for reading");
  }
  gzbuffer(gz, kChunk);
  gz_ = gz;
  // The first non-blank line tells a JSON array or a pretty-printed document from JSON Lines.
  bool too_long = false;
  std::string first;
  while (next(first, &too_long) && trim(first).empty()) {
  }
  compressed_ = gzdirect(gz) == 0;
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
  // Read again from the start: the lines before were blank, the first is kept.
  pending_ = std::move(first);
  pending_too_long_ = too_long;
  has_pending_ = true;
}

LineReader::~LineReader() {
  if (gz_) gzclose(static_cast<gzFile>(gz_));
}

bool LineReader::fill() {
  if (eof_) return false;
  buf_.resize(kChunk);
  const int n = gzread(static_cast<gzFile>(gz_), buf_.data(), static_cast<unsigned>(kChunk));
  if (n < 0) {
    int err = 0;
    const char* msg = gzerror(static_cast<gzFile>(gz_), &err);
    throw DataError(path_ + ": read error after line " + std::to_string(line_no_) + " (" +
                    (err == Z_ERRNO ? std::strerror(errno) : msg) + ")");
  }
  buf_.resize(static_cast<size_t>(n));
  pos_ = 0;
  if (n == 0) {
    int err = 0;
    const char* msg = gzerror(static_cast<gzFile>(gz_), &err);
    if (err != Z_OK && err != Z_BUF_ERROR)
      throw DataError(path_ + ": read error after line " + std::to_string(line_no_) + " (" + msg + ")");
    if (err == Z_BUF_ERROR)
      throw DataError(path_ + ": the gzip stream ends early, after line " + std::to_string(line_no_) +
                      " (a truncated .gz file)");
    eof_ = true;
    return false;
  }
  return true;
}

bool LineReader::next(std::string& line, bool* too_long) {
  if (has_pending_) {
    has_pending_ = false;
    line = std::move(pending_);
    if (too_long) *too_long = pending_too_long_;
    return true;
  }
  line.clear();
  bool longer = false, any = false;
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
    if (nl) break;
  }
  if (too_long) *too_long = longer;
  if (!any) return false;
  ++line_no_;
  return true;
}

}  // namespace air
