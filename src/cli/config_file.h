#pragma once

// --config files: TOML read with a real TOML parser (escapes, types, duplicate keys, positions
// in errors) into CLI11's settings, one section per command; and a command's given flags written
// back as TOML that reads the same.

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

namespace air::cli {

// The reader for App::config_formatter. Each `[command]` table's keys set that command's flags
// (named without the leading dashes); top-level keys set the top-level flags (log-level).
// Values: strings, integers, floats, booleans, or arrays of them (a list flag). A file that is
// not valid TOML is a CLI::ConfigError naming the line and column. Relative paths (model, data,
// out, heads, ...) are relative to the folder of the --config file of `app` (the main app).
std::shared_ptr<CLI::Config> toml_config(const CLI::App* app);

// The --config file given to `app` (the main app), as given ("" when none).
std::string config_file_given(const CLI::App& app);

// The flags given to `cmd` (on the command line or in a config file), as a TOML `[name]` table
// that toml_config() reads back to the same values, paths made absolute. Flags not given are
// left out.
std::string given_flags_toml(const CLI::App& cmd);

}  // namespace air::cli
