#include "logit_stats.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "cpu_kernels.h"
#include "simd.h"

namespace air::nn {
namespace {

struct Chunk {
  float max;
  float s, w;  // sum exp(z - max), sum exp(z - max) (z - max)
  bool bad;    // NaN or +inf present
};

inline float value(float x) { return x; }
inline float value(uint16_t b) { return simd::bf16_to_float(b); }

// The portable version of one row's chunk: its max, then the sums relative to it.
template <typename T>
Chunk chunk_stats_scalar(const T* zp, int64_t n, bool want_w) {
  Chunk c{-std::numeric_limits<float>::infinity(), 0, 0, false};
  for (int64_t j = 0; j < n; ++j) {
    if (value(zp[j]) != value(zp[j])) c.bad = true;
    c.max = value(zp[j]) > c.max ? value(zp[j]) : c.max;
  }
  if (c.bad || c.max == std::numeric_limits<float>::infinity()) {
    c.bad = true;
    return c;
  }
  if (c.max == -std::numeric_limits<float>::infinity()) return c;  // every logit -inf: no mass
  for (int64_t j = 0; j < n; ++j) {
    const float x = value(zp[j]) - c.max;
    const float e = simd::exp_nonpositive(x);
    c.s += e;
    if (want_w) c.w += e * x;
  }
  return c;
}

#ifdef AIR_HAVE_AVX2_PATH
// One row's chunk on AVX2: 8 lanes, two accumulators each, the tail done by the scalar steps.
__attribute__((target("avx2,fma"))) inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
__attribute__((target("avx2,fma"))) inline __m256 load8(const uint16_t* p) { return simd::load8_bf16(p); }

template <typename T>
__attribute__((target("avx2,fma"))) Chunk chunk_stats_avx2(const T* z, int64_t n, bool want_w) {
  Chunk c{-std::numeric_limits<float>::infinity(), 0, 0, false};
  const int64_t n8 = n & ~int64_t{7};
  __m256 mx = _mm256_set1_ps(c.max);
  __m256 unordered = _mm256_setzero_ps();
  for (int64_t j = 0; j < n8; j += 8) {
    const __m256 v = load8(z + j);
    unordered = _mm256_or_ps(unordered, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    mx = _mm256_max_ps(mx, v);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, mx);
  for (float l : lanes) c.max = l > c.max ? l : c.max;
  if (_mm256_movemask_ps(unordered)) c.bad = true;
  for (int64_t j = n8; j < n; ++j) {
    if (value(z[j]) != value(z[j])) c.bad = true;
    c.max = value(z[j]) > c.max ? value(z[j]) : c.max;
  }
  if (c.bad || c.max == std::numeric_limits<float>::infinity()) {
    c.bad = true;
    return c;
  }
  if (c.max == -std::numeric_limits<float>::infinity()) return c;
  const __m256 m = _mm256_set1_ps(c.max);
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  __m256 w0 = _mm256_setzero_ps(), w1 = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= n8; j += 16) {
    const __m256 x0 = _mm256_sub_ps(load8(z + j), m);
    const __m256 x1 = _mm256_sub_ps(load8(z + j + 8), m);
    const __m256 e0 = simd::exp8_nonpositive(x0), e1 = simd::exp8_nonpositive(x1);
    s0 = _mm256_add_ps(s0, e0);
    s1 = _mm256_add_ps(s1, e1);
    if (want_w) {
      w0 = _mm256_fmadd_ps(e0, x0, w0);
      w1 = _mm256_fmadd_ps(e1, x1, w1);
    }
  }
  for (; j < n8; j += 8) {
    const __m256 x0 = _mm256_sub_ps(load8(z + j), m);
    const __m256 e0 = simd::exp8_nonpositive(x0);
    s0 = _mm256_add_ps(s0, e0);
    if (want_w) w0 = _mm256_fmadd_ps(e0, x0, w0);
  }
  c.s = simd::hsum(_mm256_add_ps(s0, s1));
  c.w = simd::hsum(_mm256_add_ps(w0, w1));
  for (; j < n; ++j) {
    const float x = value(z[j]) - c.max;
    const float e = simd::exp_nonpositive(x);
    c.s += e;
    if (want_w) c.w += e * x;
  }
  return c;
}
#endif

template <typename T>
Chunk chunk_stats(const T* z, int64_t n, bool want_w) {
#ifdef AIR_HAVE_AVX2_PATH
  if (avx2_kernels()) return chunk_stats_avx2(z, n, want_w);
#endif
  return chunk_stats_scalar(z, n, want_w);
}

}  // namespace

LossHeadTuning& loss_head_tuning() {
  static LossHeadTuning t;
  return t;
}

LogitRowStats::LogitRowStats(int64_t rows, const int64_t* targets, bool entropy)
    : rows_(rows),
      targets_(targets),
      entropy_(entropy),
      m_(rows, -std::numeric_limits<double>::infinity()),
      s_(rows, 0),
      w_(rows, 0),
      target_logit_(rows, std::numeric_limits<double>::quiet_NaN()),
      bad_(rows, 0) {}

void LogitRowStats::add(const float* z, int64_t col0, int64_t cols) { add_rows(z, col0, cols); }
void LogitRowStats::add_bf16(const uint16_t* z, int64_t col0, int64_t cols) { add_rows(z, col0, cols); }

template <typename T>
void LogitRowStats::add_rows(const T* z, int64_t col0, int64_t cols) {
  // Chunks of a row are summed in float over at most this many columns (kept in L1), and
  // merged in double.
  constexpr int64_t kSub = 4096;
  at::parallel_for(0, rows_, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* row = z + r * cols;
      const int64_t t = targets_[r] - col0;
      if (t >= 0 && t < cols) target_logit_[r] = value(row[t]);
      for (int64_t j = 0; j < cols; j += kSub) {
        const Chunk c = chunk_stats(row + j, std::min(kSub, cols - j), entropy_);
        if (c.bad) bad_[r] = 1;
        if (c.bad || c.max == -std::numeric_limits<float>::infinity()) continue;
        // Merge (m, s, w) with (cm, cs, cw) at the new max M: a term's exp gains exp(m - M)
        // and its (z - m) becomes (z - M) + (M - m).
        if (m_[r] == -std::numeric_limits<double>::infinity()) {  // the row's first mass
          m_[r] = c.max;
          s_[r] = c.s;
          w_[r] = c.w;
          continue;
        }
        const double M = std::max(m_[r], static_cast<double>(c.max));
        const double a = std::exp(m_[r] - M), b = std::exp(c.max - M);
        w_[r] = a * (w_[r] + (m_[r] - M) * s_[r]) + b * (c.w + (c.max - M) * c.s);
        s_[r] = a * s_[r] + b * c.s;
        m_[r] = M;
      }
    }
  });
}

void LogitRowStats::finish(float* logprob, float* entropy) const {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t r = 0; r < rows_; ++r) {
    if (bad_[r] || !(s_[r] > 0)) {
      logprob[r] = nan;
      if (entropy) entropy[r] = nan;
      continue;
    }
    // p = exp(z - m) / s: log p(target) = z_t - m - log s; H = log s - w / s.
    const double log_s = std::log(s_[r]);
    logprob[r] = static_cast<float>(target_logit_[r] - m_[r] - log_s);
    if (entropy) entropy[r] = static_cast<float>(log_s - w_[r] / s_[r]);
  }
}

}  // namespace air::nn
