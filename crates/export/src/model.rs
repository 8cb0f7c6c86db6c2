//! The graphs: `embed`, one `layer_{i}` per decoder block, and `head`, built node by node
//! from a [`Config`] and a weight source.
//!
//! Every graph computes in f32. Linear weights are stored transposed (`[in, out]`, so each
//! projection is one `MatMul`), under their checkpoint names.

use crate::Dtype;
use crate::GraphOps;
use crate::arch::alibi_slopes;
use crate::config::{Activation, AttentionType, Config, Mlp, Norm, Positions, QkNorm, Rope};
use crate::error::{ExportError, Result};
use crate::graph::{Attr, Dim, GraphBuilder, OPSET_FUSED};
use crate::onnx::data_type::{BOOL, FLOAT, INT64};
use crate::weights::{self, Weights};

const BATCH: Dim = Dim::Sym("batch");
const SEQ: Dim = Dim::Sym("seq");
const PAST: Dim = Dim::Sym("past");
const TOTAL: Dim = Dim::Sym("total");

/// The value masked attention logits are replaced with: finite, so that a fully masked
/// query row (left padding) gives a uniform distribution, not NaN.
const MASKED: f32 = f32::MIN;

const TRANSPOSED: &str = "stored transposed: [in, out]";

/// What a block's attention reads besides its projections.
struct Attn<'a> {
    hidden: &'a str,
    pos: &'a str,
    amask: &'a str,
    past_k: &'a str,
    past_v: &'a str,
    /// The layer's RoPE, `None` on layers without rotary embeddings (NoPE, ALiBi).
    rope: Option<&'a Rope>,
    window: Option<usize>,
    /// The checkpoint's name prefix of the attention weights.
    prefix: &'a str,
}

/// Shared state of the graph builders.
pub(crate) struct Exporter<'a> {
    pub cfg: &'a Config,
    pub weights: &'a dyn Weights,
    pub dtype: Dtype,
    pub extra_outputs: bool,
    pub ops: GraphOps,
}

impl Exporter<'_> {
    fn d(&self) -> i64 {
        self.cfg.hidden_size as i64
    }

    fn fused(&self, g: &mut GraphBuilder) -> bool {
        let fused = self.ops == GraphOps::Fused;
        if fused {
            g.require_opset(OPSET_FUSED);
        }
        fused
    }

    /// The architecture's norm (RMSNorm or LayerNorm) of module `module` over `len` values.
    fn norm(&self, g: &mut GraphBuilder, x: &str, module: &str, len: usize) -> Result<String> {
        match self.cfg.norm {
            Norm::Rms => self.rms_norm(g, x, module, len),
            Norm::Layer => self.layer_norm(g, x, module, len),
        }
    }

    /// RMSNorm over the last axis with the weight of module `module`, of length `len`
    /// (Gemma's `(1 + w)` applied at export time, in f32 as transformers does).
    fn rms_norm(&self, g: &mut GraphBuilder, x: &str, module: &str, len: usize) -> Result<String> {
        let name = format!("{module}.weight");
        let mut w = weights::vector(self.weights, &name, len)?;
        if self.cfg.norm_plus_one {
            for v in &mut w {
                *v += 1.0;
            }
        }
        let w = g.tensor_f32(&name, &[len], &w);
        let eps = self.cfg.norm_eps as f32;
        if self.fused(g) {
            // Computes in f32 (`stash_type` 1, the default), as transformers does.
            return Ok(g.node(
                "RMSNormalization",
                &[x, &w],
                vec![("axis", Attr::Int(-1)), ("epsilon", Attr::Float(eps))],
            ));
        }
        let sq = g.node("Mul", &[x, x], vec![]);
        let axes = g.const_i64(&[-1]);
        let var = g.node(
            "ReduceMean",
            &[&sq, &axes],
            vec![("keepdims", Attr::Int(1))],
        );
        let eps = g.scalar_f32(eps);
        let ve = g.node("Add", &[&var, &eps], vec![]);
        let s = g.node("Sqrt", &[&ve], vec![]);
        let r = g.node("Reciprocal", &[&s], vec![]);
        let n = g.node("Mul", &[x, &r], vec![]);
        Ok(g.node("Mul", &[&n, &w], vec![]))
    }

    /// LayerNorm over the last axis with the weight and bias of module `module`.
    fn layer_norm(
        &self,
        g: &mut GraphBuilder,
        x: &str,
        module: &str,
        len: usize,
    ) -> Result<String> {
        let wname = format!("{module}.weight");
        let bname = format!("{module}.bias");
        let w = weights::vector(self.weights, &wname, len)?;
        let b = weights::vector(self.weights, &bname, len)?;
        let w = g.tensor_f32(&wname, &[len], &w);
        let b = g.tensor_f32(&bname, &[len], &b);
        let eps = self.cfg.norm_eps as f32;
        if self.fused(g) {
            return Ok(g.node(
                "LayerNormalization",
                &[x, &w, &b],
                vec![("axis", Attr::Int(-1)), ("epsilon", Attr::Float(eps))],
            ));
        }
        let axes = g.const_i64(&[-1]);
        let keep = || vec![("keepdims", Attr::Int(1))];
        let mean = g.node("ReduceMean", &[x, &axes], keep());
        let centered = g.node("Sub", &[x, &mean], vec![]);
        let sq = g.node("Mul", &[&centered, &centered], vec![]);
        let var = g.node("ReduceMean", &[&sq, &axes], keep());
        let eps = g.scalar_f32(eps);
        let ve = g.node("Add", &[&var, &eps], vec![]);
        let s = g.node("Sqrt", &[&ve], vec![]);
        let r = g.node("Reciprocal", &[&s], vec![]);
        let n = g.node("Mul", &[&centered, &r], vec![]);
        let n = g.node("Mul", &[&n, &w], vec![]);
        Ok(g.node("Add", &[&n, &b], vec![]))
    }

    /// `x @ W^T (+ b)` for the checkpoint's `Linear` `prefix` of shape `[out, inp]`.
    fn linear(
        &self,
        g: &mut GraphBuilder,
        x: &str,
        prefix: &str,
        inp: usize,
        out: usize,
        bias: bool,
    ) -> Result<String> {
        let name = format!("{prefix}.weight");
        let data = weights::matrix_t(self.weights, &name, out, inp, self.dtype)?;
        let w = g.weight(&name, &[inp, out], self.dtype, data, TRANSPOSED);
        let y = g.node("MatMul", &[x, &w], vec![]);
        if !bias {
            return Ok(y);
        }
        let bname = format!("{prefix}.bias");
        let b = weights::vector(self.weights, &bname, out)?;
        let b = g.tensor_f32(&bname, &[out], &b);
        Ok(g.node("Add", &[&y, &b], vec![]))
    }

    /// The q, k, v projections `[b, s, heads * head_dim]` of block input `h`: three
    /// `Linear`s, or one fused projection whose `[heads, 3, head_dim]` rows are reordered at
    /// export time to `[3, heads, head_dim]`, so that one `MatMul` and a `Split` give them.
    fn qkv(&self, g: &mut GraphBuilder, h: &str, a: &str) -> Result<(String, String, String)> {
        let c = self.cfg;
        let (d, hd, nh, nkv) = (c.hidden_size, c.head_dim, c.num_heads, c.num_kv_heads);
        let Some(fused) = c.names.fused_qkv else {
            let q = self.linear(g, h, &format!("{a}.q_proj"), d, nh * hd, c.qkv_bias)?;
            let k = self.linear(g, h, &format!("{a}.k_proj"), d, nkv * hd, c.qkv_bias)?;
            let v = self.linear(g, h, &format!("{a}.v_proj"), d, nkv * hd, c.qkv_bias)?;
            return Ok((q, k, v));
        };
        let prefix = format!("{a}.{fused}");
        let rows = 3 * nh * hd;
        // Checkpoint row (head, part, j) goes to (part, head, j).
        let reorder = |r: usize| {
            let (head, rest) = (r / (3 * hd), r % (3 * hd));
            let (part, j) = (rest / hd, rest % hd);
            part * nh * hd + head * hd + j
        };
        let name = format!("{prefix}.weight");
        let data = weights::matrix_t_reordered(self.weights, &name, rows, d, self.dtype, &reorder)?;
        let w = g.weight(&name, &[d, rows], self.dtype, data, TRANSPOSED);
        let mut y = g.node("MatMul", &[h, &w], vec![]);
        if c.qkv_bias {
            let bname = format!("{prefix}.bias");
            let raw = weights::vector(self.weights, &bname, rows)?;
            let mut b = vec![0f32; rows];
            for (r, v) in raw.into_iter().enumerate() {
                b[reorder(r)] = v;
            }
            let b = g.tensor_f32(&bname, &[rows], &b);
            y = g.node("Add", &[&y, &b], vec![]);
        }
        let split = g.const_i64(&[(nh * hd) as i64; 3]);
        let names = [format!("{a}.q"), format!("{a}.k"), format!("{a}.v")];
        g.node_multi(
            "Split",
            &[&y, &split],
            &[&names[0], &names[1], &names[2]],
            vec![("axis", Attr::Int(-1))],
        );
        let [q, k, v] = names;
        Ok((q, k, v))
    }

    /// `embed.onnx`: `input_ids` int64 [batch, seq] -> `hidden` f32 [batch, seq, d].
    pub(crate) fn embed(&self) -> Result<GraphBuilder> {
        let c = self.cfg;
        let mut g = GraphBuilder::new("embed");
        let ids = g.input("input_ids", INT64, &[BATCH, SEQ]);
        let name = c.names.embed;
        let data = weights::matrix(self.weights, name, c.vocab_size, c.hidden_size, self.dtype)?;
        let w = g.weight(name, &[c.vocab_size, c.hidden_size], self.dtype, data, "");
        let mut h = g.node("Gather", &[&w, &ids], vec![("axis", Attr::Int(0))]);
        if let Some(scale) = c.embed_scale {
            // transformers keeps the scale as an f32 buffer cast to the weight dtype; the
            // graph computes in f32, so it is sqrt(d) rounded to f32.
            let s = g.scalar_f32(scale as f32);
            h = g.node("Mul", &[&h, &s], vec![]);
        }
        if let Some(norm) = c.names.embed_norm {
            h = self.norm(&mut g, &h, norm, c.hidden_size)?;
        }
        g.output(&h, "hidden", FLOAT, &[BATCH, SEQ, Dim::Fixed(self.d())]);
        Ok(g)
    }

    /// `head.onnx`: `hidden` f32 [batch, seq, d] -> `logits` f32 [batch, seq, vocab].
    pub(crate) fn head(&self) -> Result<GraphBuilder> {
        let c = self.cfg;
        let mut g = GraphBuilder::new("head");
        let x = g.input("hidden", FLOAT, &[BATCH, SEQ, Dim::Fixed(self.d())]);
        let n = self.norm(&mut g, &x, c.names.final_norm, c.hidden_size)?;
        let mut name = if c.tie_word_embeddings {
            c.names.embed
        } else {
            c.names.lm_head
        };
        let load = |name: &str| {
            weights::matrix_t(self.weights, name, c.vocab_size, c.hidden_size, self.dtype)
        };
        let data = match (load(name), c.names.lm_head_alias) {
            (Err(ExportError::MissingTensor { .. }), Some(alias)) if !c.tie_word_embeddings => {
                name = alias;
                load(alias)?
            }
            (data, _) => data?,
        };
        let w = g.weight(
            name,
            &[c.hidden_size, c.vocab_size],
            self.dtype,
            data,
            TRANSPOSED,
        );
        let mut logits = g.node("MatMul", &[&n, &w], vec![]);
        if let Some(cap) = c.final_softcap {
            logits = softcap(&mut g, &logits, cap as f32);
        }
        g.output(
            &logits,
            "logits",
            FLOAT,
            &[BATCH, SEQ, Dim::Fixed(c.vocab_size as i64)],
        );
        Ok(g)
    }

    /// `layer_{i}.onnx`: one decoder block with KV cache in and out.
    ///
    /// Every supported block is `x + post_a(attn(pre_a(x)))` then `+ post_m(mlp(pre_m(..)))`,
    /// each norm present or not per architecture; a parallel block (GPT-NeoX) feeds the MLP
    /// from `x` instead of from the sum after attention.
    pub(crate) fn layer(&self, i: usize) -> Result<GraphBuilder> {
        let c = self.cfg;
        let n = &c.names;
        let (d, hd, nh, nkv) = (c.hidden_size, c.head_dim, c.num_heads, c.num_kv_heads);
        let p = format!("{}.{i}", n.layer);
        let mut g = GraphBuilder::new(&format!("layer_{i}"));
        let hd_dim = Dim::Fixed(hd as i64);
        let kv_dim = Dim::Fixed(nkv as i64);
        let x = g.input("hidden_in", FLOAT, &[BATCH, SEQ, Dim::Fixed(d as i64)]);
        let pos = g.input("position_ids", INT64, &[BATCH, SEQ]);
        let amask = g.input("attention_mask", INT64, &[BATCH, TOTAL]);
        let past_k = g.input("past_key", FLOAT, &[BATCH, kv_dim, PAST, hd_dim]);
        let past_v = g.input("past_value", FLOAT, &[BATCH, kv_dim, PAST, hd_dim]);

        // Attention.
        let h = match n.attn_in_norm {
            Some(m) => self.norm(&mut g, &x, &format!("{p}.{m}"), d)?,
            None => x.clone(),
        };
        let a = format!("{p}.{}", n.attn);
        let (mut q, mut k, v) = self.qkv(&mut g, &h, &a)?;
        if c.qk_norm == QkNorm::Whole {
            q = self.rms_norm(&mut g, &q, &format!("{a}.q_norm"), nh * hd)?;
            k = self.rms_norm(&mut g, &k, &format!("{a}.k_norm"), nkv * hd)?;
        }
        let kind = c.layer_types[i];
        let rotary = c.positions == Positions::Rope && c.rope_layers[i] && c.rotary_dim > 0;
        let at = Attn {
            hidden: &x,
            pos: &pos,
            amask: &amask,
            past_k: &past_k,
            past_v: &past_v,
            rope: rotary.then_some(match kind {
                AttentionType::FullAttention => &c.rope_global,
                AttentionType::SlidingAttention => &c.rope_local,
            }),
            window: match kind {
                AttentionType::SlidingAttention => c.sliding_window,
                AttentionType::FullAttention => None,
            },
            prefix: &a,
        };
        // A softcap must act before the mask (after it, a masked key keeps weight); where
        // `Attention` applies it has changed between ONNX versions, so rather than depend on a
        // runtime's choice, a softcapped model keeps the spelled-out attention.
        let (o, present_k, present_v) = if self.ops == GraphOps::Fused && c.attn_softcap.is_none() {
            self.attention_fused(&mut g, &q, &k, &v, &at)?
        } else {
            self.attention_basic(&mut g, &q, &k, &v, &at)?
        };
        let o_proj = format!("{a}.{}", n.o_proj);
        let mut attn = self.linear(&mut g, &o, &o_proj, nh * hd, d, c.o_bias)?;
        if let Some(m) = n.attn_out_norm {
            attn = self.norm(&mut g, &attn, &format!("{p}.{m}"), d)?;
        }
        let x1 = g.node("Add", &[&x, &attn], vec![]);

        // MLP.
        let mlp_in = if c.parallel { &x } else { &x1 };
        let h = match n.mlp_in_norm {
            Some(m) => self.norm(&mut g, mlp_in, &format!("{p}.{m}"), d)?,
            None => mlp_in.clone(),
        };
        let ff = c.intermediate_size;
        let up = self.linear(&mut g, &h, &format!("{p}.{}", n.up_proj), d, ff, c.mlp_bias)?;
        let hidden = match c.mlp {
            Mlp::Gated => {
                let gate_name = format!("{p}.{}", n.gate_proj);
                let gate = self.linear(&mut g, &h, &gate_name, d, ff, c.mlp_bias)?;
                let act = self.activation(&mut g, &gate, &p)?;
                g.node("Mul", &[&act, &up], vec![])
            }
            Mlp::Plain => self.activation(&mut g, &up, &p)?,
        };
        let down = format!("{p}.{}", n.down_proj);
        let mut mlp = self.linear(&mut g, &hidden, &down, ff, d, c.mlp_bias)?;
        if let Some(m) = n.mlp_out_norm {
            mlp = self.norm(&mut g, &mlp, &format!("{p}.{m}"), d)?;
        }
        let out = g.node("Add", &[&x1, &mlp], vec![]);

        let hidden = [BATCH, SEQ, Dim::Fixed(d as i64)];
        let cache = [BATCH, kv_dim, TOTAL, hd_dim];
        g.output(&out, "hidden_out", FLOAT, &hidden);
        g.output(&present_k, "present_key", FLOAT, &cache);
        g.output(&present_v, "present_value", FLOAT, &cache);
        if self.extra_outputs {
            g.output(&attn, "attn_out", FLOAT, &hidden);
            g.output(&mlp, "mlp_out", FLOAT, &hidden);
        }
        Ok(g)
    }

    /// The MLP's activation of `x`; `layer` is the block's name prefix (xIELU's parameters
    /// live under it).
    fn activation(&self, g: &mut GraphBuilder, x: &str, layer: &str) -> Result<String> {
        Ok(match self.cfg.activation {
            Activation::Silu => {
                let s = g.node("Sigmoid", &[x], vec![]);
                g.node("Mul", &[x, &s], vec![])
            }
            Activation::GeluTanh => g.node("Gelu", &[x], vec![("approximate", Attr::Str("tanh"))]),
            Activation::Gelu => g.node("Gelu", &[x], vec![]),
            Activation::Xielu => self.xielu(g, x, layer)?,
        })
    }

    /// xIELU (transformers' `XIELUActivation`): with `ap = softplus(alpha_p)` and
    /// `an = beta + softplus(alpha_n)`, `ap x^2 + beta x` where `x > 0`, else
    /// `(expm1(min(x, eps)) - x) an + beta x`. The scalars are folded at export time in f32.
    fn xielu(&self, g: &mut GraphBuilder, x: &str, layer: &str) -> Result<String> {
        let act = format!("{layer}.mlp.act_fn");
        let param = |n: &str| -> Result<f32> {
            Ok(weights::vector(self.weights, &format!("{act}.{n}"), 1)?[0])
        };
        // `beta` and `eps` are buffers; a checkpoint written without them had the defaults.
        let buffer = |n: &str, default: f32| -> Result<f32> {
            match weights::scalar(self.weights, &format!("{act}.{n}")) {
                Err(ExportError::MissingTensor { .. }) => Ok(default),
                r => r,
            }
        };
        let softplus = |v: f32| -> f32 {
            // torch's softplus (beta 1, threshold 20).
            if v > 20.0 {
                v
            } else {
                (v as f64).exp().ln_1p() as f32
            }
        };
        let beta = buffer("beta", 0.5)?;
        let eps = buffer("eps", -1e-6)?;
        let ap = softplus(param("alpha_p")?);
        let an = beta + softplus(param("alpha_n")?);
        let (ap, an, beta, eps) = (
            g.scalar_f32(ap),
            g.scalar_f32(an),
            g.scalar_f32(beta),
            g.scalar_f32(eps),
        );
        let bx = g.node("Mul", &[&beta, x], vec![]);
        let apx = g.node("Mul", &[&ap, x], vec![]);
        let apxx = g.node("Mul", &[&apx, x], vec![]);
        let pos = g.node("Add", &[&apxx, &bx], vec![]);
        let m = g.node("Min", &[x, &eps], vec![]);
        let e = g.node("Exp", &[&m], vec![]);
        let one = g.scalar_f32(1.0);
        let em1 = g.node("Sub", &[&e, &one], vec![]);
        let diff = g.node("Sub", &[&em1, x], vec![]);
        let scaled = g.node("Mul", &[&diff, &an], vec![]);
        let neg = g.node("Add", &[&scaled, &bx], vec![]);
        let zero = g.scalar_f32(0.0);
        let is_pos = g.node("Greater", &[x, &zero], vec![]);
        Ok(g.node("Where", &[&is_pos, &pos, &neg], vec![]))
    }

    /// Attention as primitives (opset 21): `q`, `k`, `v` are the projections `[b, s, h * hd]`;
    /// returns the heads' output `[b, s, nh * hd]` and the caches `present_key`,
    /// `present_value`.
    fn attention_basic(
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
    fn attention_fused(
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
fn softcap(g: &mut GraphBuilder, x: &str, cap: f32) -> String {
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
