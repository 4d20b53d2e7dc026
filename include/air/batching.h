#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace air {

// Groups sequences into batches whose padded size (rows x longest) stays within
// `batch_tokens`; sequences are sorted by length (longest first) so that padding is small.
// A sequence longer than the budget gets a batch of its own. Returns indices into `lengths`.
std::vector<std::vector<size_t>> plan_batches(const std::vector<int64_t>& lengths,
                                              int64_t batch_tokens);

// Right-padded [B, T] int64 tensor of seqs[i] for i in `rows` (T = longest), with `pad`.
at::Tensor pad_right(const std::vector<std::vector<int64_t>>& seqs,
                     const std::vector<size_t>& rows, int64_t pad = 0);

}  // namespace air
