#include "air/output.h"

#include "air/error.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>

namespace air {

namespace fs = std::filesystem;

namespace {

// What a path resolves to: its file's identity when it exists, and its normalised absolute path.
struct FileKey {
  std::optional<std::pair<dev_t, ino_t>> id;
  std::string canonical;
  bool char_device = false;
};

FileKey key_of(const std::string& path) {
  FileKey k;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    k.id = std::make_pair(st.st_dev, st.st_ino);
    k.char_device = S_ISCHR(st.st_mode);
  }
  std::error_code ec;
  const fs::path abs = fs::absolute(path, ec);
  const fs::path canon = fs::weakly_canonical(ec ? fs::path(path) : abs, ec);
  k.canonical = ec ? abs.lexically_normal().string() : canon.string();
  return k;
}

bool same_file(const FileKey& a, const FileKey& b) {
  if (a.char_device || b.char_device) return false;  // /dev/null as input and output harms nothing
  if (a.id && b.id) return *a.id == *b.id;
  return a.canonical == b.canonical;
}

bool skipped(const std::string& path) { return path.empty() || path == "-"; }

}  // namespace

// A path that names an open file descriptor rather than a file: /dev/stdin, /dev/stdout,
// /dev/stderr, /dev/fd/N, /proc/PID/fd/N (self and thread-self included).
static bool descriptor_path(const std::string& s) {
  if (s == "/dev/stdin" || s == "/dev/stdout" || s == "/dev/stderr" || s.rfind("/dev/fd/", 0) == 0) return true;
  if (s.rfind("/proc/", 0) != 0) return false;
  const size_t slash = s.find('/', 6);
  return slash != std::string::npos && s.compare(slash, 4, "/fd/") == 0;
}

bool is_stream_output(const std::string& path) {
  if (path == "-") return true;
  if (path.empty()) return false;
  // Follow the path's own links hop by hop: one through a descriptor is a stream, whatever the
  // descriptor is open on (stdout redirected to a file is written in place, not replaced).
  std::error_code ec;
  fs::path p = fs::absolute(path, ec).lexically_normal();
  for (int hop = 0; hop < 40; ++hop) {
    if (descriptor_path(p.string())) return true;
    struct stat lst {};
    if (::lstat(p.c_str(), &lst) != 0 || !S_ISLNK(lst.st_mode)) break;
    const fs::path target = fs::read_symlink(p, ec);
    if (ec) break;
    p = (target.is_absolute() ? target : p.parent_path() / target).lexically_normal();
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  return !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode);
}

std::string scratch_path(const std::string& path) { return path + ".tmp"; }

std::string output_target(const std::string& path) {
  if (skipped(path) || is_stream_output(path)) return path;
  struct stat lst {};
  if (::lstat(path.c_str(), &lst) != 0 || !S_ISLNK(lst.st_mode)) return path;
  std::error_code ec;
  const fs::path target = fs::weakly_canonical(fs::absolute(path), ec);
  return ec ? path : target.string();
}

void check_outputs(const std::vector<NamedPath>& given_outputs, const std::vector<NamedPath>& given_inputs) {
  // A directory given as input (a model folder) stands for the files in it.
  std::vector<NamedPath> inputs;
  for (const auto& p : given_inputs) {
    std::error_code ec;
    if (skipped(p.path) || !fs::is_directory(p.path, ec)) {
      inputs.push_back(p);
      continue;
    }
    for (const auto& e : fs::directory_iterator(p.path, ec))
      if (e.is_regular_file(ec)) inputs.push_back({p.what + " file", e.path().string()});
  }
  // Each file output is written to a scratch file under its lock file, which must not be inputs
  // either (both are removed or replaced).
  std::vector<NamedPath> outputs;
  for (const auto& p : given_outputs) {
    outputs.push_back(p);
    if (!skipped(p.path) && !is_stream_output(p.path)) {
      outputs.push_back({p.what + "'s lock file", OutputLock::lock_path(output_target(p.path))});
      outputs.push_back({p.what + "'s scratch file", scratch_path(output_target(p.path))});
    }
  }
  std::vector<std::pair<const NamedPath*, FileKey>> in_keys, out_keys;
  for (const auto& p : inputs)
    if (!skipped(p.path)) in_keys.emplace_back(&p, key_of(p.path));
  for (const auto& p : outputs) {
    if (skipped(p.path)) continue;
    FileKey k = key_of(p.path);
    for (const auto& [in, ik] : in_keys)
      if (same_file(k, ik))
        throw UsageError("the " + p.what + " " + p.path + " is the " + in->what + " " + in->path +
                         ": writing it would destroy that input; choose another output path");
    for (const auto& [other, ok] : out_keys)
      if (same_file(k, ok))
        throw UsageError("the " + p.what + " " + p.path + " and the " + other->what + " " +
                         other->path + " are the same file; give them different paths");
    out_keys.emplace_back(&p, std::move(k));
  }
}

void check_input_file(const NamedPath& input) {
  const std::string& path = input.path;
  if (skipped(path)) return;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw DataError(path + ": the " + input.what + " does not exist");
  if (fs::is_directory(path, ec))
    throw DataError(path + ": the " + input.what + " is a directory, expected a file");
  if (::access(path.c_str(), R_OK) != 0)
    throw DataError(path + ": the " + input.what + " is not readable (" + std::strerror(errno) + ")");
}

void check_writable(const std::string& path) {
  if (skipped(path) || is_stream_output(path)) return;
  std::error_code ec;
  if (fs::is_directory(path, ec))
    throw IoError(path + ": is a directory; expected a file path for the output");
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::exists(dir, ec))
    throw IoError(path + ": cannot write it: directory " + dir.string() + " does not exist");
  if (!fs::is_directory(dir, ec))
    throw IoError(path + ": cannot write it: " + dir.string() + " is not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    throw IoError(path + ": cannot write it: directory " + dir.string() + " is not writable (" +
                  std::strerror(errno) + ")");
}

OutputLock::OutputLock(const std::string& path) {
  if (skipped(path) || is_stream_output(path)) return;
  const std::string lp = lock_path(path);
  // A holder removes the lock file on release; a file locked after its removal is stale, so the
  // lock is taken again on the file now at the path.
  for (int attempt = 0; attempt < 16; ++attempt) {
    const int fd = ::open(lp.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0 && errno == ELOOP)
      throw IoError(path + ": its lock file " + lp + " is a symbolic link; remove it or choose another output path");
    if (fd < 0) throw IoError(path + ": cannot create its lock file " + lp + ": " + std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      char buf[32] = {};
      const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
      ::close(fd);
      if (err != EWOULDBLOCK)
        throw IoError(path + ": cannot lock " + lp + ": " + std::strerror(err));
      const std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string("?");
      throw IoError(path + ": another run (pid " + pid.substr(0, pid.find_first_of("\n ")) +
                    ") is writing this output (lock " + lp +
                    "); wait for it to end, or choose another output path");
    }
    struct stat held {}, now {};
    if (::fstat(fd, &held) == 0 && ::stat(lp.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
        held.st_dev == now.st_dev) {
      // A lock file holds a pid and a newline, or nothing: anything else is someone's file.
      char buf[32] = {};
      const ssize_t n = ::pread(fd, buf, sizeof(buf), 0);
      const std::string text(buf, static_cast<size_t>(std::max<ssize_t>(0, n)));
      if (!S_ISREG(held.st_mode) || held.st_size > 24 || text.find_first_not_of("0123456789\n") != std::string::npos) {
        ::close(fd);
        throw IoError(path + ": " + lp + " exists and is not a lock file of air; move it away or choose another output path");
      }
      const std::string pid = std::to_string(::getpid()) + "\n";
      if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
        // The pid only helps messages; the lock itself is held.
      }
      lock_path_ = lp;
      fd_ = fd;
      return;
    }
    ::close(fd);
  }
  throw IoError(path + ": cannot lock " + lp + ": it keeps being replaced");
}

OutputLock OutputLock::for_output(const std::string& path) {
  if (skipped(path) || is_stream_output(path)) return {};
  return OutputLock(output_target(path));
}

OutputLock::OutputLock(OutputLock&& other) noexcept : lock_path_(std::move(other.lock_path_)), fd_(other.fd_) {
  other.fd_ = -1;
}

OutputLock& OutputLock::operator=(OutputLock&& other) noexcept {
  if (this != &other) {
    release();
    lock_path_ = std::move(other.lock_path_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

OutputLock::~OutputLock() { release(); }

void OutputLock::release() {
  if (fd_ < 0) return;
  ::unlink(lock_path_.c_str());  // while still held, so nobody locks a file about to vanish
  ::close(fd_);
  fd_ = -1;
}

void check_stream(std::ostream& out, const std::string& path) {
  if (!out) throw IoError(path + ": write failed (" + std::strerror(errno) + ")");
}

OutputFile::OutputFile(const std::string& path, OutputLock held) : path_(path) {
  if (skipped(path_)) return;
  check_writable(path_);
  if (is_stream_output(path_)) {
    file_ = std::make_unique<std::ofstream>(path_, std::ios::binary);
    if (!*file_) throw IoError(path_ + ": cannot open for writing: " + std::strerror(errno));
    return;
  }
  path_ = output_target(path_);  // a symbolic link stays, its target is replaced
  lock_ = held.held() ? std::move(held) : OutputLock(path_);
  tmp_ = scratch_path(path_);
  std::error_code ec;
  fs::remove(tmp_, ec);  // ours under the lock; a link left there must not be written through
  file_ = std::make_unique<std::ofstream>(tmp_, std::ios::binary | std::ios::trunc);
  if (!*file_) throw IoError(path_ + ": cannot open " + tmp_ + " for writing: " + std::strerror(errno));
}

OutputFile::~OutputFile() {
  if (file_ && !committed_ && !tmp_.empty()) {
    file_->close();
    std::error_code ec;
    fs::remove(tmp_, ec);
  }
}

std::ostream& OutputFile::stream() { return file_ ? *file_ : std::cout; }

void OutputFile::commit() {
  if (!file_) {
    std::cout.flush();
    check_stream(std::cout, "stdout");
    return;
  }
  file_->flush();
  check_stream(*file_, path_);
  file_->close();
  check_stream(*file_, path_);
  if (!tmp_.empty()) {  // else written in place
    std::error_code ec;
    fs::rename(tmp_, path_, ec);
    if (ec) throw IoError(path_ + ": cannot move " + tmp_ + " into place: " + ec.message());
  }
  committed_ = true;
}

}  // namespace air
