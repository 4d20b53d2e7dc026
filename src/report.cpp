#include "air/report.h"

#include "air/compare_job.h"
#include "air/error.h"
#include "air/head_set.h"
#include "air/heads_file.h"
#include "air/line_reader.h"
#include "air/output.h"
#include "air/probe.h"
#include "air/score_files.h"
#include "air/score_output.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>

namespace air {
namespace {

std::string num(double v, int digits = 3) {
  if (!std::isfinite(v)) return "n/a";
  char b[64];
  std::snprintf(b, sizeof b, "%.*g", digits, v);
  return b;
}

std::string fixed(double v, int decimals) {
  if (!std::isfinite(v)) return "n/a";
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", decimals, v);
  return b;
}

std::string esc(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: o += c;
    }
  }
  return o;
}

// Text safe to show: invalid UTF-8 bytes, control characters and bidirectional overrides become U+FFFD.
std::string valid_utf8(const std::string& s) {
  std::string o;
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size();
    for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    // Control characters (but tab and newline) and bidirectional overrides would hide or
    // reorder text: shown as U+FFFD.
    const bool control = n == 1 && ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7F);
    const bool bidi = n == 3 && c == 0xE2 &&
                      ((static_cast<unsigned char>(s[i + 1]) == 0x80 && static_cast<unsigned char>(s[i + 2]) >= 0xAA &&
                        static_cast<unsigned char>(s[i + 2]) <= 0xAE) ||
                       (static_cast<unsigned char>(s[i + 1]) == 0x81 && static_cast<unsigned char>(s[i + 2]) >= 0xA6 &&
                        static_cast<unsigned char>(s[i + 2]) <= 0xA9));
    if (ok && !control && !bidi) {
      o.append(s, i, n);
      i += n;
    } else if (ok) {
      o += "\xEF\xBF\xBD";
      i += n;
    } else {
      o += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return o;
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return std::nan("");
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

// Ticks at 1, 2 or 5 times a power of ten over [lo, hi].
std::vector<double> ticks(double lo, double hi, int want = 5) {
  std::vector<double> t;
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / want;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / p < 1.5 ? p : raw / p < 3 ? 2 * p : raw / p < 7 ? 5 * p : 10 * p;
  const double first = std::ceil(lo / step) * step;
  // A range narrower than a few ulps of its values (scores 1e20 and 1e20 + 16384) has no steps
  // that can be added: its ends are its ticks.
  if (!std::isfinite(step) || !std::isfinite(first) || first + step == first || hi - lo < 4 * step * 1e-9) return {lo, hi};
  const double n = std::floor((hi + step * 1e-9 - first) / step);
  for (int i = 0; i <= static_cast<int>(std::min(n, 4.0 * want)); ++i) {
    const double x = first + i * step;
    t.push_back(std::abs(x) < step * 1e-9 ? 0 : x);
  }
  return t;
}

// One SVG plot: data ranges mapped into a frame with axes, ticks and labels.
struct Plot {
  double w = 520, h = 300, ml = 58, mr = 14, mt = 28, mb = 44;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  std::string title, xlabel, ylabel;
  std::ostringstream body;

  double px(double x) const { return ml + (std::clamp(x, x0, x1) - x0) / (x1 - x0) * (w - ml - mr); }
  double py(double y) const { return h - mb - (std::clamp(y, y0, y1) - y0) / (y1 - y0) * (h - mt - mb); }
  void fix_ranges() {
    widen(x0, x1);
    widen(y0, y1);
  }
  // An empty range made one that maps: one unit, or more where a unit is below the values' ulp.
  static void widen(double& lo, double& hi) {
    if (!std::isfinite(lo)) lo = 0;
    if (!std::isfinite(hi)) hi = lo;
    if (hi > lo) return;
    hi = lo + std::max(1.0, std::abs(lo) * 1e-9);
  }
  std::string svg() const {
    std::ostringstream o;
    o << "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w << "\" height=\"" << h
      << "\" viewBox=\"0 0 " << w << " " << h << "\" role=\"img\" aria-label=\"" << esc(title) << "\">";
    o << "<text x=\"" << ml << "\" y=\"16\" class=\"pt\">" << esc(title) << "</text>";
    o << "<rect x=\"" << ml << "\" y=\"" << mt << "\" width=\"" << w - ml - mr << "\" height=\"" << h - mt - mb
      << "\" class=\"frame\"/>";
    for (double t : ticks(x0, x1))
      o << "<line x1=\"" << px(t) << "\" x2=\"" << px(t) << "\" y1=\"" << h - mb << "\" y2=\"" << h - mb + 4
        << "\" class=\"ax\"/><text x=\"" << px(t) << "\" y=\"" << h - mb + 16 << "\" class=\"tx\">" << num(t, 3) << "</text>";
    for (double t : ticks(y0, y1))
      o << "<line x1=\"" << ml - 4 << "\" x2=\"" << ml << "\" y1=\"" << py(t) << "\" y2=\"" << py(t)
        << "\" class=\"ax\"/><text x=\"" << ml - 6 << "\" y=\"" << py(t) + 4 << "\" class=\"ty\">" << num(t, 3) << "</text>";
    o << "<text x=\"" << (ml + w - mr) / 2 << "\" y=\"" << h - 8 << "\" class=\"tx\">" << esc(xlabel) << "</text>";
    o << "<text transform=\"translate(14," << (mt + h - mb) / 2 << ") rotate(-90)\" class=\"tx\">" << esc(ylabel)
      << "</text>";
    o << body.str() << "</svg>";
    return o.str();
  }
};

// A density grid drawn into p: cells[y * nx + x] records in each cell, shaded by log count.
void draw_cells(Plot& p, const std::vector<int64_t>& cells, int nx, int ny) {
  const double top = std::log1p(static_cast<double>(*std::max_element(cells.begin(), cells.end())));
  const double cw = (p.w - p.ml - p.mr) / nx, ch = (p.h - p.mt - p.mb) / ny;
  for (int cy = 0; cy < ny; ++cy)
    for (int cx = 0; cx < nx; ++cx) {
      const int64_t c = cells[cy * nx + cx];
      if (c == 0) continue;
      p.body << "<rect x=\"" << fixed(p.ml + cx * cw, 1) << "\" y=\"" << fixed(p.h - p.mb - (cy + 1) * ch, 1) << "\" width=\""
             << fixed(cw + 0.3, 1) << "\" height=\"" << fixed(ch + 0.3, 1) << "\" class=\"cell\" fill-opacity=\""
             << fixed(0.12 + 0.88 * std::log1p(static_cast<double>(c)) / top, 2) << "\"><title>" << c
             << " records</title></rect>";
    }
}

// y against x: points when few, else a density grid (cells shaded by log count). The ranges
// leave out the outer 0.1% on each side (their points sit on the edge).
std::string scatter(const std::vector<double>& x, const std::vector<double>& y, const std::string& title,
                    const std::string& xlabel, const std::string& ylabel) {
  Plot p;
  p.title = title;
  p.xlabel = xlabel;
  p.ylabel = ylabel;
  p.x0 = quantile(x, 0.001);
  p.x1 = quantile(x, 0.999);
  p.y0 = quantile(y, 0.001);
  p.y1 = quantile(y, 0.999);
  p.fix_ranges();
  if (x.size() <= 2000) {
    for (size_t i = 0; i < x.size(); ++i)
      p.body << "<circle cx=\"" << fixed(p.px(x[i]), 1) << "\" cy=\"" << fixed(p.py(y[i]), 1) << "\" r=\"2.2\" class=\"pt-dot\"/>";
    return p.svg();
  }
  const int nx = 64, ny = 40;
  std::vector<int64_t> cells(nx * ny, 0);
  for (size_t i = 0; i < x.size(); ++i) {
    const int cx = std::clamp(static_cast<int>((std::clamp(x[i], p.x0, p.x1) - p.x0) / (p.x1 - p.x0) * nx), 0, nx - 1);
    const int cy = std::clamp(static_cast<int>((std::clamp(y[i], p.y0, p.y1) - p.y0) / (p.y1 - p.y0) * ny), 0, ny - 1);
    ++cells[cy * nx + cx];
  }
  draw_cells(p, cells, nx, ny);
  return p.svg();
}

std::string histogram(const std::vector<double>& v, double threshold, const std::string& threshold_label) {
  Plot p;
  p.w = 1060;
  p.title = "air_score: " + std::to_string(v.size()) + " records";
  p.xlabel = "air_score (outer 0.1% on each side in the end bins)";
  p.ylabel = "records";
  p.x0 = quantile(v, 0.001);
  p.x1 = quantile(v, 0.999);
  if (std::isfinite(threshold)) {
    p.x0 = std::min(p.x0, threshold);
    p.x1 = std::max(p.x1, threshold);
  }
  p.fix_ranges();
  const int bins = 80;
  std::vector<int64_t> n(bins, 0);
  for (double x : v) ++n[std::clamp(static_cast<int>((std::clamp(x, p.x0, p.x1) - p.x0) / (p.x1 - p.x0) * bins), 0, bins - 1)];
  p.y0 = 0;
  p.y1 = static_cast<double>(*std::max_element(n.begin(), n.end())) * 1.05;
  p.fix_ranges();
  const double bw = (p.x1 - p.x0) / bins;
  for (int b = 0; b < bins; ++b) {
    if (n[b] == 0) continue;
    const double xa = p.px(p.x0 + b * bw), xb = p.px(p.x0 + (b + 1) * bw);
    p.body << "<rect x=\"" << fixed(xa, 1) << "\" y=\"" << fixed(p.py(static_cast<double>(n[b])), 1) << "\" width=\""
           << fixed(std::max(xb - xa - 0.5, 0.5), 1) << "\" height=\""
           << fixed(p.py(0) - p.py(static_cast<double>(n[b])), 1) << "\" class=\"bar\"><title>" << n[b] << " records in ["
           << num(p.x0 + b * bw, 4) << ", " << num(p.x0 + (b + 1) * bw, 4) << ")</title></rect>";
  }
  if (std::isfinite(threshold)) {
    const double x = p.px(threshold);
    p.body << "<line x1=\"" << fixed(x, 1) << "\" x2=\"" << fixed(x, 1) << "\" y1=\"" << p.mt << "\" y2=\"" << p.h - p.mb
           << "\" class=\"thr\"/><text x=\"" << fixed(x + 4, 1) << "\" y=\"" << p.mt + 12 << "\" class=\"thr-t\">"
           << esc(threshold_label) << "</text>";
  }
  return p.svg();
}

// Step shading: red for steps that lean on the copy heads, blue for steps that do better without
// them, white at 0; `scale` is the step score shown at full colour.
std::string shade(double s, double scale) {
  const double t = std::clamp(s / scale, -1.0, 1.0);
  const double a = 0.6 * std::abs(t);
  return t >= 0 ? "rgba(214,39,40," + fixed(a, 3) + ")" : "rgba(31,119,180," + fixed(a, 3) + ")";
}

std::string legend(double scale) {
  std::ostringstream o;
  o << "<svg class=\"plot legend\" xmlns=\"http://www.w3.org/2000/svg\" width=\"360\" height=\"44\">"
    << "<defs><linearGradient id=\"lg\"><stop offset=\"0\" stop-color=\"rgb(31,119,180)\" stop-opacity=\"0.6\"/>"
    << "<stop offset=\"0.5\" stop-color=\"#fff\"/><stop offset=\"1\" stop-color=\"rgb(214,39,40)\" stop-opacity=\"0.6\"/>"
    << "</linearGradient></defs><rect x=\"20\" y=\"4\" width=\"320\" height=\"16\" fill=\"url(#lg)\" stroke=\"#999\"/>"
    << "<text x=\"20\" y=\"36\" class=\"tx\">" << num(-scale, 3) << "</text><text x=\"180\" y=\"36\" class=\"tx\">0</text>"
    << "<text x=\"340\" y=\"36\" class=\"tx\">" << num(scale, 3) << "</text></svg>";
  return o.str();
}

struct Run {
  std::vector<std::string> files;
  std::vector<std::pair<std::string, nlohmann::json>> metas;
  ScoreFiles scores;
  std::string label;
};

// The score files grouped into runs: files whose metas agree but for the shard are one run.
std::vector<Run> group_runs(const std::vector<std::string>& files, JobEvents& events) {
  std::vector<Run> runs;
  for (const auto& f : files) {
    const std::string mp = score_meta_path(f);
    nlohmann::json meta;
    if (!mp.empty()) {
      std::ifstream in(mp);
      meta = nlohmann::json::parse(in, nullptr, false);
      if (!meta.is_object()) throw DataError(mp + ": not JSON");
    } else {
      events.warn(f + ": no meta beside it; it is shown as a run of its own");
    }
    bool joined = false;
    for (auto& r : runs) {
      if (mp.empty() || r.metas.empty()) continue;
      if (run_difference(r.metas[0].second, meta, {"shard", "emit_token_scores"}).empty()) {
        r.files.push_back(f);
        r.metas.emplace_back(mp, meta);
        joined = true;
        break;
      }
    }
    if (joined) continue;
    Run r;
    r.files = {f};
    if (!mp.empty()) r.metas.emplace_back(mp, meta);
    runs.push_back(std::move(r));
  }
  for (size_t i = 0; i < runs.size(); ++i) {
    runs[i].scores = read_score_files(runs[i].files, events);
    runs[i].label = std::string(1, static_cast<char>('A' + std::min<size_t>(i, 25))) + ": " + runs[i].scores.name;
  }
  return runs;
}

std::string kv_row(const std::string& k, const std::string& v) {
  return "<tr><th>" + esc(k) + "</th><td>" + esc(v) + "</td></tr>";
}

// "" when the score files hold the records their metas count, else what is wrong.
std::string completeness(const Run& r) {
  if (r.metas.empty()) return "";
  int64_t counted = 0;
  for (const auto& [path, meta] : r.metas)
    counted += meta.value("counts", nlohmann::json::object()).value("records", int64_t{0});
  const auto held = static_cast<int64_t>(r.scores.entries.size());
  if (held == counted) return "";
  return r.scores.name + " holds " + std::to_string(held) + " score records, but its meta counts " + std::to_string(counted) +
         ": the file is incomplete (a run cut short, or cut since) or not the one the meta describes";
}

std::string run_table(const Run& r) {
  std::ostringstream o;
  o << "<table class=\"kv\">" << kv_row("score files", r.scores.name);
  if (const std::string c = completeness(r); !c.empty()) o << "<tr><th>warning</th><td class=\"warn\">" << esc(c) << "</td></tr>";
  if (r.metas.empty()) return o.str() + kv_row("meta", "none beside the score files") + "</table>";
  const nlohmann::json& m = r.metas[0].second;
  auto s = [](const nlohmann::json& j, const char* k) {
    return j.is_object() && j.contains(k) ? (j[k].is_string() ? j[k].get<std::string>() : j[k].dump()) : std::string("-");
  };
  if (m.contains("model")) {
    o << kv_row("model", s(m["model"], "path") + " (" + s(m["model"], "architecture") + ")");
    o << kv_row("fingerprint", s(m["model"], "fingerprint"));
  }
  if (m.contains("heads")) o << kv_row("heads", s(m["heads"], "selected") + " from " + s(m["heads"], "file"));
  if (m.contains("options") && m["options"].is_object()) {
    std::string opts;
    for (const auto& [k, v] : m["options"].items())
      opts += (opts.empty() ? "" : ", ") + k + " " + (v.is_string() ? v.get<std::string>() : v.dump());
    o << kv_row("options", opts);
  }
  int64_t records = 0, scored = 0, errors = 0, skipped = 0, truncated = 0, tokens = 0;
  double wall = 0, wall_max = 0;
  for (const auto& [path, meta] : r.metas) {
    const nlohmann::json c = meta.value("counts", nlohmann::json::object());
    records += c.value("records", int64_t{0});
    scored += c.value("scored", int64_t{0});
    errors += c.value("errors", int64_t{0});
    skipped += c.value("skipped", int64_t{0});
    truncated += c.value("truncated", int64_t{0});
    tokens += c.value("response_tokens", int64_t{0});
    const double w = meta.value("wall_seconds", 0.0);
    wall += w;
    wall_max = std::max(wall_max, w);
  }
  o << kv_row("counts", std::to_string(records) + " records: " + std::to_string(scored) + " scored, " +
                            std::to_string(errors) + " errors, " + std::to_string(skipped) + " rejected, " +
                            std::to_string(truncated) + " truncated");
  o << kv_row("time", fixed(wall, 1) + " s of wall time" +
                          (r.metas.size() > 1 ? " over " + std::to_string(r.metas.size()) + " shards (longest " + fixed(wall_max, 1) + " s)" : "") +
                          "; " + (wall > 0 ? num(static_cast<double>(tokens) / wall, 4) : std::string("n/a")) +
                          " response tokens/s per process");
  return o.str() + "</table>";
}

struct Shown {
  const ScoreEntry* e = nullptr;
  int64_t rank = 0;
  std::string prompt, response;  // empty when the corpus was not given or the line not found
  bool found = false;
};

// The text of the shown records, read from the corpus in one pass (only their lines are parsed).
void read_shown_text(const std::string& data, const std::vector<std::pair<std::string, nlohmann::json>>& metas,
                     std::vector<Shown>& shown, JobEvents& events) {
  const ScoringSettings scoring = scoring_settings(metas, RecordFields{}, events);
  std::unordered_map<std::string, std::vector<size_t>> want;
  for (size_t i = 0; i < shown.size(); ++i)
    want[shown[i].e->hash.empty() ? "#" + std::to_string(shown[i].e->line) : shown[i].e->hash].push_back(i);
  LineReader in(data);
  std::string line;
  bool too_long = false;
  while (in.next_record(line, &too_long)) {
    if (too_long) continue;
    const std::string h = line_hash(line);
    auto it = want.find(h);
    if (it == want.end()) it = want.find("#" + std::to_string(in.line_number()));
    if (it == want.end()) continue;
    const CorpusLine cl{in.line_number(), record_id(line, in.line_number(), scoring.corpus.id_field), line, h};
    for (size_t i : it->second) {
      Shown& s = shown[i];
      if (s.found || (s.e->hash.empty() && s.e->id != cl.id)) continue;
      try {
        const Record rec = parse_record(cl.raw, cl.line, scoring.corpus);
        for (size_t m = 0; m + 1 < rec.messages.size(); ++m)
          s.prompt += (s.prompt.empty() ? "" : "\n\n") + rec.messages[m].role + ": " + rec.messages[m].content;
        s.response = scored_response(scoring, cl);
        s.found = true;
      } catch (const Error&) {
      }
    }
  }
  int64_t missing = 0;
  for (const auto& s : shown) missing += !s.found;
  if (missing == static_cast<int64_t>(shown.size()))
    throw DataError(data + " holds none of the " + std::to_string(shown.size()) +
                    " records shown (matched by the bytes of their lines): it is not the scored corpus, or it changed since");
  if (missing) events.warn(std::to_string(missing) + " shown records were not found in " + data + " (their text is left out)");
}

std::string sample_card(const Shown& s, double scale) {
  std::ostringstream o;
  const ScoreEntry& e = *s.e;
  o << "<div class=\"card\"><div class=\"head\"><b>#" << s.rank << "</b> " << esc(valid_utf8(e.id)) << " <span class=\"mut\">line "
    << e.line << " &middot; " << e.tokens << " response tokens &middot; " << e.steps.size()
    << " steps</span> <span class=\"score\">air_score " << fixed(e.score, 4) << "</span></div>";
  if (!s.found) return o.str() + "<p class=\"mut\">(text not available: give the corpus with --data)</p></div>";
  o << "<details><summary>prompt (" << s.prompt.size() << " bytes)</summary><pre>" << esc(valid_utf8(s.prompt))
    << "</pre></details><pre class=\"resp\">";
  size_t at = 0;
  for (size_t k = 0; k < e.steps.size(); ++k) {
    const ScoredStep& st = e.steps[k];
    if (st.begin > s.response.size() || st.end > s.response.size() || st.begin < at) continue;
    if (st.begin > at) o << esc(valid_utf8(s.response.substr(at, st.begin - at)));
    o << "<span class=\"step\" style=\"background:" << shade(st.score, scale) << "\" title=\"step " << k + 1
      << ": score " << fixed(st.score, 4) << ", weight " << fixed(st.weight, 3) << ", " << st.tokens << " tokens\">"
      << esc(valid_utf8(s.response.substr(st.begin, st.end - st.begin))) << "</span>";
    at = st.end;
  }
  if (at < s.response.size()) o << esc(valid_utf8(s.response.substr(at)));
  o << "</pre></div>";
  return o.str();
}

std::string head_map(const HeadsFile& h) {
  int64_t layers = h.info.layers, heads = h.info.heads_per_layer;
  double top = 0;
  for (const auto& hs : h.result.ranked) {
    layers = std::max<int64_t>(layers, hs.head.layer + 1);
    heads = std::max<int64_t>(heads, hs.head.head + 1);
    top = std::max(top, hs.score);
  }
  for (const auto& s : h.selected.heads()) {
    layers = std::max<int64_t>(layers, s.layer + 1);
    heads = std::max<int64_t>(heads, s.head + 1);
  }
  const double cell = std::clamp(900.0 / static_cast<double>(std::max<int64_t>(heads, 1)), 6.0, 28.0);
  const double ml = 52, mt = 30;
  const double w = std::max(480.0, ml + cell * static_cast<double>(heads) + 20), hh = mt + cell * static_cast<double>(layers) + 30;
  std::ostringstream o;
  o << "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w << "\" height=\"" << hh
    << "\" role=\"img\" aria-label=\"head map\"><text x=\"" << ml << "\" y=\"16\" class=\"pt\">copy rate R_h per head ("
    << layers << " layers x " << heads << " heads; selected outlined)</text>";
  for (int64_t l = 0; l < layers; l += std::max<int64_t>(1, layers / 16))
    o << "<text x=\"" << ml - 6 << "\" y=\"" << mt + cell * (static_cast<double>(l) + 0.5) + 4 << "\" class=\"ty\">L" << l << "</text>";
  for (int64_t k = 0; k < heads; k += std::max<int64_t>(1, heads / 16))
    o << "<text x=\"" << ml + cell * (static_cast<double>(k) + 0.5) << "\" y=\"" << mt + cell * static_cast<double>(layers) + 14
      << "\" class=\"tx\">H" << k << "</text>";
  for (const auto& hs : h.result.ranked) {
    const double t = top > 0 ? std::clamp(hs.score / top, 0.0, 1.0) : 0;
    const bool sel = h.selected.contains(hs.head);
    o << "<rect x=\"" << fixed(ml + cell * static_cast<double>(hs.head.head), 1) << "\" y=\""
      << fixed(mt + cell * static_cast<double>(hs.head.layer), 1) << "\" width=\"" << fixed(cell - 1, 1) << "\" height=\""
      << fixed(cell - 1, 1) << "\" fill=\"rgb(" << static_cast<int>(255 - 200 * t) << "," << static_cast<int>(255 - 120 * t)
      << "," << static_cast<int>(255 - 40 * t) << ")\"" << (sel ? " stroke=\"#111\" stroke-width=\"2\"" : "")
      << "><title>layer " << hs.head.layer << " head " << hs.head.head << ": R_h " << fixed(hs.score, 4)
      << (sel ? " (selected)" : "") << "</title></rect>";
  }
  return o.str() + "</svg>";
}

std::string rank_rank(const Comparison& c, const std::string& a, const std::string& b) {
  Plot p;
  p.w = 420;
  p.h = 420;
  p.title = "rank in " + a.substr(0, 1) + " vs rank in " + b.substr(0, 1) + " (fraction, 0 = top)";
  p.xlabel = "rank in " + a.substr(0, 1);
  p.ylabel = "rank in " + b.substr(0, 1);
  const int n = 50;
  std::vector<int64_t> cells(n * n, 0);
  const double N = static_cast<double>(std::max<int64_t>(c.both, 1));
  for (const auto& r : c.records) {
    const int x = std::min(n - 1, static_cast<int>(static_cast<double>(r.rank_a - 1) / N * n));
    const int y = std::min(n - 1, static_cast<int>(static_cast<double>(r.rank_b - 1) / N * n));
    ++cells[y * n + x];
  }
  draw_cells(p, cells, n, n);
  return p.svg();
}

// The heads a run was scored with, as its meta records them (none without a meta).
std::optional<HeadSet> scored_heads(const std::vector<std::pair<std::string, nlohmann::json>>& metas) {
  if (metas.empty()) return std::nullopt;
  const nlohmann::json& m = metas[0].second;
  if (!m.contains("heads") || !m["heads"].is_object() || !m["heads"].contains("selected") || !m["heads"]["selected"].is_string())
    return std::nullopt;
  try {
    return HeadSet::parse(m["heads"]["selected"].get<std::string>());
  } catch (const Error&) {
    return std::nullopt;
  }
}

// The head map: the probe's score of every head (from the heads file) with the heads that scored
// outlined, those of the meta (the file may have been probed again since: then it says so); and
// the probe's verdict when that selection does not stand out from noise.
std::string heads_section(const std::string& heads_path, const std::vector<std::pair<std::string, nlohmann::json>>& metas,
                          JobEvents& events) {
  const std::optional<HeadSet> scored = scored_heads(metas);
  std::ostringstream o;
  HeadsFile h;
  if (!heads_path.empty()) {
    h = read_heads_file(heads_path);
  } else if (!scored) {
    return "<p class=\"mut\">No heads file (give --heads).</p>";
  }
  if (scored && !heads_path.empty() && scored->to_string() != h.selected.to_string()) {
    const std::string note = heads_path + " now selects " + h.selected.to_string() + ", but the scores were made with " +
                             scored->to_string() + " (probed again since?): the map outlines the heads that scored";
    events.warn("report: " + note);
    o << "<p class=\"warn\">" << esc(note) << ".</p>";
  }
  if (scored) h.selected = *scored;
  if (heads_path.empty())
    o << "<p class=\"mut\">The heads file the scores name is not found: the heads that scored, without the probe's ranking.</p>";
  else
    o << "<p class=\"mut\">" << esc(heads_path) << ": " << h.selected.heads().size() << " heads selected of "
      << h.result.ranked.size() << ".</p>";
  if (!h.result.ranked.empty()) {
    const Separation sep = separation(h.result, h.selected);
    if (!sep.distinct) {
      const std::string verdict = "the probe's verdict: this selection is indistinguishable from noise (the selected heads "
                                  "stand " + fixed(sep.z_mean_selected, 1) + " robust spreads above the median head, " +
                                  std::to_string(sep.items_counted) + " items counted), so these scores measure little";
      events.warn("report: " + verdict);
      o << "<p class=\"warn\">" << esc(verdict) << ".</p>";
    }
  }
  o << head_map(h);
  return o.str();
}

// The heads file a run's meta names, where it can be found ("" if none): as written, or beside
// the meta.
std::string heads_named_by(const std::string& meta_path) {
  namespace fs = std::filesystem;
  if (meta_path.empty()) return "";
  std::ifstream in(meta_path);
  const nlohmann::json m = nlohmann::json::parse(in, nullptr, false);
  if (!m.is_object() || !m.contains("heads") || !m["heads"].is_object() || !m["heads"].contains("file") ||
      !m["heads"]["file"].is_string() || m["heads"]["file"].get<std::string>().empty())
    return "";
  fs::path p = m["heads"]["file"].get<std::string>();
  if (p.is_relative() && !fs::exists(p)) p = fs::path(meta_path).parent_path() / p.filename();
  return fs::exists(p) ? p.string() : "";
}

const char* kStyle = R"(body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px auto;max-width:1120px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.mut{color:#777}table.kv{border-collapse:collapse;font-size:13px}table.kv th{text-align:left;padding:2px 12px 2px 0;color:#555;vertical-align:top;white-space:nowrap}
table.kv td{padding:2px 0;word-break:break-all}.grid{display:flex;flex-wrap:wrap;gap:8px}
svg.plot{background:#fff;border:1px solid #e4e4e4;border-radius:4px}svg .pt{font-size:13px;font-weight:600;fill:#333}
svg .tx{font-size:11px;fill:#555;text-anchor:middle}svg .ty{font-size:11px;fill:#555;text-anchor:end}
svg .frame{fill:none;stroke:#ccc}svg .ax{stroke:#999}svg .bar{fill:#4c78a8}svg .cell{fill:#4c78a8}svg .pt-dot{fill:#4c78a8;fill-opacity:.45}
svg .thr{stroke:#d62728;stroke-width:2;stroke-dasharray:5 3}svg .thr-t{font-size:11px;fill:#d62728}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 10px;margin:8px 0;background:#fcfcfc}.card .head{margin-bottom:4px}
.score{float:right;font-family:ui-monospace,monospace}pre{white-space:pre-wrap;word-break:break-word;margin:4px 0;font:12.5px/1.5 ui-monospace,"DejaVu Sans Mono",monospace}
pre.resp{max-height:420px;overflow:auto;background:#fff;border:1px solid #eee;padding:6px}.step{border-radius:2px}
details summary{cursor:pointer;color:#555}.cols{display:grid;grid-template-columns:1fr 1fr;gap:16px}.cols>div{min-width:0}
.warn{color:#b00}.stat{font-family:ui-monospace,monospace;background:#f3f3f3;padding:1px 5px;border-radius:3px})";

}  // namespace

ReportResult run_report_job(const ReportOptions& opt, JobEvents& events) {
  if (opt.scores.empty()) throw OptionError("scores", "no score file given (" + option_name("scores") + ")");
  if (opt.out.empty()) throw OptionError("out", "no output file given (" + option_name("out") + ")");
  if (opt.top_k < 0) throw OptionError("top_k", option_name("top_k") + " must be >= 0");
  if (opt.top_ratio < 0 || opt.top_ratio > 1) throw OptionError("top_ratio", option_name("top_ratio") + " must be in (0, 1]");
  if (opt.top_k > 0 && opt.top_ratio > 0)
    throw OptionError("top_k", "give at most one of " + option_name("top_k") + " and " + option_name("top_ratio"));
  if (opt.samples < 0 || opt.samples > 1000) throw OptionError("samples", option_name("samples") + " must be in [0, 1000]");
  std::vector<NamedPath> inputs;
  for (const auto& s : opt.scores) inputs.push_back({"scores file (" + option_name("scores") + ")", s});
  if (!opt.data.empty()) inputs.push_back({"corpus (" + option_name("data") + ")", opt.data});
  if (!opt.heads.empty()) inputs.push_back({"heads file (" + option_name("heads") + ")", opt.heads});
  for (const auto& in : inputs) check_input_file(in);
  // What is read besides: each score file's meta, and the heads file the first one names.
  const std::string heads_path = !opt.heads.empty() ? opt.heads : heads_named_by(score_meta_path(opt.scores[0]));
  for (const auto& s : opt.scores)
    if (const std::string meta = score_meta_path(s); !meta.empty()) inputs.push_back({"run description of " + s, meta});
  if (opt.heads.empty() && !heads_path.empty()) inputs.push_back({"heads file named by the scores' meta", heads_path});
  check_outputs({{"report (" + option_name("out") + ")", opt.out}}, inputs);
  check_writable(opt.out);
  OutputLock lock = OutputLock::for_output(opt.out);

  const std::vector<Run> runs = group_runs(opt.scores, events);
  for (const Run& r : runs)
    if (const std::string c = completeness(r); !c.empty()) events.warn(c);
  const Run& run = runs[0];
  ReportResult res;
  res.runs = static_cast<int64_t>(runs.size());
  res.records = static_cast<int64_t>(run.scores.entries.size());

  // The first run's scored records, ranked.
  std::vector<const ScoreEntry*> ranked;
  for (const auto& e : run.scores.entries)
    if (e.ok) ranked.push_back(&e);
  std::stable_sort(ranked.begin(), ranked.end(), [](const ScoreEntry* a, const ScoreEntry* b) {
    return a->score > b->score || (a->score == b->score && a->line < b->line);
  });
  res.scored = static_cast<int64_t>(ranked.size());
  if (ranked.empty()) throw DataError(run.scores.name + ": no record has a score, nothing to report");
  const int64_t n = res.scored;
  const int64_t k = opt.top_k > 0 ? std::min(opt.top_k, n)
                                  : std::max<int64_t>(1, std::min<int64_t>(n, static_cast<int64_t>(std::ceil((opt.top_ratio > 0 ? opt.top_ratio : 0.1) * n - 1e-9))));
  const double threshold = ranked[static_cast<size_t>(k - 1)]->score;
  const std::string sel_label = (opt.top_k > 0 ? "top " + std::to_string(k) : "top " + num(100.0 * (opt.top_ratio > 0 ? opt.top_ratio : 0.1), 3) + "%") +
                                " (" + std::to_string(k) + "): air_score >= " + num(threshold, 4);

  std::vector<double> score, length, loss, entropy;
  for (const ScoreEntry* e : ranked) {
    score.push_back(e->score);
    length.push_back(static_cast<double>(e->tokens));
    loss.push_back(e->loss_base);
    entropy.push_back(e->entropy);
  }
  std::ostringstream html;
  html << "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
          "content=\"width=device-width,initial-scale=1\"><title>air report: "
       << esc(run.scores.name) << "</title><style>" << kStyle << "</style></head><body>";
  html << "<h1>air report</h1><p class=\"mut\">Attention Influence Scores of " << esc(run.scores.name) << ": " << n
       << " scored records of " << res.records << "; selection marked: " << esc(sel_label) << ".</p>";

  html << "<h2>The run</h2>";
  for (const auto& r : runs) html << (runs.size() > 1 ? "<p><b>" + esc(r.label.substr(0, 1)) + "</b></p>" : "") << run_table(r);

  html << "<h2>Distribution</h2>" << histogram(score, threshold, sel_label);
  res.plots.push_back("histogram");

  const double s_len = spearman(score, length), s_loss = spearman(score, loss), s_ent = spearman(score, entropy);
  html << "<h2>Is AIR more than a length or loss filter?</h2><p>Spearman correlation of air_score with response length "
       << "<span class=\"stat\">" << fixed(s_len, 3) << "</span>, with the mean base loss <span class=\"stat\">"
       << fixed(s_loss, 3) << "</span>, with the mean base entropy <span class=\"stat\">" << fixed(s_ent, 3)
       << "</span>. Near &plusmn;1, the score ranks as that baseline would; near 0, it adds what the baseline does not "
          "see.</p><div class=\"grid\">";
  html << scatter(length, score, "vs response length (Spearman " + fixed(s_len, 3) + ")", "response tokens", "air_score");
  html << scatter(loss, score, "vs mean base loss (Spearman " + fixed(s_loss, 3) + ")", "mean base loss (nats)", "air_score");
  html << scatter(entropy, score, "vs mean base entropy (Spearman " + fixed(s_ent, 3) + ")", "mean base entropy (nats)", "air_score");
  html << "</div>";
  res.plots.insert(res.plots.end(), {"scatter length", "scatter loss", "scatter entropy"});

  // Top and bottom records.
  const size_t show = static_cast<size_t>(std::min<int64_t>(opt.samples, n));
  std::vector<Shown> shown;
  for (size_t i = 0; i < show; ++i) shown.push_back({ranked[i], static_cast<int64_t>(i + 1), "", "", false});
  for (size_t i = std::max(show, ranked.size() - std::min(show, ranked.size() - show)); i < ranked.size(); ++i)
    shown.push_back({ranked[i], static_cast<int64_t>(i + 1), "", "", false});
  if (!opt.data.empty() && !shown.empty()) read_shown_text(opt.data, run.metas, shown, events);
  std::vector<double> step_scores;
  for (const auto& s : shown)
    for (const auto& st : s.e->steps) step_scores.push_back(std::abs(st.score));
  const double scale = step_scores.empty() ? 1 : std::max(1e-6, quantile(step_scores, 0.95));
  html << "<h2>Top and bottom records</h2><p>Each step is shaded by its step score (hover for score and weight): "
       << legend(scale) << "</p><div class=\"cols\"><div><h3>Top " << std::min(show, ranked.size()) << "</h3>";
  size_t i = 0;
  for (; i < shown.size() && i < show; ++i) html << sample_card(shown[i], scale);
  html << "</div><div><h3>Bottom " << shown.size() - i << "</h3>";
  for (size_t j = shown.size(); j > i; --j) html << sample_card(shown[j - 1], scale);
  html << "</div></div>";
  for (const auto& s : shown) res.shown += s.found;

  // The heads that scored (the meta's), on the probe's ranking of every head.
  html << "<h2>Heads</h2>" << heads_section(heads_path, run.metas, events);
  if (!heads_path.empty() || scored_heads(run.metas)) res.plots.push_back("head map");

  // Other runs against the first.
  if (runs.size() > 1) {
    html << "<h2>Runs compared</h2><div class=\"grid\">";
    for (size_t r = 1; r < runs.size(); ++r) {
      const Comparison c = compare_scores(run.scores, runs[r].scores, k, 0, 0);
      html << "<div><p><b>" << esc(run.label) << "</b><br><b>" << esc(runs[r].label) << "</b><br>" << c.both
           << " records in both; Spearman <span class=\"stat\">" << fixed(c.spearman, 4) << "</span>; top " << c.top
           << ": " << c.top_shared << " shared, Jaccard <span class=\"stat\">" << fixed(c.top_jaccard, 3) << "</span></p>"
           << rank_rank(c, run.label, runs[r].label) << "</div>";
      res.plots.push_back("rank-rank " + runs[r].label);
    }
    html << "</div>";
  }
  html << "<p class=\"mut\">Written by air " << AIR_VERSION << ".</p></body></html>\n";
  const std::string text = html.str();
  OutputFile out(opt.out, std::move(lock));
  out.stream() << text;
  out.commit();
  res.bytes = static_cast<int64_t>(text.size());
  return res;
}

}  // namespace air
