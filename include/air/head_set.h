#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace air {

// One attention head, indexed by query head (AIR-METHOD.md §1), both 0-based.
struct Head {
  int64_t layer = 0;
  int64_t head = 0;
  bool operator==(const Head& o) const { return layer == o.layer && head == o.head; }
  bool operator<(const Head& o) const {
    return layer < o.layer || (layer == o.layer && head < o.head);
  }
};

// A set of heads, kept sorted by (layer, head) and free of duplicates.
class HeadSet {
 public:
  HeadSet() = default;
  explicit HeadSet(std::vector<Head> heads);

  // Parses "L:H,L:H,..." (spaces allowed; empty string = empty set). Throws UsageError.
  static HeadSet parse(const std::string& spec);

  // Throws UsageError naming the first head outside a model of `layers` x `heads`.
  void validate(int64_t layers, int64_t heads) const;

  bool empty() const { return heads_.empty(); }
  size_t size() const { return heads_.size(); }
  const std::vector<Head>& heads() const { return heads_; }
  bool contains(const Head& h) const;
  // Query heads of `layer` in the set, ascending.
  std::vector<int64_t> heads_in_layer(int64_t layer) const;
  // Lowest layer holding a head (-1 when empty).
  int64_t first_layer() const { return heads_.empty() ? -1 : heads_.front().layer; }
  // "L:H,L:H" (parse() reads it back).
  std::string to_string() const;

 private:
  std::vector<Head> heads_;
};

}  // namespace air
