#pragma once

// Corpus lines -> token-exact samples: record parsing, chat template rendering, one
// tokenization of the whole rendered text, response span and steps from its offsets.

#include "air/chat_template.h"
#include "air/corpus.h"
#include "air/steps.h"
#include "air/tokenizer.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace air {

struct SampleOptions {
  int64_t max_length = 4096;  // tokens per rendered sample (0 = no limit)
  bool truncate = false;      // cut over-long samples at max_length instead of rejecting them
  std::string max_length_why; // where max_length comes from, for messages ("" : the flag)
};

// A record ready to score.
struct Sample {
  Record record;
  Rendered rendered;
  std::vector<int64_t> ids;                        // the whole rendered sequence
  std::vector<std::pair<size_t, size_t>> offsets;  // byte range of each id in rendered.text
  int64_t prompt_tokens = 0;    // ids before the first response token
  bool truncated = false;       // ids were cut at max_length
  std::vector<Step> steps;      // over the response tokens ids[prompt_tokens..]
  int64_t response_tokens() const { return static_cast<int64_t>(ids.size()) - prompt_tokens; }
};

// Renders, tokenizes once and locates the response and its steps. The response tokens are
// those holding any byte of the response (a token straddling the boundary belongs to it).
// Throws DataError (empty response after tokenization, over max_length, ...).
Sample prepare_sample(Record record, const ChatTemplate& tmpl, const Tokenizer& tok,
                      const StepSplitter& steps, const SampleOptions& opt);

// A corpus line that could not be used.
struct Reject {
  int64_t line = 0;
  std::string id;      // record_id() of the line
  std::string reason;
  std::string raw;     // the line as it was
};

// One of `count` parts of a corpus: every count-th record from the index-th (0-based, counting
// record lines), so that `count` processes split a corpus.
struct Shard {
  int64_t index = 0, count = 1;
  // "I/N" -> {I, N}; throws OptionError (option "shard") unless 0 <= I < N.
  static Shard parse(const std::string& text);
  // Throws OptionError (option "shard") unless 0 <= index < count.
  void check() const;
  std::string str() const { return std::to_string(index) + "/" + std::to_string(count); }
};

struct DatasetOptions {
  CorpusOptions corpus;
  SampleOptions sample;
  bool strict = false;  // stop at the first bad line (DataError naming file and line)
  Shard shard;  // the records of other shards are skipped unread
  int64_t max_samples = 0;  // stop reading after this many good samples (0 = read all)
  // Records for which this returns true (after parsing, before rendering and tokenizing) are
  // counted as read and passed over: a resumed run's records already scored.
  std::function<bool(const Record&)> skip;
  // Told once per run of what a reader should know as it happens: the first record read in each
  // layout (warning = false), the first record leaving each longer field unused (warning =
  // true), with the record's line.
  std::function<void(bool warning, int64_t line, const std::string& text)> on_notice;
  // Told as each record of the shard is read: the fraction of the input read so far, that record
  // included (-1 when its size is unknown: stdin, a pipe).
  std::function<void(double fraction)> on_progress;
};

// Reads a JSONL corpus ("-" = stdin; gzip is read as the text it holds; LineReader refuses a
// JSON array or a pretty-printed document up front). Bad lines become rejects (or, with strict, an error).
// `on_sample` receives each good sample in input order.
struct CorpusStats {
  int64_t lines = 0;      // non-blank lines read (of this shard)
  int64_t samples = 0;    // good samples
  int64_t passed_over = 0;  // records DatasetOptions::skip passed over (a resumed run's)
  int64_t truncated = 0;  // samples cut at max_length
  int64_t single_step = 0;  // samples whose response is one step
  std::map<std::string, int64_t> layouts;        // Record::layout -> records read so
  std::map<std::string, int64_t> unused_fields;  // field -> records that left it unused (Record::unused)
  std::vector<Reject> rejects;
};
// `on_reject`, when given, receives each reject in input order too (it is still counted).
CorpusStats read_corpus(const std::string& path, const ChatTemplate& tmpl, const Tokenizer& tok,
                        const StepSplitter& steps, const DatasetOptions& opt,
                        const std::function<void(Sample&&)>& on_sample,
                        const std::function<void(const Reject&)>& on_reject = nullptr);

}  // namespace air
