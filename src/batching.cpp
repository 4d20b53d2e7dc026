#include "air/batching.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <numeric>

namespace air {

std::vector<std::vector<size_t>> plan_batches(const std::vector<int64_t>& lengths,
                                              int64_t batch_tokens) {
  std::vector<size_t> order(lengths.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return lengths[a] > lengths[b]; });
  std::vector<std::vector<size_t>> batches;
  int64_t longest = 0;
  for (size_t i : order) {
    const int64_t len = std::max<int64_t>(1, lengths[i]);
    if (!batches.empty()) {
      auto& cur = batches.back();
      const int64_t rows = static_cast<int64_t>(cur.size()) + 1;
      if (rows * std::max(longest, len) <= batch_tokens) {
        cur.push_back(i);
        longest = std::max(longest, len);
        continue;
      }
    }
    batches.push_back({i});
    longest = len;
  }
  return batches;
}

at::Tensor pad_right(const std::vector<std::vector<int64_t>>& seqs,
                     const std::vector<size_t>& rows, int64_t pad) {
  size_t T = 1;
  for (size_t r : rows) T = std::max(T, seqs[r].size());
  at::Tensor ids = at::full({static_cast<int64_t>(rows.size()), static_cast<int64_t>(T)}, pad,
                            at::TensorOptions().dtype(at::kLong));
  int64_t* p = ids.data_ptr<int64_t>();
  for (size_t b = 0; b < rows.size(); ++b)
    std::copy(seqs[rows[b]].begin(), seqs[rows[b]].end(), p + b * T);
  return ids;
}

}  // namespace air
