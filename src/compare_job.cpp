#include "air/compare_job.h"

#include "air/error.h"
#include "air/line_reader.h"
#include "air/output.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

namespace air {
namespace {

std::string key_of(const ScoreEntry& e) {
  return e.hash.empty() ? std::to_string(e.line) + "\x1f" + e.id : e.hash + "\x1f" + std::to_string(e.line);
}

// 1-based ranks by score, highest first, ties by corpus line.
std::vector<int64_t> rank_by(const std::vector<ComparedRecord>& r, double ComparedRecord::*score) {
  std::vector<size_t> order(r.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return r[x].*score > r[y].*score; });
  std::vector<int64_t> rank(r.size());
  for (size_t i = 0; i < order.size(); ++i) rank[order[i]] = static_cast<int64_t>(i + 1);
  return rank;
}

}  // namespace

Comparison compare_scores(const ScoreFiles& a, const ScoreFiles& b, int64_t top_k, double top_ratio, int64_t moved) {
  Comparison c;
  std::unordered_map<std::string, const ScoreEntry*> in_b;
  for (const auto& e : b.entries)
    if (e.ok) in_b.emplace(key_of(e), &e);
  std::unordered_map<std::string, bool> matched;
  for (const auto& e : a.entries) {
    if (!e.ok) continue;
    const auto it = in_b.find(key_of(e));
    if (it == in_b.end()) {
      ++c.only_a;
      continue;
    }
    matched[it->first] = true;
    c.records.push_back({e.id, e.line, e.score, it->second->score, 0, 0});
  }
  c.both = static_cast<int64_t>(c.records.size());
  c.only_b = static_cast<int64_t>(in_b.size()) - static_cast<int64_t>(matched.size());
  std::sort(c.records.begin(), c.records.end(), [](const auto& x, const auto& y) { return x.line < y.line; });
  const std::vector<int64_t> ra = rank_by(c.records, &ComparedRecord::score_a);
  const std::vector<int64_t> rb = rank_by(c.records, &ComparedRecord::score_b);
  std::vector<double> sa, sb;
  for (size_t i = 0; i < c.records.size(); ++i) {
    c.records[i].rank_a = ra[i];
    c.records[i].rank_b = rb[i];
    sa.push_back(c.records[i].score_a);
    sb.push_back(c.records[i].score_b);
  }
  c.spearman = spearman(sa, sb);
  c.top = top_k > 0 ? std::min(top_k, c.both)
                    : std::min<int64_t>(c.both, static_cast<int64_t>(std::ceil(top_ratio * static_cast<double>(c.both) - 1e-9)));
  for (const auto& r : c.records) c.top_shared += r.rank_a <= c.top && r.rank_b <= c.top;
  c.top_overlap = c.top > 0 ? static_cast<double>(c.top_shared) / static_cast<double>(c.top) : std::nan("");
  const int64_t uni = 2 * c.top - c.top_shared;
  c.top_jaccard = uni > 0 ? static_cast<double>(c.top_shared) / static_cast<double>(uni) : std::nan("");
  std::vector<size_t> order(c.records.size());
  std::iota(order.begin(), order.end(), 0);
  auto shift = [&](size_t i) { return std::llabs(c.records[i].rank_a - c.records[i].rank_b); };
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return shift(x) > shift(y); });
  while (!order.empty() && shift(order.back()) == 0) order.pop_back();  // only records that moved
  order.resize(std::min<size_t>(order.size(), static_cast<size_t>(std::max<int64_t>(moved, 0))));
  c.moved = order;
  return c;
}

nlohmann::ordered_json comparison_json(const Comparison& c, const CompareJobOptions& opt) {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr); };
  nlohmann::ordered_json moved = nlohmann::ordered_json::array();
  for (size_t i : c.moved) {
    const ComparedRecord& r = c.records[i];
    moved.push_back({{"id", r.id}, {"line", r.line}, {"rank_a", r.rank_a}, {"rank_b", r.rank_b},
                     {"air_score_a", r.score_a}, {"air_score_b", r.score_b}});
  }
  return {{"a", opt.a}, {"b", opt.b}, {"both", c.both}, {"only_a", c.only_a}, {"only_b", c.only_b},
          {"spearman", num(c.spearman)}, {"top", c.top}, {"top_shared", c.top_shared},
          {"top_overlap", num(c.top_overlap)}, {"top_jaccard", num(c.top_jaccard)}, {"moved", moved}};
}

Comparison run_compare_job(const CompareJobOptions& opt, JobEvents& events) {
  if (opt.a.empty() || opt.b.empty()) throw OptionError("scores", "give two score files to compare");
  if (opt.top_k < 0) throw OptionError("top_k", option_name("top_k") + " must be >= 0");
  if (opt.top_k == 0 && !(opt.top_ratio > 0 && opt.top_ratio <= 1))
    throw OptionError("top_ratio", option_name("top_ratio") + " must be in (0, 1]");
  if (opt.moved < 0) throw OptionError("moved", option_name("moved") + " must be >= 0");
  std::vector<NamedPath> inputs;
  for (const auto& p : opt.a) inputs.push_back({"scores file A", p});
  for (const auto& p : opt.b) inputs.push_back({"scores file B", p});
  for (size_t i = 0, n = inputs.size(); i < n; ++i)  // their run descriptions are kept safe too
    if (const std::string meta = score_meta_path(inputs[i].path); !meta.empty()) inputs.push_back({"run description of " + inputs[i].path, meta});
  for (const auto& in : inputs) check_input_file(in);
  check_outputs({{"output (" + option_name("out") + ")", opt.out}}, inputs);
  check_writable(opt.out);
  OutputLock lock = OutputLock::for_output(opt.out);
  const ScoreFiles a = read_score_files(opt.a, events);
  const ScoreFiles b = read_score_files(opt.b, events);
  const Comparison c = compare_scores(a, b, opt.top_k, opt.top_ratio, opt.moved);
  if (c.both == 0)
    throw DataError(a.name + " and " + b.name + " share no scored record: they score different corpora");
  if (c.only_a || c.only_b)
    events.warn(std::to_string(c.only_a) + " records are scored only in " + a.name + " and " + std::to_string(c.only_b) +
                " only in " + b.name + "; the comparison is over the " + std::to_string(c.both) + " in both");
  OutputFile out(opt.out, std::move(lock));
  out.stream() << dump_json(comparison_json(c, opt), 2) << "\n";
  out.commit();
  return c;
}

}  // namespace air
