#include "cli/config_file.h"

#include "air/chat_template.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iterator>
#include <sstream>

namespace air::cli {
namespace {

std::string scalar_text(const toml::node& n, const std::string& key) {
  if (auto s = n.value_exact<std::string>()) return *s;
  if (auto b = n.value_exact<bool>()) return *b ? "true" : "false";
  if (auto i = n.value_exact<int64_t>()) return std::to_string(*i);
  if (auto d = n.value_exact<double>()) {
    std::ostringstream o;
    o.precision(17);
    o << *d;
    return o.str();
  }
  const auto& src = n.source();
  throw CLI::ConfigError("line " + std::to_string(src.begin.line) + ": '" + key +
                         "' must be a string, a number, a boolean or an array of them");
}

constexpr size_t kMaxConfigBytes = size_t{1} << 20;
constexpr int kMaxConfigDepth = 16;

// The first line (1-based) whose key path (dots between names, outside strings and comments)
// or bracket nesting goes past kMaxConfigDepth; 0 when none does. The TOML parser and its
// tables recurse once per level, so such a file is refused before it is parsed.
int too_deep_line(const std::string& text) {
  int line = 1, dots = 0, brackets = 0;
  char quote = 0;  // inside a '...' or "..." string
  bool comment = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
      dots = 0;
      comment = false;
      continue;
    }
    if (comment) continue;
    if (quote) {
      if (quote == '"' && c == '\\') ++i;
      else if (c == quote) quote = 0;
      continue;
    }
    if (c == '"' || c == '\'') quote = c;
    else if (c == '#') comment = true;
    else if (c == '[' || c == '{') ++brackets;
    else if (c == ']' || c == '}') brackets = std::max(0, brackets - 1);
    else if (c == '.' && !(i > 0 && std::isdigit(static_cast<unsigned char>(text[i - 1])) && i + 1 < text.size() &&
                           std::isdigit(static_cast<unsigned char>(text[i + 1]))))
      ++dots;
    if (dots > kMaxConfigDepth || brackets > kMaxConfigDepth) return line;
  }
  return 0;
}

// Settings that name files or folders: a relative one in a config file is relative to the
// config file's folder (a shared config works from any directory), "-" is a stream.
bool names_a_path(const std::string& key) {
  static const char* const kKeys[] = {"model", "tokenizer", "data", "out", "scores", "heads", "meta", "template",
                                      "input", "lengths-from", "json", "weights-out", "rejects", "probe-text",
                                      "probe-data"};
  return std::find(std::begin(kKeys), std::end(kKeys), key) != std::end(kKeys);
}

std::string resolved(const std::filesystem::path& folder, const std::string& key, const std::string& value) {
  if (value.empty() || value == "-" || folder.empty() || std::filesystem::path(value).is_absolute()) return value;
  if (key == "template") {  // a preset's name stays a name
    const auto presets = builtin_templates();
    if (std::find(presets.begin(), presets.end(), value) != presets.end()) return value;
  }
  return (folder / value).lexically_normal().string();
}

class TomlConfig : public CLI::Config {
 public:
  explicit TomlConfig(const CLI::App* app) : app_(app) {}

  std::string to_config(const CLI::App* app, bool, bool, std::string) const override {
    return app ? given_flags_toml(*app) : "";
  }

  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override {
    // Bounded: a device or a huge file given by mistake is refused, not read until memory ends.
    std::string text(kMaxConfigBytes + 1, '\0');
    input.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(input.gcount()));
    if (text.size() > kMaxConfigBytes)
      throw CLI::ConfigError("larger than " + std::to_string(kMaxConfigBytes >> 20) + " MiB: not a settings file");
    if (const int line = too_deep_line(text))
      throw CLI::ConfigError("line " + std::to_string(line) + ": keys or values nested deeper than " +
                             std::to_string(kMaxConfigDepth) + " levels (air's settings are one section deep)");
    toml::table root;
    try {
      root = toml::parse(text);
    } catch (const toml::parse_error& e) {
      const auto& at = e.source().begin;
      throw CLI::ConfigError("not valid TOML: line " + std::to_string(at.line) + ", column " + std::to_string(at.column) +
                             ": " + std::string(e.description()));
    }
    std::vector<CLI::ConfigItem> items;
    walk(root, {}, items);
    const std::filesystem::path folder = config_folder();
    for (CLI::ConfigItem& item : items)
      if (names_a_path(item.name))
        for (std::string& v : item.inputs) v = resolved(folder, item.name, v);
    return items;
  }

 private:
  // The folder of the --config file being read ("" when it is the working directory).
  std::filesystem::path config_folder() const {
    return app_ ? std::filesystem::path(config_file_given(*app_)).parent_path() : std::filesystem::path();
  }

  const CLI::App* app_;

  static void walk(const toml::table& t, const std::vector<std::string>& parents, std::vector<CLI::ConfigItem>& items) {
    for (const auto& [k, v] : t) {
      const std::string key(k.str());
      if (const toml::table* sub = v.as_table()) {
        std::vector<std::string> p = parents;
        p.push_back(key);
        walk(*sub, p, items);
        continue;
      }
      CLI::ConfigItem item;
      item.parents = parents;
      item.name = key;
      if (const toml::array* a = v.as_array()) {
        for (const auto& e : *a) item.inputs.push_back(scalar_text(e, key));
      } else {
        item.inputs.push_back(scalar_text(v, key));
      }
      items.push_back(std::move(item));
    }
  }
};

// A TOML basic string: "..." with backslash escapes.
std::string quoted(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\t': o += "\\t"; break;
      case '\r': o += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04X", c);
          o += b;
        } else {
          o += static_cast<char>(c);
        }
    }
  }
  return o + "\"";
}

// A value as TOML: an integer or a boolean bare when it reads back as the same text, else a
// string (which the reader hands over as it is).
std::string toml_value(const std::string& s) {
  if (s == "true" || s == "false") return s;
  if (!s.empty() && s.size() < 19 && s.find_first_not_of("-0123456789") == std::string::npos) {
    try {
      if (std::to_string(std::stoll(s)) == s) return s;
    } catch (const std::exception&) {
    }
  }
  return quoted(s);
}

}  // namespace

std::string config_file_given(const CLI::App& app) {
  const CLI::Option* config = app.get_config_ptr();
  // The raw value: as<>() would validate it again, throwing where the file is missing.
  return config && config->count() > 0 && !config->results().empty() ? config->results().front() : std::string();
}

std::shared_ptr<CLI::Config> toml_config(const CLI::App* app) { return std::make_shared<TomlConfig>(app); }

std::string given_flags_toml(const CLI::App& cmd) {
  std::string out = "[" + cmd.get_name() + "]\n";
  for (const CLI::Option* o : cmd.get_options()) {
    if (o->count() == 0 || o->get_lnames().empty() || o == cmd.get_help_ptr()) continue;
    const std::string name = o->get_lnames().front();
    if (o->get_type_size() == 0) {  // a flag
      out += name + " = " + (o->as<bool>() ? "true" : "false") + "\n";
      continue;
    }
    // Paths as absolute ones: the TOML, saved anywhere, names the same files.
    std::vector<std::string> r;
    for (const std::string& x : o->results())
      r.push_back(names_a_path(name) ? resolved(std::filesystem::current_path(), name, x) : x);
    if (o->get_expected_max() > 1 || r.size() > 1) {
      std::string list;
      for (const auto& x : r) list += (list.empty() ? "" : ", ") + toml_value(x);
      out += name + " = [" + list + "]\n";
      continue;
    }
    out += name + " = " + toml_value(r.empty() ? std::string() : r.front()) + "\n";
  }
  return out;
}

}  // namespace air::cli
