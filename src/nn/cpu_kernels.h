#pragma once

// Fused CPU kernels for the bfloat16 forward pass. Each one does in a single pass over its
// rows what HF's eager code does in several ATen ops with float32 intermediates, with the same
// order of roundings: statistics in float32, one rounding to bfloat16 where HF rounds. Internal
// to the library; the model uses them on a CPU in bf16 and ATen's ops everywhere else.

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace air::nn {

// Tests: the portable loops instead of the AVX2 ones, in these kernels and in the loss head's
// row statistics (the default picks by the CPU).
void use_portable_kernels(bool on);
// Whether the AVX2 loops run: the CPU has AVX2 and FMA, and the portable ones are not asked for.
bool avx2_kernels();

// Attention probabilities in place. scores: bfloat16 [G, rep * c, e], contiguous, row
// (g, r * c + i) holding the raw q.k products of the query at position q0 + i over keys [0, e).
// Each row becomes softmax(bf16(scale * score)) over its visible keys (j <= q0 + i, and
// q0 + i - j < window when window > 0): HF eager's bf16 scaled scores, the softmax in float32,
// rounded to bfloat16 once; the keys it cannot see get 0 and are not read. A visible NaN or
// +inf, or no finite visible score, makes the row NaN (as ATen's softmax); a -inf score gets 0.
void causal_softmax_bf16_(at::Tensor& scores, int64_t c, int64_t q0, int64_t window, double scale);

// RMSNorm of bfloat16 rows x [..., D] (contiguous) with weight [D] (bfloat16 or float32):
// r = rsqrt(mean(x^2) + eps) in float32, then
//   weight_in_float: bf16(x * r * w'), w' = w (+ 1 with unit_offset), in float32;
//   otherwise (HF Llama): bf16(bf16(x * r) * w).
at::Tensor rms_norm_bf16(const at::Tensor& x, const at::Tensor& weight, double eps, bool weight_in_float,
                         bool unit_offset);

// The gated MLP's SiLU step in place on bfloat16 gate [..., I] with up of the same shape (both
// contiguous): gate = bf16(bf16(silu(gate)) * up), HF's act_fn(gate_proj(x)) * up_proj(x) with
// its two roundings, silu in float32.
void silu_mul_bf16_(at::Tensor& gate, const at::Tensor& up);

}  // namespace air::nn
