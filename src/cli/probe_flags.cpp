#include "cli/probe_flags.h"

#include "air/error.h"
#include "air/heads_file.h"
#include "cli/io.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace air::cli {
namespace {

// Samples read from the corpus for probe text (long ones truncated, bad ones skipped).
constexpr int64_t kProbeSamples = 2000;

std::vector<std::string> paragraphs(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path + ": cannot open probe text");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (auto bad = find_invalid_utf8(text))
    throw DataError(path + ": invalid UTF-8 at byte " + std::to_string(*bad));
  std::vector<std::string> out;
  size_t b = 0;
  while (b < text.size()) {
    size_t e = text.find("\n\n", b);
    if (e == std::string::npos) e = text.size();
    if (text.find_first_not_of(" \t\r\n", b) < e) out.push_back(text.substr(b, e - b));
    b = e + 2;
  }
  return out;
}

std::vector<std::string> sentences(const std::vector<std::string>& texts) {
  std::vector<std::string> out;
  for (const auto& t : texts) {
    size_t b = 0;
    for (size_t i = 0; i < t.size(); ++i) {
      if ((t[i] == '.' || t[i] == '!' || t[i] == '?') && (i + 1 == t.size() || t[i + 1] == ' ' || t[i + 1] == '\n')) {
        std::string s = t.substr(b, i + 1 - b);
        const size_t f = s.find_first_not_of(" \n");
        if (f != std::string::npos) s = s.substr(f);
        if (s.size() >= 20 && s.size() <= 200) out.push_back(s);
        b = i + 1;
      }
    }
  }
  return out;
}

std::vector<ProbeItem> read_items(const std::string& path, int64_t vocab) {
  std::vector<ProbeItem> items;
  for_each_line(path, [&](const std::string& line, int64_t n) {
    const std::string at = path + ":" + std::to_string(n);
    const nlohmann::json j = parse_json_line(line, at);
    ProbeItem it;
    try {
      it.ids = j.at("ids").get<std::vector<int64_t>>();
      it.context = j.at("context").get<std::vector<int64_t>>();
      it.targets = j.at("targets").get<std::vector<int64_t>>();
    } catch (const nlohmann::json::exception&) {
      throw DataError(at + ": a probe item needs integer arrays 'ids', 'context' and 'targets'");
    }
    const int64_t T = static_cast<int64_t>(it.ids.size());
    for (int64_t x : it.ids)
      if (x < 0 || x >= vocab) throw DataError(at + ": id " + std::to_string(x) + " outside [0, " + std::to_string(vocab) + ")");
    for (int64_t x : it.context)
      if (x < 0 || x >= T) throw DataError(at + ": context position " + std::to_string(x) + " outside the item");
    for (int64_t x : it.targets)
      if (x < 0 || x + 1 >= T) throw DataError(at + ": target position " + std::to_string(x) + " has no next token");
    std::sort(it.context.begin(), it.context.end());
    std::sort(it.targets.begin(), it.targets.end());
    items.push_back(std::move(it));
  });
  return items;
}

}  // namespace

void add_probe_flags(CLI::App& cmd, ProbeFlags& f) {
  f.options.clear();
  f.options.push_back(cmd.add_option("--probe", f.kind, "probe items: repeat, random-repeat, kv-retrieval or corpus")
      ->capture_default_str());
  f.options.push_back(cmd.add_option("--probe-text", f.probe_text, "plain text (blank-line paragraphs) for probe spans"));
  f.options.push_back(cmd.add_option("--probe-data", f.probe_data, "JSONL of probe items {ids, context, targets}"));
  f.options.push_back(cmd.add_option("--num-items", f.num_items, "probe items to build")->capture_default_str());
  f.options.push_back(cmd.add_option("--seed", f.seed, "probe sampling seed")->capture_default_str());
  f.options.push_back(cmd.add_option("--span-tokens", f.span_tokens, "tokens in each repeated span")->capture_default_str());
  f.options.push_back(
      cmd.add_flag("--probe-all-items", f.all_items, "count every item, not only those the model gets mostly right"));
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
  auto* d = cmd.add_option("--delta", f.delta, "critical set: top fraction of all heads")
                ->capture_default_str()
                ->check(within("a fraction in (0, 1]", 0, true, 1));
  auto* n = cmd.add_option("--num-heads", f.num_heads, "critical set: this many heads")
                ->check(within("a count >= 1", 1, false, 1e9));
  auto* s = cmd.add_option("--min-score", f.min_score, "critical set: heads with R_h >= this")
                ->check(within("a copy rate in [0, 1]", 0, false, 1));
  d->excludes(n)->excludes(s);
  n->excludes(s);
  f.options.insert(f.options.end(), {d, n, s});
  for (CLI::Option* o : f.options) o->group("Probe (without --heads)");
}

std::string given_probe_flags(const ProbeFlags& f) {
  std::string out;
  for (const CLI::Option* o : f.options)
    if (o->count() > 0) out += (out.empty() ? "" : ", ") + o->get_name();
  return out;
}

HeadSet probe_and_write(const LoadedModel& m, const ProbeFlags& f, const CorpusSetup& corpus,
                        const std::string& data, const std::string& out) {
  ProbeOptions opt;
  opt.kind = parse_probe_kind(f.kind);
  opt.num_items = f.num_items;
  opt.seed = f.seed;
  opt.span_tokens = f.span_tokens;
  opt.all_items = f.all_items;
  if (opt.num_items < 1 || opt.span_tokens < 2) throw UsageError("--num-items must be >= 1 and --span-tokens >= 2");
  // An item is a span and its repeat: it must fit the model's context (at least 4,096 tokens, as
  // --max-length), or the probe runs for hours on positions the model never saw.
  const int64_t context = std::max<int64_t>(m.checkpoint.config().max_position_embeddings, 4096);
  if (2 * opt.span_tokens + 8 > context)
    throw UsageError("--span-tokens " + std::to_string(opt.span_tokens) + ": an item is twice that, more than the " +
                     std::to_string(context) + " tokens the probe allows for this model (its context, at least 4,096)");
  // Items are built before they run: ids, context and target positions of about two spans each.
  const double item_bytes = 3.0 * 8 * static_cast<double>(2 * opt.span_tokens + 16);
  if (item_bytes * static_cast<double>(opt.num_items) > static_cast<double>(m.memory_budget))
    throw UsageError("--num-items " + std::to_string(opt.num_items) + " x --span-tokens " +
                     std::to_string(opt.span_tokens) + ": the probe items take about " +
                     memory_string(static_cast<int64_t>(item_bytes * static_cast<double>(opt.num_items))) +
                     ", more than the " + memory_string(m.memory_budget) +
                     " left under the memory limit (--max-memory)");
  const ModelConfig& c = m.checkpoint.config();
  const Tokenizer& tok = *corpus.tokenizer;
  const std::vector<int64_t> prefix =
      corpus.tmpl.add_special_tokens ? tok.encode("", true).ids : std::vector<int64_t>{};

  // Probe text: a text file, or the corpus's prompts and responses.
  std::vector<std::string> texts;
  std::vector<Sample> samples;
  std::string source;
  if (!f.probe_data.empty()) {
    source = f.probe_data;
  } else if (!f.probe_text.empty()) {
    texts = paragraphs(f.probe_text);
    source = f.probe_text;
  } else if (!data.empty() && data != "-") {
    DatasetOptions dopt = corpus.options;
    dopt.strict = false;
    dopt.sample.truncate = true;
    dopt.max_samples = kProbeSamples;
    dopt.on_notice = nullptr;  // the scoring pass tells
    const CorpusStats st = read_corpus(data, corpus.tmpl, tok, *corpus.steps, dopt, [&](Sample&& s) {
      texts.push_back(s.rendered.text.substr(s.rendered.response_begin,
                                             s.rendered.response_end - s.rendered.response_begin));
      samples.push_back(std::move(s));
    });
    if (samples.empty() && !st.rejects.empty())
      throw DataError(data + ": none of its " + std::to_string(st.lines) +
                      " records could be read, so the probe has no text (the first, line " +
                      std::to_string(st.rejects[0].line) + ": " + st.rejects[0].reason +
                      "); check --format and the field flags with `air render`, or give --probe-text or --heads");
    source = data + " (responses)";
  }

  std::vector<ProbeItem> items;
  if (!f.probe_data.empty()) {
    items = read_items(f.probe_data, c.vocab_size);
  } else {
    switch (opt.kind) {
      case ProbeKind::kRepeat: {
        std::vector<std::vector<int64_t>> ids;
        for (const auto& t : texts) ids.push_back(tok.encode(t, false).ids);
        size_t usable = 0;
        for (const auto& v : ids) usable += v.size() >= 4;
        if (usable == 0 && (!f.probe_text.empty() || (!data.empty() && data != "-")))
          throw DataError("no text for the repeat probe in " + (f.probe_text.empty() ? data : f.probe_text) +
                          ": none of it gave a span of 4 or more tokens (" + std::to_string(texts.size()) +
                          " usable texts read); give another --probe-text or --data");
        if (usable == 0) {
          spdlog::warn("no text for the repeat probe (give --probe-text or --data): falling back "
                       "to repeated random tokens, which find only noise on small models");
          opt.kind = ProbeKind::kRandomRepeat;
          source = "random tokens";
          items = random_repeat_items(c.vocab_size, std::min<int64_t>(c.vocab_size / 2, 256), prefix, opt);
        } else {
          items = repeat_items(ids, prefix, opt);
        }
        break;
      }
      case ProbeKind::kRandomRepeat:
        source = "random tokens";
        items = random_repeat_items(c.vocab_size, std::min<int64_t>(c.vocab_size / 2, 256), prefix, opt);
        break;
      case ProbeKind::kKvRetrieval:
        items = kv_retrieval_items(tok, sentences(texts), corpus.tmpl.add_special_tokens, opt);
        break;
      case ProbeKind::kCorpus:
        if (samples.empty()) throw UsageError("--probe corpus needs --data");
        items = corpus_items(samples, opt);
        break;
    }
  }
  for (const auto& it : items)
    for (int64_t x : it.ids)
      if (x >= c.vocab_size) throw DataError("probe item token id " + std::to_string(x) + " is outside the model's vocabulary");

  spdlog::info("probe: {} {} items from {}", items.size(), probe_kind_name(opt.kind), source);
  const ProbeResult r = run_probe(m.model, items, opt);
  if (r.counted_all)
    spdlog::warn("probe: the model got none of the {} items mostly right, so all were counted (R_h then also counts "
                 "copies the model does not act on); text the model knows (--probe-text) or a larger model does better",
                 r.items_total);
  HeadSelection sel;
  sel.delta = f.delta;
  sel.num_heads = f.num_heads;
  sel.min_score = f.min_score;
  const HeadSet selected = select_heads(r.ranked, c.num_hidden_layers * c.num_attention_heads, sel);

  HeadsFileInfo info;
  info.model_path = m.checkpoint.dir().string();
  info.architecture = c.architecture_name;
  info.fingerprint = m.checkpoint.fingerprint();
  info.probe = opt;
  info.probe_source = source;
  info.selection = sel;
  info.layers = c.num_hidden_layers;
  info.heads_per_layer = c.num_attention_heads;
  if (!out.empty()) write_heads_file(out, info, r, selected);
  std::string top;
  for (size_t i = 0; i < std::min<size_t>(5, r.ranked.size()); ++i)
    top += (i ? ", " : "") + std::to_string(r.ranked[i].head.layer) + ":" +
           std::to_string(r.ranked[i].head.head) + " (" + std::to_string(r.ranked[i].score).substr(0, 6) + ")";
  spdlog::info("probe: {} of {} items counted; top heads {}; selected {} -> {}", r.items_counted,
               r.items_total, top, selected.to_string(), out);
  const Separation sep = separation(r, selected);
  spdlog::info("probe: the selected heads stand {:.1f} robust standard deviations above the median head on average "
               "({:.1f} the weakest; R_h median {:.4f}, spread {:.4f}; gap to the next head {:.4f})",
               sep.z_mean_selected, sep.z_weakest_selected, sep.median, sep.spread, sep.gap);
  if (!sep.distinct)
    spdlog::warn("probe: this selection is indistinguishable from noise ({}), and scores made with it measure "
                 "little. Probe with text the model predicts well (--probe-text, or --probe kv-retrieval for an "
                 "instruction model), more items (--num-items), fewer heads (--num-heads), or use a larger trained "
                 "model",
                 !sep.model_could_do_items ? "the model got none of the items right, so they test nothing it does"
                 : sep.items_counted < kMinCountedItems
                     ? "only " + std::to_string(sep.items_counted) + " items counted, fewer than " +
                           std::to_string(kMinCountedItems)
                     : "the selected heads stand " + fmt::format("{:.1f}", sep.z_mean_selected) +
                           " spreads above the median head, fewer than " + fmt::format("{:.0f}", kMinSeparationZ));
  return selected;
}

std::string probe_settings_difference(const ProbeFlags& f, const nlohmann::json& heads_file) {
  // Not compared: where the text came from (a corpus or text file may move; the probe reads
  // the same records).
  const nlohmann::json want_probe = {{"kind", f.kind}, {"num_items", f.num_items}, {"seed", f.seed},
                                     {"span_tokens", f.span_tokens}, {"all_items", f.all_items}};
  const nlohmann::json want_sel = {{"delta", f.delta}, {"num_heads", f.num_heads}, {"min_score", f.min_score}};
  auto field = [&](const char* part, const std::string& key) {
    const auto p = heads_file.find(part);
    return p != heads_file.end() && p->is_object() && p->contains(key) ? (*p)[key] : nlohmann::json();
  };
  // The repeat probe falls back to random tokens when it finds no text: that file is still its.
  const bool fell_back = f.kind == "repeat" && field("probe", "kind") == "random-repeat" &&
                         field("probe", "source") == "random tokens";
  for (const auto& [part, want] : {std::pair{"probe", &want_probe}, std::pair{"selection", &want_sel}})
    for (const auto& [key, value] : want->items()) {
      if (fell_back && key == "kind") continue;
      const std::string d = json_change(std::string(part) + "." + key, field(part, key), value);
      if (!d.empty()) return d;
    }
  return "";
}

}  // namespace air::cli
