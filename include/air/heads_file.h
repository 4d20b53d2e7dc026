#pragma once

// heads.json: the probe's output and `air score --heads`'s input, readable by people.

#include "air/probe.h"

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

// Writes heads.json (atomically: FILE.tmp renamed over FILE). Throws IoError.
void write_heads_file(const std::string& path, const HeadsFileInfo& info, const ProbeResult& result,
                      const HeadSet& selected);

// Reads the selected heads and the model fingerprint. Throws DataError naming the file.
struct HeadsFile {
  HeadSet selected;
  std::string fingerprint;
  std::string model_path;
};
HeadsFile read_heads_file(const std::string& path);

}  // namespace air
