#pragma once

// Writing outputs without ever harming an input or another run's output: outputs are checked
// against inputs by file identity before any work starts, written whole (a temporary renamed
// into place) under an advisory lock, and special files (a FIFO, /dev/null, /dev/stdout) are
// written in place rather than replaced.

#include <fstream>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

namespace air {

// A path with what it is for ("corpus", "heads file"), for messages.
struct NamedPath {
  std::string what;
  std::string path;
};

// True for "-" (stdout), for an existing path that is not a regular file or directory (a FIFO,
// a character device such as /dev/null), and for a path that names an open file descriptor
// (/dev/stdout, /dev/fd/N, /proc/self/fd/N) or a symbolic link through one: such an output is
// written in place, as a stream, with no temporary file, no rename and no sidecars beside it.
// A regular file reached through /proc/self/cwd, or one on /dev/shm, is a file like any other.
bool is_stream_output(const std::string& path);

// The scratch file an output is written to before it is renamed into place: OUT.tmp.
std::string scratch_path(const std::string& path);

// The file an output path is written as: a symbolic link's final target (so that the link stays
// and its target is replaced), else the path itself.
std::string output_target(const std::string& path);

// Throws UsageError when an output, or the lock file it is written under, names the same file as
// an input (same device and inode, so "./x/../x", hard and symbolic links are caught; an input
// directory, such as a model folder, stands for each file in it), or two outputs name the same
// file. Paths that are empty or "-" are passed over; outputs that do not exist yet are compared
// by their normalised absolute path.
void check_outputs(const std::vector<NamedPath>& outputs, const std::vector<NamedPath>& inputs);

// Throws DataError when an input file is missing, a directory, or not readable ("-" passes):
// "<path>: <what> is a directory, expected a file".
void check_input_file(const NamedPath& input);

// Throws IoError (naming the path) when `path` cannot be written: it is a directory, its
// directory is missing or not a directory, or it is not writable. Meant for before a long job
// starts, so that a typo is found in a second, not after hours. "-" and stream outputs pass.
void check_writable(const std::string& path);

// An exclusive advisory lock (flock) on PATH.lock, held for this object's life: a second run
// writing the same output is refused at once (IoError naming the other run's pid) instead of
// interleaving with the first. The lock file holds the owner's pid and is removed on release; one
// left by a killed run is free and taken over. A symbolic link or a file that is not a lock file
// at that path is refused, never written. No lock for "-" or stream outputs.
class OutputLock {
 public:
  OutputLock() = default;
  explicit OutputLock(const std::string& path);
  OutputLock(OutputLock&& other) noexcept;
  OutputLock& operator=(OutputLock&& other) noexcept;
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;
  ~OutputLock();

  static std::string lock_path(const std::string& path) { return path + ".lock"; }
  // The lock an OutputFile for `path` takes (on the file a symbolic link leads to), taken now:
  // a job that reads before it writes holds it from the start.
  static OutputLock for_output(const std::string& path);
  bool held() const { return fd_ >= 0; }

 private:
  void release();
  std::string lock_path_;
  int fd_ = -1;
};

// Output to a file, whole or not at all: written to FILE.tmp under FILE's lock and renamed over
// FILE on commit(); a file not committed is removed. "-" (or empty) is stdout and a stream output
// (see is_stream_output) is written in place. Write errors (a full disk) throw IoError naming FILE.
class OutputFile {
 public:
  // `held`: the output's lock taken earlier (OutputLock::for_output), else it is taken now.
  explicit OutputFile(const std::string& path, OutputLock held = {});
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  std::ostream& stream();
  void commit();

 private:
  std::string path_, tmp_;
  OutputLock lock_;
  std::unique_ptr<std::ofstream> file_;
  bool committed_ = false;
};

// Throws IoError "<path>: write failed (<reason>)" when `out` is in a failed state; the reason is
// the C library's last error (e.g. "No space left on device").
void check_stream(std::ostream& out, const std::string& path);

}  // namespace air
