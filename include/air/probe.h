#pragma once

// The head probe of AIR-METHOD.md §2: retrieval scores R_h of every (layer, query head) from
// probe items, and the critical set.

#include "air/dataset.h"
#include "air/head_set.h"
#include "air/nn/model.h"
#include "air/tokenizer.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace air {

// One probe item: a token sequence, its context positions K and target positions Q (position
// t in Q predicts ids[t + 1], to be retrieved from the context).
struct ProbeItem {
  std::vector<int64_t> ids;
  std::vector<int64_t> context;  // K, ascending
  std::vector<int64_t> targets;  // Q, ascending, each < ids.size() - 1
};

enum class ProbeKind { kRepeat, kRandomRepeat, kKvRetrieval, kCorpus };
ProbeKind parse_probe_kind(const std::string& name);  // throws UsageError
std::string probe_kind_name(ProbeKind k);

struct ProbeOptions {
  ProbeKind kind = ProbeKind::kRepeat;
  int64_t num_items = 32;   // items to build
  uint64_t seed = 0;        // item sampling seed
  int64_t span_tokens = 48; // tokens in each repeated span (repeat, random-repeat)
  bool all_items = false;   // count every item, not only those the model gets mostly right
};

// How the critical set is chosen from the ranking (exactly one applies: num_heads, then
// min_score, then delta).
struct HeadSelection {
  double delta = 0.05;      // top fraction of all L x H heads (at least one)
  int64_t num_heads = 0;    // exactly this many (0 = unused)
  double min_score = -1;    // every head with R_h >= this (< 0 = unused; none reaching it: refused)
};

// ---- item builders (seeded, deterministic) ----

// `repeat`: a span of natural text then the same span again; K = the first copy, Q = the
// second copy's positions whose next token is in it. `texts` are token sequences; `prefix`
// (e.g. BOS) is put in front of each item.
std::vector<ProbeItem> repeat_items(const std::vector<std::vector<int64_t>>& texts,
                                    const std::vector<int64_t>& prefix, const ProbeOptions& opt);
// `random-repeat`: the same with uniformly random token ids in [low, vocab).
std::vector<ProbeItem> random_repeat_items(int64_t vocab, int64_t low,
                                           const std::vector<int64_t>& prefix,
                                           const ProbeOptions& opt);
// `kv-retrieval`: a JSON object of {32-char key: sentence}, three worked demonstrations, then
// a query key; K = the queried value in the JSON, Q = the answer positions.
std::vector<ProbeItem> kv_retrieval_items(const Tokenizer& tok, const std::vector<std::string>& sentences,
                                          bool add_special, const ProbeOptions& opt);
// `corpus`: the samples themselves; K = prompt, Q = response positions whose next token occurs
// in the prompt.
std::vector<ProbeItem> corpus_items(const std::vector<Sample>& samples, const ProbeOptions& opt);

// ---- scoring ----

struct HeadScore {
  Head head;
  double score = 0;     // R_h: mean copy rate over counted items
};

struct ProbeResult {
  std::vector<HeadScore> ranked;  // every head, by R_h descending, ties by (layer, head)
  int64_t items_total = 0;
  int64_t items_counted = 0;      // items that entered R_h
  bool counted_all = false;       // no item qualified, so all were counted
};

// Runs the base model over each item with an attention observer that reduces each layer's
// probabilities to the argmax key of each target query (no [L, H, T, T] tensor is kept).
// `on_item`, when given, is told after each item: items done, items in all, the item's tokens.
ProbeResult run_probe(const nn::CausalLM& model, const std::vector<ProbeItem>& items,
                      const ProbeOptions& opt,
                      const std::function<void(int64_t done, int64_t total, int64_t tokens)>& on_item = nullptr);

// The critical set from a ranking over `total_heads` heads. Throws UsageError for num_heads
// above the heads there are, or a min_score no head reaches.
HeadSet select_heads(const std::vector<HeadScore>& ranked, int64_t total_heads,
                     const HeadSelection& sel);

// How far the selected heads stand out from all heads: a selection indistinguishable from the
// rest is noise (an untrained or tiny model, or items the model cannot do), not copy heads.
// z-scores are robust: (R_h - median) / (1.4826 MAD) over all heads (the standard deviation when
// the MAD is 0), so that a few real copy heads do not hide in their own spread. For heads with
// scores drawn from one bell-shaped distribution, the mean of the top 5% lies about 2 such units
// above the median, and the best of 1,000 heads about 3.3.
struct Separation {
  double weakest_selected = 0;      // the lowest R_h among the selected heads
  double strongest_unselected = 0;  // the highest R_h among the others (0 when all are selected)
  double gap = 0;                   // weakest_selected - strongest_unselected
  double median = 0, spread = 0;    // over all heads; spread = 1.4826 MAD (or the sd)
  double z_mean_selected = 0;       // the selected heads' mean R_h, in spread units above the median
  double z_weakest_selected = 0;    // the weakest selected head's R_h, likewise
  int64_t items_counted = 0;        // items that entered R_h
  bool model_could_do_items = false;  // some item was mostly right (else all were counted)
  // z_mean_selected >= kMinSeparationZ, from at least kMinCountedItems items the model got
  // mostly right: copy rates of items a model cannot do, or of a handful, are noise.
  bool distinct = false;
};
constexpr double kMinSeparationZ = 4.0;
constexpr int64_t kMinCountedItems = 8;
Separation separation(const ProbeResult& result, const HeadSet& selected);

}  // namespace air
