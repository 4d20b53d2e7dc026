#include "cli/cli.h"

#include "air/build_info.h"
#include "air/error.h"
#include "air/score_files.h"
#include "cli/config_file.h"

#include <CLI/CLI.hpp>
#include <c10/util/Exception.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

namespace air::cli {
namespace {

void setup_logging(const std::string& level) {
  // Logs go to stderr only; stdout carries data.
  auto logger = spdlog::stderr_color_mt("air");
  logger->set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

// Library option names whose flag is not "--" + the name with '-' for '_'.
const std::map<std::string, std::string> kFlagNames = {{"response_fields", "--response-field"},
                                                       {"all_items", "--probe-all-items"},
                                                       {"json_out", "--json"},
                                                       {"long_lengths", "--lengths"}};

}  // namespace

std::string flag_of(const std::string& option) {
  const auto it = kFlagNames.find(option);
  if (it != kFlagNames.end()) return it->second;
  std::string f = "--" + option;
  std::replace(f.begin(), f.end(), '_', '-');
  return f;
}

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string clock_text(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds) + 0.5);
  return fmt::format("{}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60);
}

std::string thousands(int64_t n) {
  std::string d = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < d.size(); ++i) {
    if (i > 0 && (d.size() - i) % 3 == 0) out += ',';
    out += d[i];
  }
  return (n < 0 ? "-" : "") + out;
}

// The --config file is an input: an output named as it (out = the file itself) is refused.
void refuse_writing_the_config(const CLI::App& app) {
  const std::string config = config_file_given(app);
  std::error_code ec;
  if (config.empty() || !std::filesystem::is_regular_file(config, ec)) return;
  for (const CLI::App* cmd : app.get_subcommands())
    for (const CLI::Option* o : cmd->get_options()) {
      if (o->count() == 0 || o->get_lnames().empty()) continue;
      const std::string name = o->get_lnames().front();
      if (name != "out" && name != "weights-out" && name != "json" && name != "meta" && name != "rejects") continue;
      for (const std::string& v : o->results())
        if (std::filesystem::exists(v, ec) && std::filesystem::equivalent(v, config, ec))
          throw UsageError("--" + name + " " + v + " is the --config file " + config +
                           " the settings are read from: choose another output");
    }
}

// After an error in a run that read a --config file: which file the settings came from (its
// relative paths are relative to its folder).
void name_the_config(const CLI::App& app) {
  const std::string file = config_file_given(app);
  // Only a file that was read (not one that is missing or not a file).
  std::error_code ec;
  if (!file.empty() && std::filesystem::is_regular_file(file, ec))
    spdlog::error("settings were read from --config {} (its relative paths are relative to its folder)", file);
}

}  // namespace

std::string progress_text(const ScoreProgress& p) {
  const char* unit = p.stage == "probe" ? "items" : "records";
  std::string s = p.stage + ": " + thousands(p.records);
  if (p.total >= 0) {
    s += "/" + thousands(p.total) + " " + unit;
    if (p.total > 0) s += fmt::format(" ({:.1f}%)", 100.0 * static_cast<double>(p.records) / static_cast<double>(p.total));
  } else {
    s += std::string(" ") + unit;
    if (p.fraction >= 0) s += fmt::format(" ({:.1f}% of the input read)", 100 * p.fraction);
  }
  s += " | " + thousands(static_cast<int64_t>(p.tokens_per_second + 0.5)) + " tok/s | " + clock_text(p.seconds);
  if (p.done) s += " | done";
  else if (p.eta_seconds >= 0) s += " | ETA " + clock_text(p.eta_seconds);
  if (p.stage != "probe") s += " | " + thousands(p.errors) + (p.errors == 1 ? " error" : " errors");
  return s;
}

LogEvents::LogEvents(ProgressSettings progress) : settings_(progress), tty_(isatty(STDERR_FILENO) == 1) {}

LogEvents::~LogEvents() {
  if (!line_.empty()) std::fputs("\n", stderr);
}

void LogEvents::clear_line() {
  if (line_.empty()) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
}

void LogEvents::info(const std::string& message) {
  clear_line();
  spdlog::info("{}", message);
  if (!line_.empty()) std::fputs(line_.c_str(), stderr), std::fflush(stderr);
}

void LogEvents::warn(const std::string& message) {
  clear_line();
  spdlog::warn("{}", message);
  if (!line_.empty()) std::fputs(line_.c_str(), stderr), std::fflush(stderr);
}

void LogEvents::progress(const ScoreProgress& p) {
  if (settings_.quiet) return;
  const double now = now_seconds();
  if (tty_) {
    if (!p.done && now - last_ < 0.25) return;  // redrawn at most 4 times a second
    last_ = now;
    line_ = progress_text(p);
    std::fputs(("\r\033[K" + line_).c_str(), stderr);
    if (p.done) {
      std::fputs("\n", stderr);
      line_.clear();
    }
    std::fflush(stderr);
    return;
  }
  if (last_ < -1e299) last_ = now;  // the first line after `every` seconds
  if (p.done || now - last_ < settings_.every) return;
  last_ = now;
  spdlog::info("{}", progress_text(p));
}

void add_progress_flags(CLI::App& cmd, ProgressSettings& progress) {
  cmd.add_option("--progress-every", progress.every,
                 "seconds between progress lines when stderr is not a terminal (a Slurm log, a pipe); "
                 "on a terminal one line is updated in place")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            double x = std::nan("");
            try {
              x = std::stod(v);
            } catch (const std::exception&) {
            }
            return x >= 0.01 && x <= 1e9 ? "" : "expected seconds in [0.01, 1e9], got " + v;
          },
          "SECONDS"))
      ->group("Output");
  cmd.add_flag("--quiet", progress.quiet, "show no progress (messages and the summary still go to stderr)")->group("Output");
}

void add_runtime_flags(CLI::App& cmd, RuntimeOptions& rt) {
  cmd.add_option_function<std::string>(
         "--device",
         [&rt, &cmd](const std::string& v) {
           // A --config file's sections set every command's flags; only the command run checks
           // its devices (another command's cuda:0 must not fail a CPU-only select).
           if (!cmd.parsed()) return;
           rt.layer_devices.clear();
           if (v.find(',') == std::string::npos) {
             rt.device = parse_device(v);
             return;
           }
           rt.layer_devices = parse_devices(v);
           rt.device = rt.layer_devices.front();
         },
         "cpu, cuda or cuda:N; a list (cuda:0,cuda:1) splits the model's layers over those devices")
      ->default_str("cpu")
      ->group("Runtime");
  cmd.add_option_function<std::string>(
         "--dtype", [&rt](const std::string& v) { rt.dtype = parse_dtype(v); },
         "auto, fp32, bf16 or fp16 (auto: the checkpoint's dtype on a GPU; on a CPU bf16 for a bf16 checkpoint "
         "when the CPU computes bf16 natively (AVX512-BF16, AMX), else fp32)")
      ->default_str("auto")
      ->group("Runtime");
  cmd.add_option("--threads", rt.threads, "intra-op CPU threads (0 = all CPUs this process may use)")
      ->capture_default_str()
      ->group("Runtime");
  cmd.add_option_function<std::string>(
         "--max-memory", [&rt](const std::string& v) { rt.max_memory = parse_memory_size(v); },
         "memory the run may use, e.g. 16G (default: what is available at start); a batch or probe "
         "setting estimated above it is refused with the figures")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            try {
              parse_memory_size(v);
              return "";
            } catch (const Error& e) {
              return e.what();
            }
          },
          "SIZE"))
      ->group("Runtime");
}

int run(int argc, const char* const* argv) {
  CLI::App app{"air: select reasoning post-training data by Attention Influence (AIR)"};
  set_option_spelling(flag_of);  // messages name options as the flags that set them
  // What a bug report needs: air's version and commit, libtorch's, CUDA, cuDNN, BLAS, the CPU.
  app.set_version_flag("--version", [] {
    std::string text = build_info_text(build_info());
    text.pop_back();  // CLI11 ends the line itself
    return text;
  });
  app.require_subcommand(1);
  app.fallthrough();  // --log-level after the subcommand too
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.set_config("--config", "",
                 "TOML (or INI) file of settings, each command's under its section ([probe], [score], [select], ...), "
                 "keys named as the flags without dashes (batch-tokens = 4096); flags given on the command line win")
      ->check(CLI::ExistingFile);
  app.allow_config_extras(CLI::config_extras_mode::error);
  app.config_formatter(toml_config(&app));
  // Set up before parsing: a flag's own check (--max-memory) may already have something to say.
  if (!spdlog::get("air")) setup_logging(log_level);
  app.parse_complete_callback([&] {
    spdlog::set_level(spdlog::level::from_str(log_level));
    refuse_writing_the_config(app);
  });
  register_inspect(app);
  register_loss(app);
  register_tokenize(app);
  register_probe(app);
  register_score(app);
  register_select(app);
  register_compare(app);
  register_weights(app);
  register_report(app);
  register_render(app);
  register_bench(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ConfigError& e) {
    std::string file = config_file_given(app);
    if (file.empty()) file = "the config file";
    std::string what = e.what();
    const std::string unknown = "INI was not able to parse ";
    if (what.rfind(unknown, 0) == 0) what = "no command has the setting '" + clip_utf8(what.substr(unknown.size()), 80) + "'";
    spdlog::error("--config {}: {} (each command's settings go under its section, e.g. [score], as the command's flags "
                  "without the leading dashes: model = \"DIR\", batch-tokens = 4096)",
                  file, what);
    return 2;
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    if (code != 0) name_the_config(app);
    return code == 0 ? 0 : 2;
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    if (e.exit_code() < 128) name_the_config(app);  // not for a stop on a signal
    return e.exit_code();
  } catch (const c10::Error& e) {
    spdlog::error("internal error in libtorch: {}", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}

int run(const std::vector<std::string>& args) {
  std::vector<const char*> argv{"air"};
  for (const auto& a : args) argv.push_back(a.c_str());
  return run(static_cast<int>(argv.size()), argv.data());
}

}  // namespace air::cli
