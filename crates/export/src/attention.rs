//! A block's attention, from the q, k, v projections to the heads' output and the KV cache:
//! spelled out in opset 21 primitives, or with opset 23's `RotaryEmbedding` and `Attention`;
//! rotary embeddings (on all or part of each head), ALiBi, per-head q/k norms, the causal,
//! padding and sliding-window masks.

use crate::arch::alibi_slopes;
use crate::config::{Positions, QkNorm, Rope};
use crate::error::Result;
use crate::graph::{Attr, GraphBuilder};
use crate::onnx::data_type::{BOOL, FLOAT};
use crate::ops::Exporter;

/// The value masked attention logits are replaced with: finite, so that a fully masked
/// query row (left padding) gives a uniform distribution, not NaN.
const MASKED: f32 = f32::MIN;

/// What a block's attention reads besides its projections.
pub(crate) struct Attn<'a> {
    pub hidden: &'a str,
    pub pos: &'a str,
    pub amask: &'a str,
    pub past_k: &'a str,
    pub past_v: &'a str,
    /// The layer's RoPE, `None` on layers without rotary embeddings (NoPE, ALiBi).
    pub rope: Option<&'a Rope>,
    pub window: Option<usize>,
    /// The checkpoint's name prefix of the attention weights.
    pub prefix: &'a str,
}

impl Exporter<'_> {
    /// Attention as primitives (opset 21): `q`, `k`, `v` are the projections `[b, s, h * hd]`;
    /// returns the heads' output `[b, s, nh * hd]` and the caches `present_key`,
    /// `present_value`.
    pub(crate) fn attention_basic(
        &self,
        g: &mut GraphBuilder,
        q: &str,
        k: &str,
        v: &str,
        at: &Attn<'_>,
    ) -> Result<(String, String, String)> {
        let c = self.cfg;
        let (hd, nh, nkv) = (c.head_dim, c.num_heads, c.num_kv_heads);
        let rep = nh / nkv;
        let a = at.prefix;
        let heads = |g: &mut GraphBuilder, t: &str, n: usize| {
            let shape = g.const_i64(&[0, 0, n as i64, hd as i64]);
            let r = g.node("Reshape", &[t, &shape], vec![]);
            g.node(
                "Transpose",
                &[&r],
                vec![("perm", Attr::Ints(vec![0, 2, 1, 3]))],
            )
        };
        let mut q = heads(g, q, nh);
        let mut k = heads(g, k, nkv);
        let v = heads(g, v, nkv);
        if c.qk_norm == QkNorm::PerHead {
            q = self.rms_norm(g, &q, &format!("{a}.q_norm"), hd)?;
            k = self.rms_norm(g, &k, &format!("{a}.k_norm"), hd)?;
        }
        if let Some(rope) = at.rope {
            let rd = c.rotary_dim;
            let (cos, sin) = rotary(g, at.pos, &rope.inv_freq(rd));
            q = apply_partial_rotary(g, &q, &cos, &sin, rd, hd);
            k = apply_partial_rotary(g, &k, &cos, &sin, rd, hd);
        }
        let present_k = g.node_named(
            "Concat",
            &[at.past_k, &k],
            "present_key",
            vec![("axis", Attr::Int(2))],
        );
        let present_v = g.node_named(
            "Concat",
            &[at.past_v, &v],
            "present_value",
            vec![("axis", Attr::Int(2))],
        );
        // Grouped-query attention without copying keys: queries as
        // [b, kv_heads, rep, s, hd] against keys [b, kv_heads, 1, total, hd] (broadcast).
        let q5_shape = g.const_i64(&[0, nkv as i64, rep as i64, -1, hd as i64]);
        let q5 = g.node("Reshape", &[&q, &q5_shape], vec![]);
        let ax2 = g.const_i64(&[2]);
        let k5 = g.node("Unsqueeze", &[&present_k, &ax2], vec![]);
        let kt = g.node(
            "Transpose",
            &[&k5],
            vec![("perm", Attr::Ints(vec![0, 1, 2, 4, 3]))],
        );
        let scores = g.node("MatMul", &[&q5, &kt], vec![]);
        let scale = g.scalar_f32(c.attn_scale as f32);
        let mut scores = g.node("Mul", &[&scores, &scale], vec![]);
        if let Some(cap) = c.attn_softcap {
            scores = softcap(g, &scores, cap as f32);
        }
        if c.positions == Positions::Alibi {
            let bias = alibi(g, at.amask, &[1, nkv as i64, rep as i64, 1, 1], &[1, 2, 3]);
            scores = g.node("Add", &[&scores, &bias], vec![]);
        }
        let allowed = attention_mask(g, at.hidden, at.past_k, at.amask, at.window, &[1, 2, 3]);
        let masked = g.scalar_f32(MASKED);
        let scores = g.node("Where", &[&allowed, &scores, &masked], vec![]);
        let probs = g.node("Softmax", &[&scores], vec![("axis", Attr::Int(-1))]);
        let v5 = g.node("Unsqueeze", &[&present_v, &ax2], vec![]);
        let o = g.node("MatMul", &[&probs, &v5], vec![]);
        let o_shape = g.const_i64(&[0, nh as i64, -1, hd as i64]);
        let o = g.node("Reshape", &[&o, &o_shape], vec![]);
        let o = g.node(
            "Transpose",
            &[&o],
            vec![("perm", Attr::Ints(vec![0, 2, 1, 3]))],
        );
        let flat = g.const_i64(&[0, 0, (nh * hd) as i64]);
        let o = g.node("Reshape", &[&o, &flat], vec![]);
        Ok((o, present_k, present_v))
    }

    /// Attention with opset 23's `RotaryEmbedding` and `Attention` on `[b, s, h * hd]`
    /// projections (no head transposes); returns what [`Self::attention_basic`] does.
    pub(crate) fn attention_fused(
        &self,
        g: &mut GraphBuilder,
        q: &str,
        k: &str,
        v: &str,
        at: &Attn<'_>,
    ) -> Result<(String, String, String)> {
        let c = self.cfg;
        let (hd, nh, nkv) = (c.head_dim, c.num_heads, c.num_kv_heads);
        let a = at.prefix;
        let (mut q, mut k) = (q.to_string(), k.to_string());
        if c.qk_norm == QkNorm::PerHead {
            // Per-head norms over [b, s, h, hd], then back to [b, s, h * hd].
            let per_head = |g: &mut GraphBuilder, t: &str, n: usize, w: &str| -> Result<String> {
                let split = g.const_i64(&[0, 0, n as i64, hd as i64]);
                let t4 = g.node("Reshape", &[t, &split], vec![]);
                let normed = self.rms_norm(g, &t4, w, hd)?;
                let flat = g.const_i64(&[0, 0, (n * hd) as i64]);
                Ok(g.node("Reshape", &[&normed, &flat], vec![]))
            };
            q = per_head(g, &q, nh, &format!("{a}.q_norm"))?;
            k = per_head(g, &k, nkv, &format!("{a}.k_norm"))?;
        }
        if let Some(rope) = at.rope {
            // cos and sin [b, s, rotary_dim / 2] of the positions (no cache table: any
            // position works); dims past `rotary_dim` pass through.
            let rd = c.rotary_dim;
            let inv = rope.inv_freq(rd);
            let inv = g.tensor_f32("rope.inv_freq", &[inv.len()], &inv);
            let pf = g.node("Cast", &[at.pos], vec![("to", Attr::Int(FLOAT as i64))]);
            let last = g.const_i64(&[-1]);
            let p3 = g.node("Unsqueeze", &[&pf, &last], vec![]);
            let freqs = g.node("Mul", &[&p3, &inv], vec![]);
            let cos = g.node("Cos", &[&freqs], vec![]);
            let sin = g.node("Sin", &[&freqs], vec![]);
            let rotate = |g: &mut GraphBuilder, t: &str, n: usize| {
                let mut attrs = vec![("num_heads", Attr::Int(n as i64))];
                if rd < hd {
                    attrs.push(("rotary_embedding_dim", Attr::Int(rd as i64)));
                }
                g.node("RotaryEmbedding", &[t, &cos, &sin], attrs)
            };
            q = rotate(g, &q, nh);
            k = rotate(g, &k, nkv);
        }
        // The boolean mask as an additive one, finite (see MASKED); with ALiBi, the bias
        // where allowed.
        let allowed = attention_mask(g, at.hidden, at.past_k, at.amask, at.window, &[1, 2]);
        let open = match c.positions {
            Positions::Alibi => alibi(g, at.amask, &[1, nh as i64, 1, 1], &[1, 2]),
            Positions::Rope => g.scalar_f32(0.0),
        };
        let masked = g.scalar_f32(MASKED);
        let bias = g.node("Where", &[&allowed, &open, &masked], vec![]);
        let o = format!("{a}.attention");
        g.node_multi(
            "Attention",
            &[&q, &k, v, &bias, at.past_k, at.past_v],
            &[&o, "present_key", "present_value"],
            vec![
                ("q_num_heads", Attr::Int(nh as i64)),
                ("kv_num_heads", Attr::Int(nkv as i64)),
                ("scale", Attr::Float(c.attn_scale as f32)),
            ],
        );
        Ok((o, "present_key".into(), "present_value".into()))
    }
}

/// `tanh(x / cap) * cap`.
pub(crate) fn softcap(g: &mut GraphBuilder, x: &str, cap: f32) -> String {
    let c = g.scalar_f32(cap);
    let d = g.node("Div", &[x, &c], vec![]);
    let t = g.node("Tanh", &[&d], vec![]);
    g.node("Mul", &[&t, &c], vec![])
}

/// `cos`, `sin` of shape [batch, 1, seq, head_dim] from `position_ids` (transformers'
/// layout: the frequencies repeated twice along the last axis).
fn rotary(g: &mut GraphBuilder, pos: &str, inv_freq: &[f32]) -> (String, String) {
    let inv = g.tensor_f32("rope.inv_freq", &[inv_freq.len()], inv_freq);
    let pf = g.node("Cast", &[pos], vec![("to", Attr::Int(FLOAT as i64))]);
    let last = g.const_i64(&[-1]);
    let p3 = g.node("Unsqueeze", &[&pf, &last], vec![]);
    let freqs = g.node("Mul", &[&p3, &inv], vec![]);
    let emb = g.node("Concat", &[&freqs, &freqs], vec![("axis", Attr::Int(-1))]);
    let one = g.const_i64(&[1]);
    let cos = g.node("Cos", &[&emb], vec![]);
    let cos = g.node("Unsqueeze", &[&cos, &one], vec![]);
    let sin = g.node("Sin", &[&emb], vec![]);
    let sin = g.node("Unsqueeze", &[&sin, &one], vec![]);
    (cos, sin)
}

/// Rotary embeddings on the first `rd` of the `hd` dims of each head (all when `rd == hd`),
/// the rest passing through, as transformers' `apply_rotary_pos_emb` does.
fn apply_partial_rotary(
    g: &mut GraphBuilder,
    x: &str,
    cos: &str,
    sin: &str,
    rd: usize,
    hd: usize,
) -> String {
    if rd == hd {
        return apply_rotary(g, x, cos, sin, hd);
    }
    let split = g.const_i64(&[rd as i64, (hd - rd) as i64]);
    let (rot, pass) = (format!("{x}.rot"), format!("{x}.pass"));
    g.node_multi(
        "Split",
        &[x, &split],
        &[&rot, &pass],
        vec![("axis", Attr::Int(-1))],
    );
    let rotated = apply_rotary(g, &rot, cos, sin, rd);
    g.node("Concat", &[&rotated, &pass], vec![("axis", Attr::Int(-1))])
}

/// ALiBi's bias `slope[head] * key_position`, with key positions counted over the attention
/// mask as transformers' `build_alibi_tensor` does (`(cumsum(mask) - 1) * mask`): only key
/// positions enter, and softmax ignores the per-query shift that distances would add. The
/// slopes take shape `slope_shape`, the positions `[batch, total]` gain unit axes
/// `pos_axes`, and the product broadcasts against the attention logits.
fn alibi(g: &mut GraphBuilder, amask: &str, slope_shape: &[i64], pos_axes: &[i64]) -> String {
    let heads: i64 = slope_shape.iter().product();
    let slopes = alibi_slopes(heads as usize);
    let dims: Vec<usize> = slope_shape.iter().map(|&d| d as usize).collect();
    let slopes = g.tensor_f32("alibi.slopes", &dims, &slopes);
    let m = g.node("Cast", &[amask], vec![("to", Attr::Int(FLOAT as i64))]);
    let axis = g.scalar_i64(1);
    let count = g.node("CumSum", &[&m, &axis], vec![]);
    let one = g.scalar_f32(1.0);
    let before = g.node("Sub", &[&count, &one], vec![]);
    let kpos = g.node("Mul", &[&before, &m], vec![]);
    let axes = g.const_i64(pos_axes);
    let kpos = g.node("Unsqueeze", &[&kpos, &axes], vec![]);
    g.node("Mul", &[&slopes, &kpos], vec![])
}

/// `x * cos + rotate_half(x) * sin`, with `rotate_half(x) = cat(-x2, x1)`.
fn apply_rotary(g: &mut GraphBuilder, x: &str, cos: &str, sin: &str, hd: usize) -> String {
    let half = (hd / 2) as i64;
    let split = g.const_i64(&[half, half]);
    let x1 = format!("{x}.x1");
    let x2 = format!("{x}.x2");
    g.node_multi(
        "Split",
        &[x, &split],
        &[&x1, &x2],
        vec![("axis", Attr::Int(-1))],
    );
    let n2 = g.node("Neg", &[&x2], vec![]);
    let rot = g.node("Concat", &[&n2, &x1], vec![("axis", Attr::Int(-1))]);
    let a = g.node("Mul", &[x, cos], vec![]);
    let b = g.node("Mul", &[&rot, sin], vec![]);
    g.node("Add", &[&a, &b], vec![])
}

/// The boolean mask [batch, 1, .., 1, seq, total] (`pad_axes`: where the padding mask
/// `[batch, total]` gains its unit axes; `[1, 2, 3]` for the 5-d basic attention, `[1, 2]`
/// for `Attention`'s `[batch, heads, seq, total]`): query `t` (absolute index `past + t`) may see
/// key `k` iff `k <= past + t`, `attention_mask[k] == 1`, and, with a window,
/// `past + t - k < window` (transformers' `kv_idx > q_idx - sliding_window`).
fn attention_mask(
    g: &mut GraphBuilder,
    hidden: &str,
    past_key: &str,
    amask: &str,
    window: Option<usize>,
    pad_axes: &[i64],
) -> String {
    let past = g.node(
        "Shape",
        &[past_key],
        vec![("start", Attr::Int(2)), ("end", Attr::Int(3))],
    );
    let seq = g.node(
        "Shape",
        &[hidden],
        vec![("start", Attr::Int(1)), ("end", Attr::Int(2))],
    );
    let total = g.node("Add", &[&past, &seq], vec![]);
    let zero_ax = g.const_i64(&[0]);
    let past_s = g.node("Squeeze", &[&past, &zero_ax], vec![]);
    let total_s = g.node("Squeeze", &[&total, &zero_ax], vec![]);
    let zero = g.scalar_i64(0);
    let one = g.scalar_i64(1);
    let q_idx = g.node("Range", &[&past_s, &total_s, &one], vec![]);
    let k_idx = g.node("Range", &[&zero, &total_s, &one], vec![]);
    let ax1 = g.const_i64(&[1]);
    let q_col = g.node("Unsqueeze", &[&q_idx, &ax1], vec![]);
    let mut allowed = g.node("LessOrEqual", &[&k_idx, &q_col], vec![]);
    if let Some(w) = window {
        let diff = g.node("Sub", &[&q_col, &k_idx], vec![]);
        let w = g.scalar_i64(w as i64);
        let within = g.node("Less", &[&diff, &w], vec![]);
        allowed = g.node("And", &[&allowed, &within], vec![]);
    }
    let pad = g.node("Cast", &[amask], vec![("to", Attr::Int(BOOL as i64))]);
    let axes = g.const_i64(pad_axes);
    let pad = g.node("Unsqueeze", &[&pad, &axes], vec![]);
    g.node("And", &[&allowed, &pad], vec![])
}
