#include "cpu_kernels.h"

#include "air/error.h"
#include "simd.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace air::nn {
namespace {

std::atomic<bool> g_portable{false};

constexpr uint16_t kBf16Nan = 0x7fc0;

// One row of the softmax: p[lo..hi] become the probabilities of bf16(scale * p[lo..hi]) (HF
// eager's scaled scores are bf16), p[0..lo) and p(hi..e) become 0. A NaN or +inf score, or no
// finite one, makes the visible part NaN; a -inf score gets 0, as in ATen. Exponents below
// -87 give 0 (ATen: at most a float denormal). buf holds at least hi - lo + 1 floats.
constexpr float kExpFloor = -87.0f;

// One scaled score, HF eager's bf16(score * scale), as a float; and whether it is NaN or +inf.
inline float scaled_score(uint16_t s, float scale) {
  return simd::bf16_to_float(simd::float_to_bf16(simd::bf16_to_float(s) * scale));
}
inline bool nan_or_pos_inf(float x) { return std::isnan(x) || x == std::numeric_limits<float>::infinity(); }
// exp(d) for d <= 0, 0 below the floor.
inline float floored_exp(float d) { return d < kExpFloor ? 0.0f : simd::exp_nonpositive(d); }

void nan_row(uint16_t* p, int64_t e, int64_t lo, int64_t hi) {
  std::fill(p, p + e, uint16_t{0});
  std::fill(p + lo, p + hi + 1, kBf16Nan);
}

void softmax_row_scalar(uint16_t* p, int64_t e, int64_t lo, int64_t hi, float scale, float* buf) {
  const int64_t n = hi - lo + 1;
  float mx = -std::numeric_limits<float>::infinity();
  bool bad = false;
  for (int64_t j = 0; j < n; ++j) {
    const float x = scaled_score(p[lo + j], scale);
    bad |= nan_or_pos_inf(x);
    buf[j] = x;
    mx = x > mx ? x : mx;
  }
  if (bad || mx == -std::numeric_limits<float>::infinity()) return nan_row(p, e, lo, hi);
  float sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    buf[j] = floored_exp(buf[j] - mx);
    sum += buf[j];
  }
  const float inv = 1.0f / sum;
  std::fill(p, p + e, uint16_t{0});
  for (int64_t j = 0; j < n; ++j) p[lo + j] = simd::float_to_bf16(buf[j] * inv);
}

#ifdef AIR_HAVE_AVX2_PATH
// exp(x - m) of 8 floats at p, 0 below the floor (a -inf score included).
__attribute__((target("avx2,fma"))) inline __m256 exp8_floored(const float* p, __m256 m) {
  const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(p), m);
  return _mm256_andnot_ps(_mm256_cmp_ps(d, _mm256_set1_ps(kExpFloor), _CMP_LT_OQ), simd::exp8_nonpositive(d));
}

__attribute__((target("avx2,fma"))) void softmax_row_avx2(uint16_t* p, int64_t e, int64_t lo, int64_t hi,
                                                          float scale, float* buf) {
  const int64_t n = hi - lo + 1, n8 = n & ~int64_t{7};
  const uint16_t* src = p + lo;
  const __m256 vs = _mm256_set1_ps(scale), inf = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  __m256 mx = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 notfinite = _mm256_setzero_ps();
  for (int64_t j = 0; j < n8; j += 8) {
    const __m256 x = simd::round8_bf16(_mm256_mul_ps(simd::load8_bf16(src + j), vs));
    // NaN or +inf: not (x < +inf)
    notfinite = _mm256_or_ps(notfinite, _mm256_cmp_ps(x, inf, _CMP_NLT_UQ));
    _mm256_storeu_ps(buf + j, x);
    mx = _mm256_max_ps(mx, x);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, mx);
  float m = -std::numeric_limits<float>::infinity();
  for (float l : lanes) m = l > m ? l : m;
  bool bad = _mm256_movemask_ps(notfinite) != 0;
  for (int64_t j = n8; j < n; ++j) {
    const float x = scaled_score(src[j], scale);
    bad |= nan_or_pos_inf(x);
    buf[j] = x;
    m = x > m ? x : m;
  }
  if (bad || m == -std::numeric_limits<float>::infinity()) return nan_row(p, e, lo, hi);
  const __m256 vm = _mm256_set1_ps(m);
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= n8; j += 16) {
    const __m256 e0 = exp8_floored(buf + j, vm), e1 = exp8_floored(buf + j + 8, vm);
    _mm256_storeu_ps(buf + j, e0);
    _mm256_storeu_ps(buf + j + 8, e1);
    s0 = _mm256_add_ps(s0, e0);
    s1 = _mm256_add_ps(s1, e1);
  }
  for (; j < n8; j += 8) {
    const __m256 e0 = exp8_floored(buf + j, vm);
    _mm256_storeu_ps(buf + j, e0);
    s0 = _mm256_add_ps(s0, e0);
  }
  float sum = simd::hsum(_mm256_add_ps(s0, s1));
  for (; j < n; ++j) {
    buf[j] = floored_exp(buf[j] - m);
    sum += buf[j];
  }
  const float inv = 1.0f / sum;
  const __m256 vinv = _mm256_set1_ps(inv);
  std::fill(p, p + lo, uint16_t{0});
  uint16_t* dst = p + lo;
  for (j = 0; j < n8; j += 8) simd::store8_bf16(dst + j, _mm256_mul_ps(_mm256_loadu_ps(buf + j), vinv));
  for (; j < n; ++j) dst[j] = simd::float_to_bf16(buf[j] * inv);
  std::fill(p + hi + 1, p + e, uint16_t{0});
}
#endif

// One element of RMSNorm's output from x, the row's scale r and the weight w (see the header).
inline uint16_t rms_out(uint16_t x, float r, float w, bool in_float) {
  const float y = simd::bf16_to_float(x) * r;
  return in_float ? simd::float_to_bf16(y * w) : simd::float_to_bf16(simd::bf16_to_float(simd::float_to_bf16(y)) * w);
}

// One row of RMSNorm: out = norm(x) as documented in the header; w holds D floats (the
// weight, plus 1 for unit_offset when in float).
void rms_row_scalar(const uint16_t* x, uint16_t* out, const float* w, int64_t D, float eps, bool in_float) {
  float ss = 0;
  for (int64_t j = 0; j < D; ++j) {
    const float v = simd::bf16_to_float(x[j]);
    ss += v * v;
  }
  const float r = 1.0f / std::sqrt(ss / static_cast<float>(D) + eps);
  for (int64_t j = 0; j < D; ++j) out[j] = rms_out(x[j], r, w[j], in_float);
}

#ifdef AIR_HAVE_AVX2_PATH
__attribute__((target("avx2,fma"))) void rms_row_avx2(const uint16_t* x, uint16_t* out, const float* w, int64_t D,
                                                      float eps, bool in_float) {
  const int64_t D8 = D & ~int64_t{7};
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= D8; j += 16) {
    const __m256 v0 = simd::load8_bf16(x + j), v1 = simd::load8_bf16(x + j + 8);
    a0 = _mm256_fmadd_ps(v0, v0, a0);
    a1 = _mm256_fmadd_ps(v1, v1, a1);
  }
  for (; j < D8; j += 8) {
    const __m256 v0 = simd::load8_bf16(x + j);
    a0 = _mm256_fmadd_ps(v0, v0, a0);
  }
  float ss = simd::hsum(_mm256_add_ps(a0, a1));
  for (; j < D; ++j) {
    const float v = simd::bf16_to_float(x[j]);
    ss += v * v;
  }
  const float r = 1.0f / std::sqrt(ss / static_cast<float>(D) + eps);
  const __m256 vr = _mm256_set1_ps(r);
  for (j = 0; j < D8; j += 8) {
    __m256 y = _mm256_mul_ps(simd::load8_bf16(x + j), vr);
    if (!in_float) y = simd::round8_bf16(y);  // round to bfloat16 before the weight, as HF casts back first
    simd::store8_bf16(out + j, _mm256_mul_ps(y, _mm256_loadu_ps(w + j)));
  }
  for (; j < D; ++j) out[j] = rms_out(x[j], r, w[j], in_float);
}
#endif

// silu(g) = g * sigmoid(g), the exponential taken of -|g| only (no overflow); below -87 the
// sigmoid is 0 (ATen: g / inf = -0 from -88.7 on).
inline float silu(float g) {
  const float t = simd::exp_nonpositive(-std::fabs(g));
  const float inv = 1.0f / (1.0f + t);
  return g * (g >= 0 ? inv : (g < kExpFloor ? 0.0f : t * inv));
}

void silu_mul_scalar(uint16_t* g, const uint16_t* u, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float a = simd::bf16_to_float(simd::float_to_bf16(silu(simd::bf16_to_float(g[j]))));
    g[j] = simd::float_to_bf16(a * simd::bf16_to_float(u[j]));
  }
}

#ifdef AIR_HAVE_AVX2_PATH
__attribute__((target("avx2,fma"))) void silu_mul_avx2(uint16_t* g, const uint16_t* u, int64_t n) {
  const int64_t n8 = n & ~int64_t{7};
  const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  for (int64_t j = 0; j < n8; j += 8) {
    const __m256 x = simd::load8_bf16(g + j);
    const __m256 e = simd::exp8_nonpositive(_mm256_or_ps(x, sign));  // exp(-|x|)
    const __m256 inv = _mm256_div_ps(one, _mm256_add_ps(one, e));
    const __m256 nonneg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ);
    const __m256 below = _mm256_cmp_ps(x, _mm256_set1_ps(kExpFloor), _CMP_LT_OQ);
    const __m256 sig = _mm256_blendv_ps(_mm256_andnot_ps(below, _mm256_mul_ps(e, inv)), inv, nonneg);
    const __m256 act = simd::round8_bf16(_mm256_mul_ps(x, sig));  // act_fn's output, in bf16
    simd::store8_bf16(g + j, _mm256_mul_ps(act, simd::load8_bf16(u + j)));
  }
  silu_mul_scalar(g + n8, u + n8, n - n8);
}
#endif

}  // namespace

void use_portable_kernels(bool on) { g_portable.store(on); }

bool avx2_kernels() {
#ifdef AIR_HAVE_AVX2_PATH
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return avx2 && !g_portable.load(std::memory_order_relaxed);
#else
  return false;
#endif
}

void causal_softmax_bf16_(at::Tensor& scores, int64_t c, int64_t q0, int64_t window, double scale) {
  if (scores.scalar_type() != at::kBFloat16 || !scores.is_contiguous() || scores.dim() != 3 || !scores.device().is_cpu())
    throw UsageError("causal_softmax_bf16_: expected contiguous bfloat16 [G, rows, keys] scores on the CPU");
  const int64_t G = scores.size(0), R = scores.size(1), e = scores.size(2);
  if (c <= 0 || R % c != 0 || q0 < 0 || q0 + c > e)
    throw UsageError("causal_softmax_bf16_: " + std::to_string(R) + " rows, " + std::to_string(e) +
                     " keys do not fit query block [" + std::to_string(q0) + ", " + std::to_string(q0 + c) + ")");
  uint16_t* base = reinterpret_cast<uint16_t*>(scores.data_ptr<at::BFloat16>());
  [[maybe_unused]] const bool avx2 = avx2_kernels();
  const float s = static_cast<float>(scale);
  at::parallel_for(0, G * R, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(static_cast<size_t>(e));
    for (int64_t row = begin; row < end; ++row) {
      const int64_t i = (row % R) % c;
      const int64_t hi = q0 + i;
      const int64_t lo = window > 0 ? std::max<int64_t>(0, hi - window + 1) : 0;
      uint16_t* p = base + row * e;
#ifdef AIR_HAVE_AVX2_PATH
      if (avx2) {
        softmax_row_avx2(p, e, lo, hi, s, buf.data());
        continue;
      }
#endif
      softmax_row_scalar(p, e, lo, hi, s, buf.data());
    }
  });
}

void silu_mul_bf16_(at::Tensor& gate, const at::Tensor& up) {
  if (gate.scalar_type() != at::kBFloat16 || up.scalar_type() != at::kBFloat16 || !gate.is_contiguous() ||
      !up.is_contiguous() || !gate.device().is_cpu() || !up.device().is_cpu() || gate.sizes() != up.sizes())
    throw UsageError("silu_mul_bf16_: expected contiguous bfloat16 gate and up of one shape on the CPU");
  uint16_t* g = reinterpret_cast<uint16_t*>(gate.data_ptr<at::BFloat16>());
  const uint16_t* u = reinterpret_cast<const uint16_t*>(up.data_ptr<at::BFloat16>());
  [[maybe_unused]] const bool avx2 = avx2_kernels();
  // In groups of 8 elements, so that which element takes the vector or the scalar steps does not
  // depend on the number of threads.
  const int64_t n = gate.numel(), groups = (n + 7) / 8;
  at::parallel_for(0, groups, 1024, [&](int64_t begin, int64_t end) {
    const int64_t b = begin * 8, len = std::min(end * 8, n) - b;
#ifdef AIR_HAVE_AVX2_PATH
    if (avx2) return silu_mul_avx2(g + b, u + b, len);
#endif
    silu_mul_scalar(g + b, u + b, len);
  });
}

at::Tensor rms_norm_bf16(const at::Tensor& x, const at::Tensor& weight, double eps, bool weight_in_float,
                         bool unit_offset) {
  const int64_t D = x.size(-1);
  if (x.scalar_type() != at::kBFloat16 || !x.is_contiguous() || !x.device().is_cpu() || !weight.device().is_cpu() ||
      weight.numel() != D)
    throw UsageError("rms_norm_bf16: expected contiguous bfloat16 rows on the CPU and a weight of their width");
  at::Tensor wf = weight.to(at::kFloat).contiguous();
  const bool in_float = weight_in_float || unit_offset;
  if (unit_offset) wf = wf.add(1.0);
  at::Tensor out = at::empty(x.sizes(), x.options());
  const int64_t rows = D > 0 ? x.numel() / D : 0;
  const uint16_t* xp = reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>());
  uint16_t* op = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
  const float* w = wf.data_ptr<float>();
  [[maybe_unused]] const bool avx2 = avx2_kernels();
  const float ep = static_cast<float>(eps);
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, D)), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
#ifdef AIR_HAVE_AVX2_PATH
      if (avx2) {
        rms_row_avx2(xp + r * D, op + r * D, w, D, ep, in_float);
        continue;
      }
#endif
      rms_row_scalar(xp + r * D, op + r * D, w, D, ep, in_float);
    }
  });
  return out;
}

}  // namespace air::nn
