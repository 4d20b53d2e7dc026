#include "air/score_output.h"

#include "air/error.h"
#include "air/line_reader.h"
#include "air/score_record.h"
#include "air/output.h"


#include <algorithm>
#include <filesystem>
#include <iostream>

namespace air {

namespace fs = std::filesystem;

std::string json_change(const std::string& what, const nlohmann::json& before, const nlohmann::json& now) {
  if (before == now) return "";
  auto show = [](const nlohmann::json& j) { return j.is_null() ? std::string("absent") : j.dump(); };
  return what + ": " + show(before) + ", now " + show(now);
}

ScoredLine ScoredLine::of(const ScoreRecord& rec) {
  ScoredLine s;
  s.line = rec.line;
  s.id = rec.id;
  s.hash = rec.line_hash;
  s.rejected = rec.rejected;
  s.error = !rec.rejected && !rec.scored();
  if (rec.scored()) {
    s.tokens = rec.influence.tokens;
    s.truncated = rec.truncated;
    s.single_step = rec.influence.steps.size() == 1;
  }
  return s;
}

std::vector<ScoredLine> read_score_lines(const std::string& path, std::uintmax_t* whole_bytes,
                                         const std::function<void(const std::string&)>& warn) {
  LineReader in(path);
  std::vector<ScoredLine> out;
  *whole_bytes = 0;
  std::string text, next;
  bool have = in.next_record(text);
  while (have) {
    const std::string at = path + ":" + std::to_string(in.line_number());
    const bool whole = in.had_newline();
    const std::uintmax_t end = static_cast<std::uintmax_t>(in.bytes_consumed());
    const bool more = in.next_record(next);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      if (!more) {  // the last line: a write cut short
        if (warn) warn(at + ": the last line is incomplete and is left out");
        break;
      }
      throw DataError(at + ": malformed JSON (" + e.what() + ")");
    }
    if (!whole) {
      if (warn) warn(at + ": the last line has no newline and is left out");
      break;
    }
    const ScoreRecord rec = score_record_from_json(j, at);
    if (rec.scored() && !j.contains("n_tokens"))  // resuming counts the tokens scored before
      throw DataError(at + ": a scored record without an integer \"n_tokens\"");
    ScoredLine s = ScoredLine::of(rec);
    if (!out.empty() && s.line <= out.back().line)
      throw DataError(at + ": corpus line " + std::to_string(s.line) + " comes after line " +
                      std::to_string(out.back().line) + "; records must be in corpus order");
    out.push_back(std::move(s));
    *whole_bytes = end;
    text.swap(next);
    have = more;
  }
  return out;
}

std::string run_difference(const nlohmann::json& before, const nlohmann::json& now,
                           const std::vector<std::string>& ignore) {
  auto at = [](const nlohmann::json& j, const char* a, const char* b) {
    return j.contains(a) && j[a].is_object() && j[a].contains(b) ? j[a][b] : nlohmann::json();
  };
  if (before.contains("template") || now.contains("template")) {  // what it writes; not where it came from
    auto text = [](const nlohmann::json& j) {
      nlohmann::json t = j.value("template", nlohmann::json());
      if (t.is_object()) t.erase("origin");
      return t;
    };
    const nlohmann::json a = text(before), b = text(now);
    if (a != b) {  // by name; the texts are long
      auto name = [](const nlohmann::json& t) {
        return t.is_object() && t.contains("name") ? t["name"].dump() : std::string("absent");
      };
      return option_name("template") + ": " + name(a) + ", now " + name(b) +
             (name(a) == name(b) ? " (the same name, another text)" : "");
    }
  }
  for (const auto& [part, key] : {std::pair{"model", "fingerprint"}, std::pair{"heads", "selected"}}) {
    const std::string d = json_change(std::string(part) + "." + key, at(before, part, key), at(now, part, key));
    if (!d.empty()) return d;
  }
  for (const auto* side : {&before, &now}) {
    if (!side->contains("options") || !(*side)["options"].is_object()) continue;
    for (const auto& [key, value] : (*side)["options"].items()) {
      if (key == "device" || key == "batch_tokens" || key == "window") continue;  // how, not what
      if (std::find(ignore.begin(), ignore.end(), key) != ignore.end()) continue;
      const std::string d = json_change(key == "eps" ? "options.eps" : option_name(key),
                                        at(before, "options", key.c_str()), at(now, "options", key.c_str()));
      if (!d.empty()) return d;
    }
  }
  return "";
}

ScoreWriter::ScoreWriter(const std::string& path, nlohmann::ordered_json run, std::string seed,
                         std::uintmax_t keep_bytes)
    : path_(path), run_(std::move(run)), seed_(std::move(seed)), keep_bytes_(keep_bytes) {
  direct_ = path_ != "-" && !path_.empty() && is_stream_output(path_);
}

void ScoreWriter::open() {
  if (direct_) {
    file_ = std::make_unique<std::ofstream>(path_, std::ios::binary);
    if (!*file_) throw IoError(path_ + ": cannot open for writing");
    return;
  }
  const std::string partial = partial_path(path_);
  std::error_code ec;
  // A fresh partial output starts as a new file: nothing left at that name (a link included) is
  // written through.
  if (keep_bytes_ == 0 || seed_ != partial) fs::remove(partial, ec);
  if (keep_bytes_ > 0) {
    if (seed_ != partial) fs::copy_file(seed_, partial, fs::copy_options::overwrite_existing, ec);
    if (!ec) fs::resize_file(partial, keep_bytes_, ec);
    if (ec) throw IoError(partial + ": cannot start it with the " + std::to_string(keep_bytes_) +
                          " bytes of whole lines of " + seed_ + ": " + ec.message());
  }
  file_ = std::make_unique<std::ofstream>(
      partial, std::ios::binary | (keep_bytes_ > 0 ? std::ios::app : std::ios::trunc));
  if (!*file_) throw IoError(path_ + ": cannot open " + partial + " for writing");
  write_sidecar();
}

void ScoreWriter::set_time(double earlier, nlohmann::json runs, std::function<nlohmann::json()> now) {
  earlier_seconds_ = earlier;
  runs_ = runs.is_array() ? std::move(runs) : nlohmann::json::array();
  now_ = std::move(now);
}

void ScoreWriter::write_sidecar() {
  nlohmann::ordered_json side = run_;
  if (now_) {
    const nlohmann::json run = now_();
    side["wall_seconds"] = earlier_seconds_ + run.value("wall_seconds", 0.0);
    nlohmann::json runs = runs_;
    runs.push_back(run);
    side["runs"] = runs;
  }
  // The sidecar is this run's own file: a link left at its name is replaced, not written through.
  std::error_code ec;
  if (fs::is_symlink(sidecar_path(path_), ec)) fs::remove(sidecar_path(path_), ec);
  OutputFile f(sidecar_path(path_));
  f.stream() << dump_json(side, 2) << "\n";
  f.commit();
}

ScoreWriter::~ScoreWriter() {
  if (!file_ || committed_ || direct_) return;
  file_->close();
  const std::string partial = partial_path(path_);
  std::error_code ec;
  const std::uintmax_t size = fs::file_size(partial, ec);
  if (!ec && size > 0) {
    if (on_kept) on_kept(partial);
    return;
  }
  fs::remove(partial, ec);
  fs::remove(sidecar_path(path_), ec);
}

std::ostream& ScoreWriter::stream() {
  if (path_.empty() || path_ == "-") return std::cout;
  if (!file_) open();
  return *file_;
}

void ScoreWriter::flush() {
  std::ostream& out = stream();
  out.flush();
  check_stream(out, !file_ ? std::string("stdout") : direct_ ? path_ : partial_path(path_));
  if (file_ && !direct_ && !committed_) write_sidecar();
}

void ScoreWriter::commit() {
  flush();
  if (!file_) return;  // stdout
  file_->close();
  const std::string partial = direct_ ? path_ : partial_path(path_);
  check_stream(*file_, partial);
  if (direct_) {
    committed_ = true;
    return;
  }
  std::error_code ec;
  fs::rename(partial, path_, ec);
  if (ec) throw IoError(path_ + ": cannot move " + partial + " into place: " + ec.message());
  committed_ = true;
  fs::remove(sidecar_path(path_), ec);
}

}  // namespace air
