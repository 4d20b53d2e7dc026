#include "air/dataset.h"

#include "air/error.h"

#include <cinttypes>
#include <cstdio>
#include <optional>

namespace air {

Sample prepare_sample(Record record, const ChatTemplate& tmpl, const Tokenizer& tok,
                      const StepSplitter& splitter, const SampleOptions& opt) {
  Sample s;
  s.rendered = render(tmpl, record.messages);
  s.record = std::move(record);
  Encoding enc = tok.encode(s.rendered.text, tmpl.add_special_tokens);
  const size_t rb = s.rendered.response_begin, re = s.rendered.response_end;

  // Response tokens hold a byte of [rb, re); offsets are ordered, so they are contiguous.
  int64_t first = -1, last = -1;
  for (size_t k = 0; k < enc.ids.size(); ++k) {
    const auto [b, e] = enc.offsets[k];
    if (e > rb && b < re) {
      if (first < 0) first = static_cast<int64_t>(k);
      last = static_cast<int64_t>(k);
    }
  }
  if (first < 0) throw DataError("the response has no tokens");
  if (first == 0) {
    // The first token has no context to be predicted from; it stays out of the response.
    first = 1;
    if (last < first) throw DataError("the response is a single token with no context");
  }
  enc.ids.resize(last + 1);
  enc.offsets.resize(last + 1);
  s.prompt_tokens = first;

  const int64_t total = static_cast<int64_t>(enc.ids.size());
  if (opt.max_length > 0 && total > opt.max_length) {
    if (!opt.truncate)
      throw DataError(std::to_string(total) + " tokens, more than " +
                      (opt.max_length_why.empty() ? option_name("max_length") + " " + std::to_string(opt.max_length)
                                                  : std::to_string(opt.max_length) + ", " + opt.max_length_why));
    if (first + 1 > opt.max_length)
      throw DataError("the prompt alone is " + std::to_string(first) +
                      " tokens, " + option_name("max_length") + " is " + std::to_string(opt.max_length));
    enc.ids.resize(opt.max_length);
    enc.offsets.resize(opt.max_length);
    s.truncated = true;
  }
  s.ids = std::move(enc.ids);
  s.offsets = std::move(enc.offsets);

  // Steps over the (possibly truncated) response text.
  const size_t resp_end = s.truncated ? std::max(rb, s.offsets.back().second) : re;
  const std::string_view response(s.rendered.text.data() + rb, resp_end - rb);
  std::vector<size_t> starts;
  starts.reserve(s.ids.size() - first);
  for (size_t k = first; k < s.ids.size(); ++k)
    starts.push_back(s.offsets[k].first > rb ? s.offsets[k].first - rb : 0);
  s.steps = splitter.split(response, starts);
  return s;
}

Shard Shard::parse(const std::string& text) {
  Shard s{-1, 0};
  char slash = 0, rest = 0;
  if (std::sscanf(text.c_str(), "%" SCNd64 "%c%" SCNd64 "%c", &s.index, &slash, &s.count, &rest) != 3 || slash != '/' ||
      s.count < 1 || s.index < 0 || s.index >= s.count)
    throw OptionError("shard", option_name("shard") + " '" + text + "': expected I/N with 0 <= I < N, e.g. 0/8");
  return s;
}

void Shard::check() const {
  if (count < 1 || index < 0 || index >= count)
    throw OptionError("shard", option_name("shard") + " " + str() + ": expected I/N with 0 <= I < N, e.g. 0/8");
}

CorpusStats read_corpus(const std::string& path, const ChatTemplate& tmpl, const Tokenizer& tok,
                        const StepSplitter& steps, const DatasetOptions& opt,
                        const std::function<void(Sample&&)>& on_sample,
                        const std::function<void(const Reject&)>& on_reject) {
  opt.shard.check();
  LineReader in(path);
  CorpusStats stats;
  std::string line;
  int64_t n = 0, records = 0;
  bool too_long = false;
  auto progress = [&] {
    if (opt.on_progress)
      opt.on_progress(in.size() > 0 ? static_cast<double>(in.bytes_consumed()) / static_cast<double>(in.size()) : -1);
  };
  while (in.next_record(line, &too_long)) {
    n = in.line_number();
    if (records++ % opt.shard.count != opt.shard.index) continue;
    ++stats.lines;
    progress();  // this record read
    // A bad line becomes a reject (or, with strict, an error naming it).
    auto reject = [&](const std::string& id, const DataError& e) {
      if (opt.strict) throw DataError(path + ":" + std::to_string(n) + ": " + e.what());
      stats.rejects.push_back({n, id, e.what(), line});
      if (on_reject) on_reject(stats.rejects.back());
    };
    std::optional<Record> rec;
    try {
      if (too_long)
        throw DataError("the line is longer than " + std::to_string(kMaxLineBytes >> 20) +
                        " MB (only its start is kept in the rejects file)");
      rec = parse_record(line, n, opt.corpus);
    } catch (const DataError& e) {
      reject(record_id(line, n, opt.corpus.id_field), e);
      continue;
    }
    if (stats.layouts[rec->layout]++ == 0 && opt.on_notice) opt.on_notice(false, n, rec->layout);
    for (const auto& field : rec->unused)
      if (stats.unused_fields[field]++ == 0 && opt.on_notice)
        opt.on_notice(true, n, "field '" + field + "' holds more text than the response (" + rec->layout +
                                   ") and is not used");
    if (opt.skip && opt.skip(*rec)) {  // outside the try: its errors are its own
      ++stats.passed_over;
      continue;
    }
    const std::string id = rec->id;
    std::optional<Sample> s;
    try {
      s = prepare_sample(std::move(*rec), tmpl, tok, steps, opt.sample);
    } catch (const DataError& e) {
      reject(id, e);
      continue;
    }
    // Outside the try: what the callback throws is its own error, not this line's.
    stats.truncated += s->truncated;
    stats.single_step += s->steps.size() == 1;
    ++stats.samples;
    on_sample(std::move(*s));
    if (opt.max_samples > 0 && stats.samples >= opt.max_samples) break;
  }
  return stats;
}

}  // namespace air
