#include "cli/probe_flags.h"

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdlib>

namespace air::cli {

void add_probe_flags(CLI::App& cmd, ProbeFlags& f) {
  f.options.clear();
  f.options.push_back(cmd.add_option("--probe", f.kind, "probe items: repeat, random-repeat, kv-retrieval or corpus")
                          ->capture_default_str()
                          ->check(CLI::IsMember({"repeat", "random-repeat", "kv-retrieval", "corpus"})));
  f.options.push_back(cmd.add_option("--probe-text", f.probe_text, "plain text (blank-line paragraphs) for probe spans"));
  f.options.push_back(cmd.add_option("--probe-data", f.probe_data, "JSONL of probe items {ids, context, targets}"));
  f.options.push_back(cmd.add_option("--num-items", f.probe.num_items, "probe items to build")->capture_default_str());
  f.options.push_back(cmd.add_option("--seed", f.probe.seed, "probe sampling seed")->capture_default_str());
  f.options.push_back(
      cmd.add_option("--span-tokens", f.probe.span_tokens, "tokens in each repeated span")->capture_default_str());
  f.options.push_back(cmd.add_flag("--probe-all-items", f.probe.all_items,
                                   "count every item, not only those the model gets mostly right"));
  auto within = [](const char* what, double lo, bool lo_open, double hi) {
    return CLI::Validator(
        [=](std::string& text) -> std::string {
          char* end = nullptr;
          const double v = std::strtod(text.c_str(), &end);
          const bool ok = end != text.c_str() && *end == '\0' && std::isfinite(v) && (lo_open ? v > lo : v >= lo) && v <= hi;
          return ok ? std::string() : std::string(what) + ": got " + text;
        },
        what);
  };
  HeadSelection& sel = f.selection;
  auto* d = cmd.add_option("--delta", sel.delta, "critical set: top fraction of all heads")
                ->capture_default_str()
                ->check(within("a fraction in (0, 1]", 0, true, 1));
  auto* n = cmd.add_option("--num-heads", sel.num_heads, "critical set: this many heads")
                ->check(within("a count >= 1", 1, false, 1e9));
  auto* s = cmd.add_option("--min-score", sel.min_score, "critical set: heads with R_h >= this")
                ->check(within("a copy rate in [0, 1]", 0, false, 1));
  d->excludes(n)->excludes(s);
  n->excludes(s);
  f.options.insert(f.options.end(), {d, n, s});
  for (CLI::Option* o : f.options) o->group("Probe (without --heads)");
}

ProbeSettings probe_settings(const ProbeFlags& f) {
  ProbeSettings s = f;
  s.probe.kind = parse_probe_kind(f.kind);
  return s;
}

std::string given_probe_flags(const ProbeFlags& f) {
  std::string out;
  for (const CLI::Option* o : f.options)
    if (o->count() > 0) out += (out.empty() ? "" : ", ") + o->get_name();
  return out;
}

}  // namespace air::cli
