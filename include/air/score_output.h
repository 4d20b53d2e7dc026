#pragma once

// Where `air score` writes its records, so that a run cut short (a node's time limit, a kill, an
// error) loses nothing it had scored: records go to OUT.partial as they are scored, flushed after
// each window, beside OUT.partial.json (the run's model, heads and options); when the corpus is
// done, OUT.partial becomes OUT and the sidecar goes. `--resume` continues such a file.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace air {

struct ScoreRecord;

// One record of a score output, as much of it as resuming needs.
struct ScoredLine {
  static ScoredLine of(const ScoreRecord& rec);
  int64_t line = 0;
  std::string id;
  std::string hash;       // line_hash() of the corpus line (empty in files written before it was kept)
  bool error = false;     // an error line of a record that could not be scored
  bool rejected = false;  // a record rejected before scoring (counted with the rejects)
  int64_t tokens = 0;     // response tokens of a scored record
  bool truncated = false; // a scored record cut at --max-length
  bool single_step = false;  // a scored record whose response is one step
};

// The records of a score output file, in order. A last line that a cut-short write left
// without its newline, or unreadable, is left out (and `warn` told); *whole_bytes gets where the
// whole lines end. Any other malformed line, or line numbers out of order, throws DataError
// naming the line.
std::vector<ScoredLine> read_score_lines(const std::string& path, std::uintmax_t* whole_bytes,
                                         const std::function<void(const std::string&)>& warn = nullptr);

// "" when before == now, else "what: <before>, now <now>" (absent values named so), for
// messages that say how a setting differs from an earlier run's.
std::string json_change(const std::string& what, const nlohmann::json& before, const nlohmann::json& now);

// Whether two runs' sidecars (OUT.meta.json or OUT.partial.json) give the same scores: "" when
// they do, else what differs ("options.dtype: bf16, now fp32"). Compared: the model's
// fingerprint, the selected heads and the options, except the device and --batch-tokens, which
// change no score beyond float rounding.
// `ignore` names further options not compared (select ignores "shard").
std::string run_difference(const nlohmann::json& before, const nlohmann::json& now,
                           const std::vector<std::string>& ignore = {});

class ScoreWriter {
 public:
  // path "-" (or empty): stdout, nothing kept; a stream output (a FIFO, a device) is written in
  // place, nothing kept either. Otherwise OUT.partial, started with the first
  // keep_bytes bytes of `seed` (the whole lines of an earlier run being resumed: OUT.partial
  // itself or a complete OUT; keep_bytes 0 = a fresh file), beside OUT.partial.json holding
  // `run`. Files are touched only at the first write, so a run that fails before it leaves
  // what was there as it was.
  ScoreWriter(const std::string& path, nlohmann::ordered_json run, std::string seed,
              std::uintmax_t keep_bytes);
  // Not committed: a partial file that holds records stays for resuming (on_kept is told its
  // path); an empty one is removed.
  ~ScoreWriter();
  std::function<void(const std::string& partial)> on_kept;

  std::ostream& stream();
  // The time spent on this output: `earlier` seconds (and `runs`, each {wall_seconds, records})
  // of runs resumed, plus this one's as now() gives it ({wall_seconds, records}), written into
  // the sidecar at each flush, so that a run cut short still tells how long it ran.
  void set_time(double earlier, nlohmann::json runs, std::function<nlohmann::json()> now);
  // After each window: what was written reaches the file (and the sidecar its time).
  void flush();
  // The corpus is done: OUT.partial becomes OUT, the sidecar is removed.
  void commit();

  static std::string partial_path(const std::string& out) { return out + ".partial"; }
  static std::string sidecar_path(const std::string& out) { return out + ".partial.json"; }

 private:
  void open();

  std::string path_;
  nlohmann::ordered_json run_;
  std::string seed_;
  std::uintmax_t keep_bytes_;
  std::unique_ptr<std::ofstream> file_;
  bool direct_ = false;  // a stream output written in place
  bool committed_ = false;
  double earlier_seconds_ = 0;
  nlohmann::json runs_ = nlohmann::json::array();
  std::function<nlohmann::json()> now_;
  void write_sidecar();
};

}  // namespace air
