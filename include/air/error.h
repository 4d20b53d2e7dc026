#pragma once

#include <functional>
#include <stdexcept>
#include <string>
#include <utility>

namespace air {

// Base of everything the library throws. `main` maps the subclasses to exit codes;
// each stage adds its context once ("loading checkpoint DIR: ...") through with_context().
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  // Process exit code for this kind of failure.
  virtual int exit_code() const { return 1; }
  // Throws a copy of this error, same dynamic type, with "context: " in front.
  [[noreturn]] virtual void rethrow_with(const std::string& context) const {
    throw Error(context + ": " + what());
  }
};

#define AIR_DEFINE_ERROR(Name, code)                                     \
  class Name : public Error {                                            \
   public:                                                               \
    using Error::Error;                                                  \
    int exit_code() const override { return code; }                      \
    [[noreturn]] void rethrow_with(const std::string& context) const override { \
      throw Name(context + ": " + what());                               \
    }                                                                    \
  };

// Bad usage: flags, option values, head lists that do not fit the model.
AIR_DEFINE_ERROR(UsageError, 2)
// Bad input data: malformed JSONL lines, missing fields, token ids out of range.
AIR_DEFINE_ERROR(DataError, 3)
// Broken or unsupported checkpoint: safetensors, shards, config.json, tokenizer files.
AIR_DEFINE_ERROR(CheckpointError, 4)
// An output could not be written.
AIR_DEFINE_ERROR(IoError, 5)

#undef AIR_DEFINE_ERROR

// A job stopped on request (a signal) after finishing and writing the records in flight; what it
// wrote is kept for resuming. The exit code is the front-end's (128 + the signal number).
class Interrupted : public Error {
 public:
  Interrupted(const std::string& message, int code) : Error(message), code_(code) {}
  int exit_code() const override { return code_; }
  [[noreturn]] void rethrow_with(const std::string& context) const override {
    throw Interrupted(context + ": " + what(), code_);
  }

 private:
  int code_;
};

// How messages name an option of a job: its name in the options struct, "`max_length`" by
// default. A front-end sets its own spelling once, before running jobs (the command line:
// "--max-length"), so that what users read (errors, warnings, reasons in a rejects file) names
// options as they give them.
std::string option_name(const std::string& option);
void set_option_spelling(std::function<std::string(const std::string& option)> spell);

// A bad value of one option of a job. option() is its name in the options struct ("max_length",
// "shard"); the message names it with option_name().
class OptionError : public UsageError {
 public:
  OptionError(std::string option, const std::string& message) : UsageError(message), option_(std::move(option)) {}
  const std::string& option() const { return option_; }
  [[noreturn]] void rethrow_with(const std::string& context) const override {
    throw OptionError(option_, context + ": " + what());
  }

 private:
  std::string option_;
};

// Runs fn(); an air::Error escaping it is rethrown with `context` prefixed, type kept.
template <class Fn>
decltype(auto) with_context(const std::string& context, Fn&& fn) {
  try {
    return fn();
  } catch (const Error& e) {
    e.rethrow_with(context);
  }
  throw;  // unreachable: rethrow_with never returns
}

}  // namespace air
