#include "cli/cli.h"

#include "air/error.h"

#include <CLI/CLI.hpp>
#include <c10/util/Exception.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
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

void LogEvents::info(const std::string& message) { spdlog::info("{}", message); }
void LogEvents::warn(const std::string& message) { spdlog::warn("{}", message); }
void LogEvents::progress(const ScoreProgress& p) {
  std::string eta;
  if (p.eta_seconds >= 0) eta = fmt::format("; {:.0f}% of the corpus read, about {:.0f} s left", 100 * p.fraction, p.eta_seconds);
  spdlog::info("scored {} records ({} response tokens) so far; {:.0f} tokens/s (prompt and response); {:.0f} s{}",
               p.scored, p.response_tokens, p.tokens_per_second, p.seconds, eta);
}

void add_runtime_flags(CLI::App& cmd, RuntimeOptions& rt) {
  cmd.add_option_function<std::string>(
         "--device",
         [&rt](const std::string& v) {
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
         "auto, fp32, bf16 or fp16 (auto: fp32 on CPU, the checkpoint's dtype on GPU)")
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
  app.set_version_flag("--version", std::string("air ") + AIR_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // --log-level after the subcommand too
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  // Set up before parsing: a flag's own check (--max-memory) may already have something to say.
  if (!spdlog::get("air")) setup_logging(log_level);
  app.parse_complete_callback([&] { spdlog::set_level(spdlog::level::from_str(log_level)); });
  register_inspect(app);
  register_loss(app);
  register_tokenize(app);
  register_probe(app);
  register_score(app);
  register_select(app);
  register_render(app);
  register_bench(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
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
