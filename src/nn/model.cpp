#include "air/nn/model.h"

#include "air/error.h"
#include "cpu_kernels.h"
#include "logit_stats.h"

#include <ATen/ATen.h>
#include <torch/version.h>

#include <cmath>

namespace air::nn {
namespace {

// Bytes allowed for one block of attention scores [B, H, Tq, Tk] in float32.
constexpr int64_t kScoreBlockBytes = 128ll << 20;
// Bytes allowed for one block of MLP activations (gate, up, product) in float32 terms.
constexpr int64_t kMlpBlockBytes = 256ll << 20;
// The loss head on a GPU: rows in blocks of at most this many bytes of float32 [rows, vocab]
// logits, large enough for the matmul to fill the chip.
constexpr int64_t kLogitBlockBytesGpu = 1ll << 30;
// On a CPU: see LossHeadTuning.

at::Tensor param(const std::vector<int64_t>& shape) {
  // Placeholder storage: the loader replaces it with checkpoint data (set_data), so these
  // pages are never touched.
  return at::empty(shape, at::TensorOptions().dtype(at::kFloat));
}

// HF's x * cos + rotate_half(x) * sin with rotate_half(x) = [-x2, x1], without building
// rotate_half(x): the same products and sums, in place on x * cos.
// x: [N, heads, Dh]; cos/sin: [N, 1, Dh]
// With partial rotary (Phi-3), only the leading cos.size(-1) dims of each head rotate; the
// others pass through.
at::Tensor apply_rope(const at::Tensor& x, const Rope& r) {
  const int64_t rd = r.cos.size(-1);
  if (rd < x.size(-1))
    return at::cat({apply_rope(x.narrow(-1, 0, rd), r), x.narrow(-1, rd, x.size(-1) - rd)}, -1);
  const int64_t half = x.size(-1) / 2;
  at::Tensor out = x * r.cos;
  out.narrow(-1, 0, half).addcmul_(x.narrow(-1, half, half), r.sin.narrow(-1, 0, half), -1);
  out.narrow(-1, half, half).addcmul_(x.narrow(-1, 0, half), r.sin.narrow(-1, half, half), 1);
  return out;
}

// Visible keys for queries [q0, q0+nq) over keys [0, nk): causal, optionally windowed.
// [nq, nk] bool
at::Tensor visible_mask(int64_t q0, int64_t nq, int64_t nk, int64_t window,
                        const at::Device& dev) {
  auto opts = at::TensorOptions().dtype(at::kLong).device(dev);
  at::Tensor q = at::arange(q0, q0 + nq, opts).unsqueeze(1);  // [nq, 1]
  at::Tensor k = at::arange(0, nk, opts).unsqueeze(0);        // [1, nk]
  at::Tensor m = k <= q;
  if (window > 0) m = m & (q - k < window);
  return m;
}

// Queries per attention block: the caller's choice, or as many as keep the [B, H, Tq, T]
// float32 scores within kScoreBlockBytes.
int64_t query_block(const ForwardOptions& opt, int64_t B, int64_t H, int64_t T) {
  if (opt.query_chunk > 0) return opt.query_chunk;
  return std::max<int64_t>(16, kScoreBlockBytes / std::max<int64_t>(1, B * H * T * 4));
}

// Long (index) tensor of `i` on `dev`.
at::Tensor index_tensor(const std::vector<int64_t>& i, const at::Device& dev) {
  return at::tensor(i, at::TensorOptions().dtype(at::kLong)).to(dev);
}

// A layer's attention: which layer, its window, the scale on q k^T and the logit soft-cap.
struct AttendSpec {
  int64_t layer = 0;
  int64_t window = 0;   // 0 = all causal keys
  double scale = 1.0;
  double softcap = 0;   // 0 = none
};

// Attention with explicit probabilities, in query blocks so that no [B, H, T, T] tensor
// exists for long T. Matches HF eager: scores in the model dtype (soft-capped before the mask),
// softmax in float32.
// q: [B, H, T, Dh]; k, v: [B, Hkv, T, Dh] -> [B, H, T, Dh]
at::Tensor attend_explicit(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const AttendSpec& spec, const ForwardOptions& opt) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), Dh = q.size(3);
  const int64_t Hkv = k.size(1), rep = H / Hkv;
  const int64_t window = spec.window;
  const int64_t chunk = std::min(query_block(opt, B, H, T), T);

  at::Tensor out = at::empty_like(q);  // [B, H, T, Dh]
  const at::Tensor k3 = k.reshape({B * Hkv, T, Dh});
  const at::Tensor v3 = v.reshape({B * Hkv, T, Dh});
  // The probabilities stay internal and in bf16 on a CPU: one fused kernel replaces the mask,
  // the float32 round trip and ATen's softmax (statistics in float32, HF eager's roundings).
  const bool fused = !opt.observer && spec.softcap == 0 && q.device().is_cpu() && q.scalar_type() == at::kBFloat16;
  for (int64_t s = 0; s < T; s += chunk) {
    const int64_t c = std::min(chunk, T - s), e = s + c;
    // Query head h reads kv head h / rep (HF's repeat_kv), so grouping query heads under
    // their kv head lets one batched matmul serve the group without copying k or v.
    const at::Tensor qc = q.narrow(2, s, c).reshape({B * Hkv, rep * c, Dh});
    const at::Tensor kt = k3.narrow(1, 0, e).transpose(1, 2);
    if (fused) {  // bf16 on a CPU: scale, mask and softmax in one pass over the raw products
      at::Tensor probs = at::bmm(qc, kt);  // [B*Hkv, rep*c, e]
      causal_softmax_bf16_(probs, c, s, window, spec.scale);
      out.narrow(2, s, c).copy_(at::bmm(probs, v3.narrow(1, 0, e)).view({B, H, c, Dh}));
      continue;
    }
    // Additive mask, 0 where visible and -inf elsewhere, for the rows (rep, query): [rep*c, e].
    const at::Tensor bias =
        at::zeros({c, e}, q.options())
            .masked_fill_(visible_mask(s, c, e, window, q.device()).logical_not(),
                          -std::numeric_limits<float>::infinity())
            .repeat({rep, 1});
    at::Tensor scores;  // [B*Hkv, rep*c, e]
    if (spec.softcap > 0) {
      scores = at::bmm(qc, kt).mul_(spec.scale);
      softcap_(scores, spec.softcap).add_(bias);
    } else {
      scores = at::baddbmm(bias, qc, kt, 1.0, spec.scale);  // scale * q k^T + mask in one GEMM
    }
    const at::Tensor probs = scores.to(at::kFloat).softmax(-1).view({B, H, c, e});  // rows sum to 1
    if (opt.observer) opt.observer->observe(spec.layer, s, probs);
    const at::Tensor oc = at::bmm(probs.to(q.scalar_type()).view({B * Hkv, rep * c, e}),
                                  v3.narrow(1, 0, e));  // [B*Hkv, rep*c, Dh]
    out.narrow(2, s, c).copy_(oc.view({B, H, c, Dh}));
  }
  return out;
}

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define AIR_FUSED_ATTENTION 1  // at::scaled_dot_product_attention with its scale argument
#endif
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5)
#define AIR_FUSED_GQA 1  // ... and with enable_gqa: kv heads shared without copies
#endif

#ifdef AIR_FUSED_ATTENTION
// libtorch's fused attention (flash or memory-efficient kernels on a GPU, the flash kernel on a
// CPU): probabilities are never materialised. Causal layers run whole; windowed layers run in
// query blocks, each over the keys its queries can see, with a boolean mask.
at::Tensor attend_fused(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttendSpec& spec,
                        const ForwardOptions& opt) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), Dh = q.size(3), Hkv = k.size(1);
#ifdef AIR_FUSED_GQA
  const at::Tensor& kk = k;
  const at::Tensor& vv = v;
  const bool gqa = H != Hkv;
  auto sdpa = [&](const at::Tensor& qb, const at::Tensor& kb, const at::Tensor& vb, const std::optional<at::Tensor>& mask,
                  bool causal) { return at::scaled_dot_product_attention(qb, kb, vb, mask, 0.0, causal, spec.scale, gqa); };
#else
  auto expand = [&](const at::Tensor& t) {
    return H == Hkv ? t : t.unsqueeze(2).expand({B, Hkv, H / Hkv, T, Dh}).reshape({B, H, T, Dh});
  };
  const at::Tensor kk = expand(k), vv = expand(v);
  auto sdpa = [&](const at::Tensor& qb, const at::Tensor& kb, const at::Tensor& vb, const std::optional<at::Tensor>& mask,
                  bool causal) { return at::scaled_dot_product_attention(qb, kb, vb, mask, 0.0, causal, spec.scale); };
#endif
  (void)Dh;
  if (spec.window == 0 || spec.window >= T) return sdpa(q, kk, vv, std::nullopt, /*is_causal=*/true);
  const int64_t chunk = std::min(query_block(opt, B, H, T), T);
  at::Tensor out = at::empty_like(q);
  for (int64_t s = 0; s < T; s += chunk) {
    const int64_t c = std::min(chunk, T - s), e = s + c;
    const int64_t k0 = std::max<int64_t>(0, s - spec.window + 1);  // the first key any of these queries sees
    const at::Tensor mask = visible_mask(s, c, e, spec.window, q.device()).narrow(1, k0, e - k0);
    out.narrow(2, s, c).copy_(sdpa(q.narrow(2, s, c), kk.narrow(2, k0, e - k0), vv.narrow(2, k0, e - k0), mask, false));
  }
  return out;
}
#endif

// Attention of query heads [B, H, T, Dh] over kv heads [B, Hkv, T, Dh], query head h reading
// kv head h / (H / Hkv): libtorch's fused kernel (2.1 and later) when nothing observes the
// probabilities, the layer has no soft-cap and the caller did not ask for the explicit path;
// the explicit blocked path otherwise. bf16 on a CPU keeps air's own fused softmax kernel on the
// explicit path, which ran faster than libtorch 2.15's CPU flash attention (docs/PERFORMANCE.md).
at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttendSpec& spec,
                  const ForwardOptions& opt) {
#ifdef AIR_FUSED_ATTENTION
  const bool cpu_bf16 = q.device().is_cpu() && q.scalar_type() == at::kBFloat16;
  if (!opt.observer && !opt.explicit_attention && spec.softcap == 0 && !cpu_bf16) return attend_fused(q, k, v, spec, opt);
#endif
  return attend_explicit(q, k, v, spec, opt);
}

// Uniform attention over the visible keys, computed without scores: query t's output is the
// mean of the values at the n_t visible positions (j <= t, and t - j < window when windowed),
// from prefix sums in float64. v: [B, 1, T, Dh] -> [B, 1, T, Dh]
at::Tensor running_mean(const at::Tensor& v, int64_t window) {
  const int64_t T = v.size(2);
  at::Tensor sum = v.to(at::kDouble).cumsum(2);
  at::Tensor n = at::arange(1, T + 1, v.options().dtype(at::kDouble));
  if (window > 0 && window < T) {
    sum = at::cat({sum.narrow(2, 0, window), sum.narrow(2, window, T - window) - sum.narrow(2, 0, T - window)}, 2);
    n.clamp_max_(static_cast<double>(window));
  }
  return sum.div_(n.view({1, 1, T, 1})).to(v.scalar_type());
}

// Attention of a layer whose `uniform` query heads (ascending) are made uniform: the other heads
// attend as usual; each uniform head's output is the running mean of its kv group's visible
// values.
at::Tensor attend_partitioned(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const std::vector<int64_t>& uniform, int64_t num_kv_heads, const AttendSpec& spec,
                              const ForwardOptions& opt) {
  const int64_t B = q.size(0), num_heads = q.size(1), T = q.size(2);
  at::Tensor o = at::empty_like(q);
  const int64_t rep = num_heads / num_kv_heads;
  // Query blocks sized as for all heads, so the parts below use the blocks the whole would.
  ForwardOptions part = opt;
  part.query_chunk = query_block(opt, B, num_heads, T);
  // Query heads outside the set: kv groups left whole attend together, a group missing
  // some of its heads attends on its own.
  std::vector<bool> is_uniform(num_heads, false);
  for (int64_t h : uniform) is_uniform[h] = true;
  std::vector<int64_t> whole_q, whole_kv;
  for (int64_t g = 0; g < num_kv_heads; ++g) {
    std::vector<int64_t> kept;
    for (int64_t h = g * rep; h < (g + 1) * rep; ++h)
      if (!is_uniform[h]) kept.push_back(h);
    if (static_cast<int64_t>(kept.size()) == rep) {
      whole_q.insert(whole_q.end(), kept.begin(), kept.end());
      whole_kv.push_back(g);
    } else if (!kept.empty()) {
      const at::Tensor idx = index_tensor(kept, q.device());
      o.index_copy_(1, idx, attend(q.index_select(1, idx), k.narrow(1, g, 1), v.narrow(1, g, 1), spec, part));
    }
  }
  if (!whole_q.empty()) {
    const at::Tensor qi = index_tensor(whole_q, q.device()), kvi = index_tensor(whole_kv, q.device());
    o.index_copy_(1, qi, attend(q.index_select(1, qi), k.index_select(1, kvi), v.index_select(1, kvi), spec, part));
  }
  // Critical heads: one running mean per kv group they read.
  int64_t done_group = -1;
  at::Tensor mean;
  for (int64_t h : uniform) {  // ascending, so heads of one group are adjacent
    if (h / rep != done_group) {
      done_group = h / rep;
      mean = running_mean(v.narrow(1, done_group, 1), spec.window);
    }
    o.narrow(1, h, 1).copy_(mean);
  }
  return o;
}

// log p(target) of each row of hs [N, D] under the output weight w [V, D] into lp [N] (and the
// predictive entropy into ent), on the CPU.
void row_stats_blocked(const at::Tensor& hs, const at::Tensor& w, const at::Tensor& target_ids,
                       const LossHeadTuning& tune, bool entropy, double cap, at::Tensor& lp, at::Tensor& ent) {
  const int64_t N = hs.size(0);
  // Rows in blocks, the vocabulary in column chunks: each [rows, cols] chunk of logits is
  // reduced (online logsumexp and entropy) while it is still in cache, so the logits of a
  // block are never all written out, and the output weight is repacked once per block.
  const int64_t V = w.size(0);
  const int64_t rows_per_block = std::min<int64_t>(N, tune.rows);
  const int64_t cols_per_chunk = std::min<int64_t>(V, tune.cols);
  // bfloat16 logits go to the statistics as they are (each widens to float32 exactly), unless
  // a soft-cap must first be applied in float32.
  const bool bf16 = w.scalar_type() == at::kBFloat16 && hs.scalar_type() == at::kBFloat16 && cap == 0;
  at::Tensor buf;
  if (w.scalar_type() == at::kFloat || bf16)
    buf = at::empty({rows_per_block * cols_per_chunk}, at::TensorOptions().dtype(w.scalar_type()));
  const at::Tensor tgt = target_ids.contiguous();
  for (int64_t s = 0; s < N; s += rows_per_block) {
    const int64_t n = std::min(rows_per_block, N - s);
    const at::Tensor hb = hs.narrow(0, s, n);
    LogitRowStats st(n, tgt.data_ptr<int64_t>() + s, entropy);
    for (int64_t c0 = 0; c0 < V; c0 += cols_per_chunk) {
      const int64_t cols = std::min(cols_per_chunk, V - c0);
      at::Tensor z;
      if (buf.defined()) {
        z = buf.narrow(0, 0, n * cols).view({n, cols});
        at::mm_out(z, hb, w.narrow(0, c0, cols).t());
      } else {
        z = at::linear(hb, w.narrow(0, c0, cols)).to(at::kFloat).contiguous();
      }
      if (bf16) {
        st.add_bf16(reinterpret_cast<const uint16_t*>(z.data_ptr<at::BFloat16>()), c0, cols);
        continue;
      }
      softcap_(z, cap);
      st.add(z.data_ptr<float>(), c0, cols);
    }
    st.finish(lp.data_ptr<float>() + s, entropy ? ent.data_ptr<float>() + s : nullptr);
  }
}

// The same with whole-vocabulary logits of a block of rows at a time (GPUs, and the ATen path).
void row_stats_dense(const at::Tensor& hs, const at::Tensor& w, const at::Tensor& target_ids, bool entropy,
                     double cap, at::Tensor& lp, at::Tensor& ent) {
  const int64_t N = hs.size(0);
  const int64_t block =
      std::max<int64_t>(64, kLogitBlockBytesGpu / (4 * std::max<int64_t>(1, w.size(0))));
  for (int64_t s = 0; s < N; s += block) {
    const int64_t n = std::min(block, N - s);
    // [n, vocab] float32 logits of this block only; log p(target) = z_target - logsumexp(z),
    // so no [n, vocab] log-softmax is written.
    at::Tensor z = at::linear(hs.narrow(0, s, n), w).to(at::kFloat);
    softcap_(z, cap);
    const at::Tensor zt = z.gather(1, target_ids.narrow(0, s, n).unsqueeze(1)).squeeze(1);
    if (!entropy) {
      lp.narrow(0, s, n).copy_(zt - at::logsumexp(z, -1));
      continue;
    }
    // Entropy from one exponential pass: e = exp(z - max), H = lse - sum(e * z) / sum(e).
    const at::Tensor mx = std::get<0>(z.max(-1, /*keepdim=*/true));  // [n, 1]
    const at::Tensor e = (z - mx).exp_();                             // [n, vocab]
    const at::Tensor sum_e = e.sum(-1);                                // [n]
    const at::Tensor lse = mx.squeeze(1) + sum_e.log();
    const at::Tensor ez = at::bmm(e.unsqueeze(1), z.unsqueeze(2)).view({n});  // sum(e * z)
    lp.narrow(0, s, n).copy_(zt - lse);
    ent.narrow(0, s, n).copy_(lse - ez / sum_e);
  }
}

RMSNorm norm_of(const ModelConfig& c, int64_t dim) {
  return RMSNorm(dim, c.rms_norm_eps, c.norm_weight_in_float, c.norm_unit_offset);
}

at::Tensor activate_(at::Tensor x, Activation a) {
  switch (a) {
    case Activation::kSilu: return at::silu_(x);
    case Activation::kGeluTanh: return at::gelu(x, "tanh");
    case Activation::kGelu: return at::gelu(x);
  }
  return x;
}

// Each token's top-k experts from the router: softmax over all experts in float32 (whatever the
// model dtype: near-tied routes would flip in bf16), the k largest, renormalised to sum 1 when
// `renormalise`. x: [N, D], gate: [E, D] -> weights [N, k] float32, experts [N, k].
std::pair<at::Tensor, at::Tensor> top_routes(const at::Tensor& x, const at::Tensor& gate, int64_t k,
                                             bool renormalise) {
  const at::Tensor probs = at::linear(x.to(at::kFloat), gate.to(at::kFloat)).softmax(-1);
  auto [w, idx] = probs.topk(k, -1);
  if (renormalise) w = w / w.sum(-1, /*keepdim=*/true);
  return {w, idx};
}

}  // namespace

bool fused_attention_compiled() {
#ifdef AIR_FUSED_ATTENTION
  return true;
#else
  return false;
#endif
}

at::Tensor& softcap_(at::Tensor& z, double cap) {
  if (cap > 0) z.div_(cap).tanh_().mul_(cap);
  return z;
}

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias) {
  weight = register_parameter("weight", param({out, in}), /*requires_grad=*/false);
  if (with_bias) bias = register_parameter("bias", param({out}), false);
}

at::Tensor LinearImpl::forward(const at::Tensor& x) const { return at::linear(x, weight, bias); }

EmbeddingImpl::EmbeddingImpl(int64_t vocab, int64_t dim) {
  weight = register_parameter("weight", param({vocab, dim}), false);
}

at::Tensor EmbeddingImpl::forward(const at::Tensor& ids) const {
  return at::embedding(weight, ids);
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_, bool weight_in_float_, bool unit_offset_)
    : eps(eps_), weight_in_float(weight_in_float_), unit_offset(unit_offset_) {
  weight = register_parameter("weight", param({dim}), false);
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) const {
  // HF's order of operations (x * rsqrt(mean(x^2) + eps), cast back, times weight), with the
  // intermediates updated in place where that changes no value; bf16 rows on a CPU in one
  // fused pass with the same roundings.
  if (x.scalar_type() == at::kBFloat16 && x.device().is_cpu() && x.is_contiguous())
    return rms_norm_bf16(x, weight, eps, weight_in_float, unit_offset);
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor r = xf.square().mean(-1, /*keepdim=*/true).add_(eps).rsqrt_();
  at::Tensor y = xf * r;
  if (unit_offset) {  // Gemma: x * (1 + w), all in float32
    y.mul_(weight.to(at::kFloat) + 1.0);
    return x.scalar_type() != at::kFloat ? y.to(x.scalar_type()) : y;
  }
  if (weight_in_float) {
    y.mul_(weight.to(at::kFloat));
    return x.scalar_type() != at::kFloat ? y.to(x.scalar_type()) : y;
  }
  if (x.scalar_type() != at::kFloat) y = y.to(x.scalar_type());
  return y.mul_(weight);
}

AttentionImpl::AttentionImpl(const ModelConfig& c, int64_t layer_)
    : layer(layer_),
      num_heads(c.num_attention_heads),
      num_kv_heads(c.num_key_value_heads),
      head_dim(c.head_dim),
      window(c.window_for_layer(layer_)),
      scale(c.attention_scale > 0 ? c.attention_scale : 1.0 / std::sqrt(static_cast<double>(c.head_dim))),
      softcap(c.attn_softcap),
      local_rope(c.local_rope_layer(layer_)) {
  q_proj = register_module("q_proj", Linear(c.hidden_size, num_heads * head_dim, c.qkv_bias));
  k_proj = register_module("k_proj", Linear(c.hidden_size, num_kv_heads * head_dim, c.qkv_bias));
  v_proj = register_module("v_proj", Linear(c.hidden_size, num_kv_heads * head_dim, c.qkv_bias));
  o_proj = register_module("o_proj", Linear(num_heads * head_dim, c.hidden_size, c.o_bias));
  if (c.qk_norm) {
    qk_norm_whole = c.qk_norm_whole;
    q_norm = register_module("q_norm", norm_of(c, qk_norm_whole ? num_heads * head_dim : head_dim));
    k_norm = register_module("k_norm", norm_of(c, qk_norm_whole ? num_kv_heads * head_dim : head_dim));
  }
}

at::Tensor AttentionImpl::forward(const at::Tensor& x, const Layout& lay,
                                  const ForwardOptions& opt) const {
  const int64_t N = x.size(0), B = lay.B, T = lay.T;
  at::Tensor q = q_proj->forward(x);
  at::Tensor k = k_proj->forward(x);
  if (qk_norm_whole) {  // OLMo 2: over all heads at once, before RoPE
    q = q_norm->forward(q);
    k = k_norm->forward(k);
  }
  q = q.view({N, num_heads, head_dim});
  k = k.view({N, num_kv_heads, head_dim});
  at::Tensor v = v_proj->forward(x).view({N, num_kv_heads, head_dim});
  if (q_norm && !qk_norm_whole) {  // Qwen3: per-head norm before RoPE
    q = q_norm->forward(q);
    k = k_norm->forward(k);
  }
  const Rope& rope = local_rope ? lay.rope_local : lay.rope;
  q = apply_rope(q, rope);
  k = apply_rope(k, rope);

  // The reference model's critical heads in this layer. With an observer they go through the
  // softmax with their query zeroed (every score equal: uniform over the visible keys), so the
  // observer sees their probabilities; without one their output is the running mean of the
  // visible values (AIR-METHOD.md §3), O(T), and they stay out of the score matmuls.
  std::vector<int64_t> uniform;
  if (opt.uniform_heads && !opt.uniform_heads->empty()) uniform = opt.uniform_heads->heads_in_layer(layer);
  if (!uniform.empty() && opt.observer) {
    // Only this query head changes; the kv heads it shares stay intact.
    q = q.index_fill(1, index_tensor(uniform, q.device()), 0);
    uniform.clear();
  }

  // Packed [N, h, Dh] -> [B, h, T, Dh]; padded slots are zero and, being right of every real
  // token of their row, never visible to one.
  auto to_batch = [&](const at::Tensor& t) {
    at::Tensor full = t;
    if (lay.padded())
      full = at::zeros({B * T, t.size(1), head_dim}, t.options()).index_copy_(0, lay.flat, t);
    return full.view({B, T, t.size(1), head_dim}).transpose(1, 2);
  };
  q = to_batch(q);
  k = to_batch(k);
  v = to_batch(v);

  // [B, H, T, Dh]
  const AttendSpec spec{layer, window, scale, softcap};
  at::Tensor o = uniform.empty() ? attend(q, k, v, spec, opt)
                                 : attend_partitioned(q, k, v, uniform, num_kv_heads, spec, opt);
  o = o.transpose(1, 2).reshape({B * T, num_heads * head_dim});
  if (lay.padded()) o = o.index_select(0, lay.flat);
  return o_proj->forward(o);
}

MLPImpl::MLPImpl(const ModelConfig& c, int64_t inter, bool mixtral_names) : activation(c.activation) {
  const int64_t D = c.hidden_size;
  gate_proj = register_module(mixtral_names ? "w1" : "gate_proj", Linear(D, inter, c.mlp_bias));
  up_proj = register_module(mixtral_names ? "w3" : "up_proj", Linear(D, inter, c.mlp_bias));
  down_proj = register_module(mixtral_names ? "w2" : "down_proj", Linear(inter, D, c.mlp_bias));
}

at::Tensor MLPImpl::forward(const at::Tensor& x) const {
  at::Tensor g = gate_proj->forward(x);
  const at::Tensor u = up_proj->forward(x);
  if (activation == Activation::kSilu && g.scalar_type() == at::kBFloat16 && u.scalar_type() == at::kBFloat16 &&
      g.device().is_cpu() && u.device().is_cpu() && g.is_contiguous() && u.is_contiguous())
    silu_mul_bf16_(g, u);  // one pass, HF's roundings
  else
    g = activate_(g, activation).mul_(u);
  return down_proj->forward(g);
}

ExpertListImpl::ExpertListImpl(const ModelConfig& c) {
  for (int64_t e = 0; e < c.num_experts; ++e)
    items.push_back(register_module(std::to_string(e), MLP(c, c.moe_intermediate_size, c.mixtral_names())));
}

SparseMoeImpl::SparseMoeImpl(const ModelConfig& c) : top_k(c.experts_per_token), norm_topk(c.norm_topk_prob) {
  gate = register_module("gate", Linear(c.hidden_size, c.num_experts, false));
  experts = register_module("experts", ExpertList(c));
  if (c.shared_expert_intermediate_size > 0) {
    shared_expert = register_module("shared_expert", MLP(c, c.shared_expert_intermediate_size));
    shared_expert_gate = register_module("shared_expert_gate", Linear(c.hidden_size, 1, false));
  }
}

at::Tensor SparseMoeImpl::routing(const at::Tensor& x) const {
  auto [w, idx] = top_routes(x, gate->weight, top_k, norm_topk);
  return at::zeros({x.size(0), gate->weight.size(0)}, w.options()).scatter_(1, idx, w);
}

at::Tensor SparseMoeImpl::forward(const at::Tensor& x) const {
  const int64_t E = static_cast<int64_t>(experts->items.size());
  auto [w, idx] = top_routes(x, gate->weight, top_k, norm_topk);  // [N, k]
  w = w.to(x.scalar_type());
  // Group the N * k (token, expert) pairs by expert, in token order within each expert.
  const at::Tensor flat_expert = idx.reshape({-1});
  const at::Tensor order = std::get<1>(flat_expert.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
  const at::Tensor token = order.div(top_k, "floor");
  const at::Tensor weight = w.reshape({-1}).index_select(0, order).unsqueeze(1);
  const at::Tensor counts = at::bincount(flat_expert, {}, E).to(at::kLong).cpu().contiguous();
  const int64_t* count = counts.data_ptr<int64_t>();
  at::Tensor out = at::zeros_like(x);
  int64_t start = 0;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = count[e];
    if (n == 0) continue;
    const at::Tensor rows = token.narrow(0, start, n);
    // Experts in ascending order, each adding its weighted output: HF's order of the sums.
    out.index_add_(0, rows, experts->items[e]->forward(x.index_select(0, rows)).mul_(weight.narrow(0, start, n)));
    start += n;
  }
  if (shared_expert) {
    const at::Tensor g = at::sigmoid(shared_expert_gate->forward(x));
    out.add_(g * shared_expert->forward(x));
  }
  return out;
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c, int64_t layer) {
  self_attn = register_module("self_attn", Attention(c, layer));
  if (c.sparse_layer(layer)) {
    moe = register_module(c.mixtral_names() ? "block_sparse_moe" : "mlp", SparseMoe(c));
    ffn_width = c.experts_per_token * c.moe_intermediate_size + c.shared_expert_intermediate_size;
  } else {
    mlp = register_module("mlp", MLP(c, c.intermediate_size));
    ffn_width = c.intermediate_size;
  }
  const int64_t D = c.hidden_size;
  if (c.sandwich_norms) {
    attn_in = register_module("input_layernorm", norm_of(c, D));
    attn_out = register_module("post_attention_layernorm", norm_of(c, D));
    mlp_in = register_module("pre_feedforward_layernorm", norm_of(c, D));
    mlp_out = register_module("post_feedforward_layernorm", norm_of(c, D));
  } else if (c.post_norms) {
    attn_out = register_module("post_attention_layernorm", norm_of(c, D));
    mlp_out = register_module("post_feedforward_layernorm", norm_of(c, D));
  } else {
    attn_in = register_module("input_layernorm", norm_of(c, D));
    mlp_in = register_module("post_attention_layernorm", norm_of(c, D));
  }
}

at::Tensor DecoderLayerImpl::feed_forward(const at::Tensor& x) const {
  return moe ? moe->forward(x) : mlp->forward(x);
}

at::Tensor DecoderLayerImpl::forward(const at::Tensor& x, const Layout& lay,
                                     const ForwardOptions& opt) const {
  at::Tensor a = self_attn->forward(attn_in ? attn_in->forward(x) : x, lay, opt);
  if (attn_out) a = attn_out->forward(a);
  const at::Tensor h = a.add_(x);
  return mlp_blocks(h, [&](const at::Tensor& hs) {
    at::Tensor f = feed_forward(mlp_in ? mlp_in->forward(hs) : hs);
    return mlp_out ? mlp_out->forward(f) : f;
  });
}

// h + f(h), computed in blocks of tokens: the MLP is per token, so that its [tokens,
// intermediate] activations stay bounded when many tokens go through it.
at::Tensor DecoderLayerImpl::mlp_blocks(at::Tensor h, const std::function<at::Tensor(const at::Tensor&)>& f) const {
  const int64_t N = h.size(0);
  const int64_t inter = ffn_width;
  const int64_t budget = h.is_cpu() ? kMlpBlockBytes : 8 * kMlpBlockBytes;
  const int64_t block = std::max<int64_t>(1, budget / std::max<int64_t>(1, 3 * inter * 4));
  if (N <= block) return f(h).add_(h);
  for (int64_t s = 0; s < N; s += block) {
    at::Tensor hs = h.narrow(0, s, std::min(block, N - s));
    hs.add_(f(hs));
  }
  return h;
}

LayerListImpl::LayerListImpl(const ModelConfig& c) {
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    items.push_back(register_module(std::to_string(i), DecoderLayer(c, i)));
}

DecoderImpl::DecoderImpl(const ModelConfig& c) {
  embed_tokens = register_module("embed_tokens", Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", LayerList(c));
  norm = register_module("norm", norm_of(c, c.hidden_size));
}

at::Tensor plain_inv_freq(double theta, int64_t d) {
  // As HF, in float32 tensor ops: 1 / theta^(2i / d).
  const at::Tensor exponent = at::arange(0, d, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) / static_cast<double>(d);
  return 1.0 / at::pow(theta, exponent);
}

at::Tensor rope_inv_freq(const ModelConfig& c, bool long_factors) {
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  const int64_t d = c.rotary_dim > 0 ? c.rotary_dim : c.head_dim;
  at::Tensor exponent = at::arange(0, d, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) / static_cast<double>(d);
  const auto& rs = c.rope_scaling;
  if (rs.type == RopeScaling::Type::kLongRope) {
    const std::vector<double>& ext = long_factors ? rs.long_factor : rs.short_factor;
    const at::Tensor factors = at::tensor(std::vector<float>(ext.begin(), ext.end()), f32);
    return 1.0 / (factors * at::pow(c.rope_theta, exponent));
  }
  at::Tensor inv = plain_inv_freq(c.rope_theta, d);  // [d/2]
  if (rs.type == RopeScaling::Type::kLinear) return inv / rs.factor;
  if (rs.type == RopeScaling::Type::kLlama3) {
    // Llama 3.1: long wavelengths scaled down by factor, short ones kept, the band between
    // interpolated smoothly.
    const double old_len = static_cast<double>(rs.original_max_position_embeddings);
    const double low_wavelen = old_len / rs.low_freq_factor;
    const double high_wavelen = old_len / rs.high_freq_factor;
    at::Tensor wavelen = 2.0 * M_PI / inv;
    at::Tensor scaled = at::where(wavelen > low_wavelen, inv / rs.factor, inv);
    at::Tensor smooth =
        (old_len / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
    at::Tensor smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled;
    at::Tensor medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen);
    return at::where(medium, smoothed, scaled);
  }
  return inv;
}

CausalLMImpl::CausalLMImpl(const ModelConfig& c) : config(c) {
  model = register_module("model", Decoder(c));
  if (!c.tie_word_embeddings)
    lm_head = register_module("lm_head", Linear(c.hidden_size, c.vocab_size, false));
  inv_freq = rope_inv_freq(c);
  if (c.rope_scaling.type == RopeScaling::Type::kLongRope) inv_freq_long = rope_inv_freq(c, true);
  if (c.rope_local_theta > 0) inv_freq_local = plain_inv_freq(c.rope_local_theta, c.rotary_dim);
}

const at::Tensor& CausalLMImpl::output_weight() const {
  return lm_head ? lm_head->weight : model->embed_tokens->weight;
}

Layout CausalLMImpl::layout(int64_t B, int64_t T, const std::vector<int64_t>& lengths) const {
  if (!lengths.empty() && static_cast<int64_t>(lengths.size()) != B)
    throw UsageError("layout: " + std::to_string(lengths.size()) + " lengths for " +
                     std::to_string(B) + " rows");
  const at::Tensor& w = model->embed_tokens->weight;
  Layout lay;
  lay.B = B;
  lay.T = T;
  const RopeScaling& rs = config.rope_scaling;
  std::vector<int64_t> flat, pos, long_row;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = lengths.empty() ? T : std::clamp<int64_t>(lengths[b], 0, T);
    lay.lengths.push_back(len);
    lay.offsets.push_back(lay.N);
    lay.N += len;
    for (int64_t t = 0; t < len; ++t) {
      flat.push_back(b * T + t);
      pos.push_back(t);
      long_row.push_back(len > rs.original_max_position_embeddings);
    }
  }
  if (lay.padded()) lay.flat = index_tensor(flat, w.device());
  // As HF, in float32: angle = position * inv_freq, the table [cos | cos] over the rotary dims.
  const at::Tensor p = index_tensor(pos, w.device()).to(at::kFloat);
  // inv_long (LongRoPE's, or undefined) replaces inv throughout a sequence longer than the original context.
  auto table = [&](const at::Tensor& inv, const at::Tensor& inv_long, double factor) {
    at::Tensor freqs = at::outer(p, inv.to(w.device()));  // [N, d/2] float32
    if (inv_long.defined()) {
      const at::Tensor is_long = index_tensor(long_row, w.device()).to(at::kBool).unsqueeze(1);
      freqs = at::where(is_long, at::outer(p, inv_long.to(w.device())), freqs);
    }
    const at::Tensor emb = at::cat({freqs, freqs}, -1).unsqueeze(1);  // [N, 1, d]
    at::Tensor cos = emb.cos(), sin = emb.sin();
    if (factor != 1.0) {
      cos = cos * factor;
      sin = sin * factor;
    }
    return Rope{cos.to(w.scalar_type()), sin.to(w.scalar_type())};
  };
  lay.rope = table(inv_freq, inv_freq_long, rs.type == RopeScaling::Type::kLongRope ? rs.attention_factor : 1.0);
  if (inv_freq_local.defined()) lay.rope_local = table(inv_freq_local, at::Tensor(), 1.0);
  return lay;
}

Layout CausalLMImpl::layout_of(const at::Tensor& ids, const std::vector<int64_t>& lengths) const {
  if (ids.dim() != 2) throw UsageError("ids must be [B, T], got " + std::to_string(ids.dim()) + " dims");
  return layout(ids.size(0), ids.size(1), lengths);
}

at::Tensor CausalLMImpl::embed(const at::Tensor& ids, const Layout& lay) const {
  if (ids.dim() != 2 || ids.size(0) != lay.B || ids.size(1) != lay.T)
    throw UsageError("ids must be [" + std::to_string(lay.B) + ", " + std::to_string(lay.T) + "]");
  at::Tensor flat = ids.to(model->embed_tokens->weight.device()).reshape({lay.B * lay.T});
  if (lay.padded()) flat = flat.index_select(0, lay.flat);
  at::Tensor h = model->embed_tokens->forward(flat);
  if (config.embed_scale) {
    // Gemma: times sqrt(hidden_size), the factor rounded to the weights' dtype first (as HF).
    const at::Tensor s = at::scalar_tensor(std::sqrt(static_cast<double>(config.hidden_size)),
                                           at::TensorOptions().dtype(at::kFloat)).to(h.scalar_type());
    h = h * s.item();
  }
  return h;
}

Layout Layout::to(const c10::Device& device) const {
  Layout l = *this;
  auto move = [&](at::Tensor& t) {
    if (t.defined()) t = t.to(device);
  };
  move(l.flat);
  move(l.rope.cos);
  move(l.rope.sin);
  move(l.rope_local.cos);
  move(l.rope_local.sin);
  return l;
}

at::Tensor CausalLMImpl::run_layers(at::Tensor h, int64_t begin, int64_t end, const Layout& lay,
                                    const ForwardOptions& opt) const {
  const Layout* cur = &lay;
  Layout moved;
  for (int64_t i = begin; i < end; ++i) {
    if (!layer_device.empty()) {  // split over devices: the layer's own
      const c10::Device dev = layer_device[i];
      if (h.device() != dev) h = h.to(dev);
      if (cur->rope.cos.device() != dev) {
        moved = lay.to(dev);
        cur = &moved;
      }
    }
    h = model->layers->items[i]->forward(h, *cur, opt);
    if (opt.after_layer && *opt.after_layer) (*opt.after_layer)();
  }
  return h;
}

at::Tensor CausalLMImpl::hidden_states(const at::Tensor& ids, const ForwardOptions& opt) const {
  const Layout lay = layout_of(ids);
  at::Tensor h = run_layers(embed(ids, lay), 0, config.num_hidden_layers, lay, opt);
  return model->norm->forward(h.to(model->norm->weight.device())).view({lay.B, lay.T, h.size(1)});
}

at::Tensor CausalLMImpl::logits(const at::Tensor& ids, const ForwardOptions& opt) const {
  at::Tensor z = at::linear(hidden_states(ids, opt).to(output_weight().device()), output_weight()).to(at::kFloat);
  return softcap_(z, config.final_softcap);
}

std::vector<NextTokenStats> CausalLMImpl::next_token_stats(const at::Tensor& ids,
                                                           const std::vector<int64_t>& lengths,
                                                           const ForwardOptions& opt,
                                                           bool entropy) const {
  const Layout lay = layout_of(ids, lengths);
  at::Tensor h = run_layers(embed(ids, lay), 0, config.num_hidden_layers, lay, opt);
  return stats_from_hidden(h, ids, lay, entropy);
}

std::vector<NextTokenStats> CausalLMImpl::stats_from_hidden(const at::Tensor& last,
                                                            const at::Tensor& ids,
                                                            const Layout& lay, bool entropy,
                                                            const std::vector<int64_t>& starts) const {
  const int64_t B = lay.B, T = lay.T;
  if (!starts.empty() && static_cast<int64_t>(starts.size()) != B)
    throw UsageError("next_token_stats: " + std::to_string(starts.size()) + " starts for " +
                     std::to_string(B) + " rows");
  // [N, D], on the output head's device (the last one, or the first when tied to the embeddings)
  const at::Tensor h = model->norm->forward(last.to(model->norm->weight.device())).to(output_weight().device());
  const at::Device dev = h.device();

  // Rows that predict a real next token: (b, t) with start <= t and t + 1 < lengths[b];
  // padding (and whatever precedes the start) does no work.
  std::vector<int64_t> rows, targets;  // packed row of (b, t); flat position of (b, t + 1)
  std::vector<int64_t> counts(B);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t end = std::max<int64_t>(0, lay.lengths[b] - 1);
    const int64_t start = starts.empty() ? 0 : std::clamp<int64_t>(starts[b], 0, end);
    counts[b] = end - start;
    for (int64_t t = start; t < end; ++t) {
      rows.push_back(lay.offsets[b] + t);
      targets.push_back(b * T + t + 1);
    }
  }
  const int64_t N = static_cast<int64_t>(rows.size());
  at::Tensor lp = at::empty({N}, at::TensorOptions().dtype(at::kFloat).device(dev));
  at::Tensor ent;
  if (entropy) ent = at::empty({N}, at::TensorOptions().dtype(at::kFloat).device(dev));
  if (N > 0) {
    const at::Tensor target_ids = ids.to(dev).reshape({B * T}).index_select(0, index_tensor(targets, dev));  // [N]
    const at::Tensor hs = h.index_select(0, index_tensor(rows, dev));  // [N, D]
    const at::Tensor& w = output_weight();
    const LossHeadTuning& tune = loss_head_tuning();
    const double cap = config.final_softcap;
    if (dev.is_cpu() && !tune.aten) row_stats_blocked(hs, w, target_ids, tune, entropy, cap, lp, ent);
    else row_stats_dense(hs, w, target_ids, entropy, cap, lp, ent);
  }
  lp = lp.cpu();
  if (entropy) ent = ent.cpu();
  std::vector<NextTokenStats> out(B);
  int64_t off = 0;
  for (int64_t b = 0; b < B; ++b) {
    out[b].logprob = lp.narrow(0, off, counts[b]);
    if (entropy) out[b].entropy = ent.narrow(0, off, counts[b]);
    off += counts[b];
  }
  return out;
}

}  // namespace air::nn
