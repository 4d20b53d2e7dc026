#pragma once

// Next-token statistics of rows of float32 (or bfloat16) logits met in column chunks: log p(target) and the
// entropy of the softmax, accumulated chunk by chunk (online logsumexp), so that the logits of
// a row never need to exist all at once and each chunk is read while it is still in cache.

#include <cstdint>
#include <vector>

namespace air::nn {

class LogitRowStats {
 public:
  // targets: the target id of each row (kept by pointer; must outlive the object).
  LogitRowStats(int64_t rows, const int64_t* targets, bool entropy);

  // z: [rows, cols] float32 row-major, the logits of columns [col0, col0 + cols).
  void add(const float* z, int64_t col0, int64_t cols);
  // The same from bfloat16 logits (their bits), each widened to float32 exactly.
  void add_bf16(const uint16_t* z, int64_t col0, int64_t cols);

  // After every column was added once: logprob[r] = z[r, target] - logsumexp(z[r]) and, when
  // asked, entropy[r] of softmax(z[r]) in nats. A row holding NaN or +inf gives NaN.
  void finish(float* logprob, float* entropy) const;

 private:
  template <typename T>
  void add_rows(const T* z, int64_t col0, int64_t cols);

  int64_t rows_;
  const int64_t* targets_;
  bool entropy_;
  // Per row, relative to the running max m: s = sum exp(z - m), w = sum exp(z - m) (z - m).
  std::vector<double> m_, s_, w_, target_logit_;
  std::vector<char> bad_;
};

// How the loss head on a CPU cuts its work: rows in blocks (the matmul repacks the output
// weight once per block, so a block needs many rows) and the vocabulary in chunks whose
// [rows, cols] logits stay in cache. Tests shrink them, or select ATen's reductions (the GPU's
// path) instead.
struct LossHeadTuning {
  int64_t rows = 1024;
  int64_t cols = 4096;
  bool aten = false;
};
LossHeadTuning& loss_head_tuning();

}  // namespace air::nn
