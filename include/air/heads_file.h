#pragma once

// heads.json: the probe's output and `air score --heads`'s input, readable by people.

#include "air/probe.h"

#include <nlohmann/json.hpp>

#include <string>

namespace air {

// What heads.json records beside the scores.
struct HeadsFileInfo {
  std::string model_path;
  std::string architecture;
  std::string fingerprint;   // Checkpoint::fingerprint()
  ProbeOptions probe;
  std::string probe_source;  // where the probe text came from
  HeadSelection selection;
  int64_t layers = 0, heads_per_layer = 0;
};

// A heads.json whole: the model, the probe's settings and items, the selection rule, every head
// ranked, and the selected heads. The one schema written by the probe and read by scoring.
struct HeadsFile {
  HeadsFileInfo info;
  ProbeResult result;  // every head, ranked (read back: as listed, with the items counted)
  HeadSet selected;
};

// The document, fields in the documented order (docs/OUTPUTS.md), `separation` computed.
nlohmann::ordered_json to_json(const HeadsFile& h);
// Reads one back. Only "selected" ([layer, head] pairs, not empty) is required; the model's
// fingerprint and path, when present, must be strings; other parts are read when well formed.
// Throws DataError starting with `where`.
HeadsFile heads_file_from_json(const nlohmann::json& j, const std::string& where);

// Writes heads.json (atomically: FILE.tmp renamed over FILE). Throws IoError.
void write_heads_file(const std::string& path, const HeadsFile& h);

// Reads heads.json. Throws DataError naming the file.
HeadsFile read_heads_file(const std::string& path);

}  // namespace air
