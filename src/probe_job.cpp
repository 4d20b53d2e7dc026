#include "air/probe_job.h"

#include "air/error.h"
#include "air/line_reader.h"
#include "air/output.h"
#include "air/score_output.h"
#include "air/tokenizer.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace air {
namespace {

// Samples read from the corpus for probe text (long ones truncated, bad ones skipped).
constexpr int64_t kProbeSamples = 2000;

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::vector<std::string> paragraphs(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path + ": cannot open probe text");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (auto bad = find_invalid_utf8(text)) throw DataError(path + ": invalid UTF-8 at byte " + std::to_string(*bad));
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

// Item counts and lengths that fit the model's context and the memory left.
void check_probe_fits(const LoadedModel& m, const ProbeOptions& opt) {
  if (opt.num_items < 1) throw OptionError("num_items", option_name("num_items") + " must be >= 1");
  if (opt.span_tokens < 2) throw OptionError("span_tokens", option_name("span_tokens") + " must be >= 2");
  // An item is a span and its repeat: it must fit the model's context (at least 4,096 tokens, as
  // max_length), or the probe runs for hours on positions the model never saw.
  const int64_t context = std::max<int64_t>(m.checkpoint.config().max_position_embeddings, 4096);
  if (2 * opt.span_tokens + 8 > context)
    throw OptionError("span_tokens", option_name("span_tokens") + " " + std::to_string(opt.span_tokens) +
                                         ": an item is twice that, more than the " + std::to_string(context) +
                                         " tokens the probe allows for this model (its context, at least 4,096)");
  // Items are built before they run: ids, context and target positions of about two spans each.
  const double item_bytes = 3.0 * 8 * static_cast<double>(2 * opt.span_tokens + 16);
  if (item_bytes * static_cast<double>(opt.num_items) > static_cast<double>(m.memory_budget))
    throw OptionError("num_items", option_name("num_items") + " " + std::to_string(opt.num_items) + " x " + option_name("span_tokens") + " " +
                                       std::to_string(opt.span_tokens) + ": the probe items take about " +
                                       memory_string(static_cast<int64_t>(item_bytes * static_cast<double>(opt.num_items))) +
                                       ", more than the " + memory_string(m.memory_budget) +
                                       " left under the memory limit (" + option_name("max_memory") + ")");
}

// The text the items are built from: the probe text file's paragraphs, or the corpus's
// responses (and the samples, for the corpus probe).
struct ProbeText {
  std::vector<std::string> texts;
  std::vector<Sample> samples;
  std::string source;
};

ProbeText probe_text(const ProbeSettings& s, const CorpusSetup& corpus, const std::string& data) {
  ProbeText t;
  if (!s.probe_data.empty()) {
    t.source = s.probe_data;
  } else if (!s.probe_text.empty()) {
    t.texts = paragraphs(s.probe_text);
    t.source = s.probe_text;
  } else if (!data.empty() && data != "-") {
    DatasetOptions dopt = corpus.options;
    dopt.strict = false;
    dopt.sample.truncate = true;
    dopt.max_samples = kProbeSamples;
    dopt.on_notice = nullptr;  // the scoring pass tells
    const CorpusStats st = read_corpus(data, corpus.tmpl, *corpus.tokenizer, *corpus.splitter, dopt, [&](Sample&& x) {
      t.texts.push_back(x.rendered.text.substr(x.rendered.response_begin, x.rendered.response_end - x.rendered.response_begin));
      t.samples.push_back(std::move(x));
    });
    if (t.samples.empty() && !st.rejects.empty())
      throw DataError(data + ": none of its " + std::to_string(st.lines) +
                      " records could be read, so the probe has no text (the first, line " +
                      std::to_string(st.rejects[0].line) + ": " + st.rejects[0].reason +
                      "); check how records are read (" + option_name("format") + ", " + option_name("prompt_field") + ", " +
                      option_name("response_fields") + "), or give probe text (" + option_name("probe_text") + ")");
    t.source = data + " (responses)";
  }
  return t;
}

std::vector<ProbeItem> repeat_probe_items(const ProbeText& t, const Tokenizer& tok, const std::vector<int64_t>& prefix,
                                          int64_t vocab, ProbeOptions& opt, std::string& source, JobEvents& events) {
  std::vector<std::vector<int64_t>> ids;
  for (const auto& x : t.texts) ids.push_back(tok.encode(x, false).ids);
  size_t usable = 0;
  for (const auto& v : ids) usable += v.size() >= 4;
  if (usable > 0) return repeat_items(ids, prefix, opt);
  if (!t.source.empty())
    throw DataError("no text for the repeat probe in " + t.source + ": none of it gave a span of 4 or more tokens (" +
                    std::to_string(t.texts.size()) + " texts read); give other probe text (" + option_name("probe_text") + ") or corpus (" +
                    option_name("data") + ")");
  events.warn("no text for the repeat probe (give " + option_name("probe_text") + " or " + option_name("data") +
              "): falling back to repeated random tokens, which find only noise on small models");
  opt.kind = ProbeKind::kRandomRepeat;
  source = "random tokens";
  return random_repeat_items(vocab, std::min<int64_t>(vocab / 2, 256), prefix, opt);
}

std::vector<ProbeItem> build_items(const LoadedModel& m, const ProbeSettings& s, const CorpusSetup& corpus,
                                   const ProbeText& t, ProbeOptions& opt, std::string& source, JobEvents& events) {
  const int64_t vocab = m.checkpoint.config().vocab_size;
  if (!s.probe_data.empty()) return read_items(s.probe_data, vocab);
  const Tokenizer& tok = *corpus.tokenizer;
  const std::vector<int64_t> prefix = corpus.tmpl.add_special_tokens ? tok.encode("", true).ids : std::vector<int64_t>{};
  switch (opt.kind) {
    case ProbeKind::kRepeat:
      return repeat_probe_items(t, tok, prefix, vocab, opt, source, events);
    case ProbeKind::kRandomRepeat:
      source = "random tokens";
      return random_repeat_items(vocab, std::min<int64_t>(vocab / 2, 256), prefix, opt);
    case ProbeKind::kKvRetrieval:
      return kv_retrieval_items(tok, sentences(t.texts), corpus.tmpl.add_special_tokens, opt);
    case ProbeKind::kCorpus:
      if (t.samples.empty()) throw OptionError("probe", "the corpus probe needs a corpus (" + option_name("data") + ")");
      return corpus_items(t.samples, opt);
  }
  return {};
}

// What the ranking says: the top heads, and whether the selection stands out from noise.
void report_probe(const HeadsFile& h, JobEvents& events) {
  const ProbeResult& r = h.result;
  if (r.counted_all)
    events.warn("probe: the model got none of the " + std::to_string(r.items_total) +
                " items mostly right, so all were counted (R_h then also counts copies the model does not act on); "
                "text the model knows (" + option_name("probe_text") + ") or a larger model does better");
  std::string top;
  for (size_t i = 0; i < std::min<size_t>(5, r.ranked.size()); ++i)
    top += (i ? ", " : "") + std::to_string(r.ranked[i].head.layer) + ":" + std::to_string(r.ranked[i].head.head) +
           " (" + std::to_string(r.ranked[i].score).substr(0, 6) + ")";
  events.info("probe: " + std::to_string(r.items_counted) + " of " + std::to_string(r.items_total) +
              " items counted; top heads " + top + "; selected " + h.selected.to_string());
  const Separation sep = separation(r, h.selected);
  events.info("probe: the selected heads stand " + fixed(sep.z_mean_selected, 1) +
              " robust standard deviations above the median head on average (" + fixed(sep.z_weakest_selected, 1) +
              " the weakest; R_h median " + fixed(sep.median, 4) + ", spread " + fixed(sep.spread, 4) +
              "; gap to the next head " + fixed(sep.gap, 4) + ")");
  if (sep.distinct) return;
  const std::string why =
      !sep.model_could_do_items ? "the model got none of the items right, so they test nothing it does"
      : sep.items_counted < kMinCountedItems
          ? "only " + std::to_string(sep.items_counted) + " items counted, fewer than " + std::to_string(kMinCountedItems)
          : "the selected heads stand " + fixed(sep.z_mean_selected, 1) + " spreads above the median head, fewer than " +
                fixed(kMinSeparationZ, 0);
  events.warn("probe: this selection is indistinguishable from noise (" + why +
              "), and scores made with it measure little. Probe with text the model predicts well (" +
              option_name("probe_text") + ", or the kv-retrieval probe for an instruction model), more items (" +
              option_name("num_items") + "), fewer heads (" + option_name("num_heads") + "), or use a larger trained model");
}

}  // namespace

HeadsFile probe_heads(const LoadedModel& m, const ProbeSettings& s, const CorpusSetup& corpus,
                      const std::string& data, JobEvents& events) {
  ProbeOptions opt = s.probe;
  check_probe_fits(m, opt);
  const ModelConfig& c = m.checkpoint.config();
  const ProbeText text = probe_text(s, corpus, data);
  std::string source = text.source;
  const std::vector<ProbeItem> items = build_items(m, s, corpus, text, opt, source, events);
  for (const auto& it : items)
    for (int64_t x : it.ids)
      if (x >= c.vocab_size) throw DataError("probe item token id " + std::to_string(x) + " is outside the model's vocabulary");
  events.info("probe: " + std::to_string(items.size()) + " " + probe_kind_name(opt.kind) + " items from " + source);
  HeadsFile h;
  ScoreProgress p;
  p.stage = "probe";
  p.total = static_cast<int64_t>(items.size());
  const auto t0 = std::chrono::steady_clock::now();
  h.result = run_probe(m.model, items, opt, [&](int64_t done, int64_t total, int64_t tokens) {
    p.records = p.scored = done;
    p.tokens += tokens;
    p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    p.tokens_per_second = p.seconds > 0 ? static_cast<double>(p.tokens) / p.seconds : 0;
    p.fraction = static_cast<double>(done) / static_cast<double>(total);
    p.eta_seconds = p.seconds * static_cast<double>(total - done) / static_cast<double>(done);
    p.done = done == total;
    events.progress(p);
  });
  h.selected = select_heads(h.result.ranked, c.num_hidden_layers * c.num_attention_heads, s.selection);
  h.info.model_path = m.checkpoint.dir().string();
  h.info.architecture = c.architecture_name;
  h.info.fingerprint = m.checkpoint.fingerprint();
  h.info.probe = opt;
  h.info.probe_source = source;
  h.info.selection = s.selection;
  h.info.layers = c.num_hidden_layers;
  h.info.heads_per_layer = c.num_attention_heads;
  report_probe(h, events);
  return h;
}

std::string probe_settings_difference(const ProbeSettings& s, const nlohmann::json& heads_file) {
  const ProbeOptions& p = s.probe;
  const nlohmann::json want_probe = {{"kind", probe_kind_name(p.kind)}, {"num_items", p.num_items}, {"seed", p.seed},
                                     {"span_tokens", p.span_tokens}, {"all_items", p.all_items}};
  const HeadSelection& sel = s.selection;
  const nlohmann::json want_sel = {{"delta", sel.delta}, {"num_heads", sel.num_heads}, {"min_score", sel.min_score}};
  auto field = [&](const char* part, const std::string& key) {
    const auto it = heads_file.find(part);
    return it != heads_file.end() && it->is_object() && it->contains(key) ? (*it)[key] : nlohmann::json();
  };
  // The repeat probe falls back to random tokens when it finds no text: that file is still its.
  const bool fell_back = p.kind == ProbeKind::kRepeat && field("probe", "kind") == "random-repeat" &&
                         field("probe", "source") == "random tokens";
  for (const auto& [part, want] : {std::pair{"probe", &want_probe}, std::pair{"selection", &want_sel}})
    for (const auto& [key, value] : want->items()) {
      if (fell_back && key == "kind") continue;
      const std::string d = json_change(option_name(key == "kind" ? "probe" : key), field(part, key), value);
      if (!d.empty()) return d;
    }
  return "";
}

HeadsFile run_probe_job(const ProbeJobOptions& opt, JobEvents& events) {
  const ProbeSettings& p = opt.probe;
  check_input_file({"corpus (" + option_name("data") + ")", opt.data});
  check_input_file({"probe items (" + option_name("probe_data") + ")", p.probe_data});
  check_input_file({"probe text (" + option_name("probe_text") + ")", p.probe_text});
  check_outputs({{"heads file (" + option_name("out") + ")", opt.out}}, {{"model folder (" + option_name("model") + ")", opt.model},
                                                  {"corpus (" + option_name("data") + ")", opt.data},
                                                  {"probe items (" + option_name("probe_data") + ")", p.probe_data},
                                                  {"probe text (" + option_name("probe_text") + ")", p.probe_text},
                                                  {"chat template (" + option_name("template") + ")", opt.corpus.template_file()}});
  check_writable(opt.out);
  check_jsonl(opt.data);
  const LoadedModel m = load_model(opt.model, opt.runtime);
  events.info("dtype " + dtype_name(m.dtype) + " (" + m.dtype_why + ")");
  for (const auto& note : m.notes) events.warn(note);
  CorpusSetup corpus = make_corpus_setup(opt.corpus, opt.model);
  report_corpus_notices(corpus, events);
  check_tokenizer_fits(*corpus.tokenizer, m.checkpoint.config().vocab_size, opt.model);
  HeadsFile h = probe_heads(m, p, corpus, opt.data, events);
  write_heads_file(opt.out, h);
  events.info("probe: heads written to " + opt.out);
  return h;
}

}  // namespace air
