#include "air/dataset.h"

#include "air/error.h"

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
      throw DataError(std::to_string(total) + " tokens, more than --max-length " +
                      std::to_string(opt.max_length));
    if (first + 1 > opt.max_length)
      throw DataError("the prompt alone is " + std::to_string(first) +
                      " tokens, --max-length is " + std::to_string(opt.max_length));
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

CorpusStats read_corpus(const std::string& path, const ChatTemplate& tmpl, const Tokenizer& tok,
                        const StepSplitter& steps, const DatasetOptions& opt,
                        const std::function<void(Sample&&)>& on_sample,
                        const std::function<void(const Reject&)>& on_reject) {
  if (opt.shard_count < 1 || opt.shard_index < 0 || opt.shard_index >= opt.shard_count)
    throw UsageError("shard " + std::to_string(opt.shard_index) + " of " + std::to_string(opt.shard_count) +
                     ": expected 0 <= index < count");
  LineReader in(path);
  CorpusStats stats;
  std::string line;
  int64_t n = 0, records = 0;
  bool too_long = false;
  while (in.next(line, &too_long)) {
    n = in.line_number();
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (records++ % opt.shard_count != opt.shard_index) continue;
    ++stats.lines;
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
      ++stats.skipped;
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
