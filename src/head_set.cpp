#include "air/head_set.h"

#include "air/error.h"

#include <algorithm>
#include <cctype>

namespace air {
namespace {

int64_t parse_index(const std::string& s, const std::string& item) {
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); }))
    throw UsageError("head '" + item + "': expected LAYER:HEAD with non-negative integers");
  if (s.size() > 9) throw UsageError("head '" + item + "': index too large");
  return std::stoll(s);
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

}  // namespace

HeadSet::HeadSet(std::vector<Head> heads) : heads_(std::move(heads)) {
  std::sort(heads_.begin(), heads_.end());
  heads_.erase(std::unique(heads_.begin(), heads_.end()), heads_.end());
}

HeadSet HeadSet::parse(const std::string& spec) {
  std::vector<Head> heads;
  size_t start = 0;
  const std::string all = trim(spec);
  if (all.empty()) return HeadSet();
  while (start <= all.size()) {
    size_t comma = all.find(',', start);
    if (comma == std::string::npos) comma = all.size();
    const std::string item = trim(all.substr(start, comma - start));
    const size_t colon = item.find(':');
    if (colon == std::string::npos)
      throw UsageError("head '" + item + "': expected LAYER:HEAD, e.g. 3:1");
    heads.push_back({parse_index(trim(item.substr(0, colon)), item),
                     parse_index(trim(item.substr(colon + 1)), item)});
    start = comma + 1;
  }
  return HeadSet(std::move(heads));
}

void HeadSet::validate(int64_t layers, int64_t heads) const {
  for (const Head& h : heads_)
    if (h.layer >= layers || h.head >= heads)
      throw UsageError("head " + std::to_string(h.layer) + ":" + std::to_string(h.head) +
                       " is out of range: the model has " + std::to_string(layers) +
                       " layers x " + std::to_string(heads) + " query heads (0-based)");
}

bool HeadSet::contains(const Head& h) const {
  return std::binary_search(heads_.begin(), heads_.end(), h);
}

std::vector<int64_t> HeadSet::heads_in_layer(int64_t layer) const {
  std::vector<int64_t> out;
  for (const Head& h : heads_)
    if (h.layer == layer) out.push_back(h.head);
  return out;
}

std::string HeadSet::to_string() const {
  std::string s;
  for (const Head& h : heads_)
    s += (s.empty() ? "" : ",") + std::to_string(h.layer) + ":" + std::to_string(h.head);
  return s;
}

}  // namespace air
