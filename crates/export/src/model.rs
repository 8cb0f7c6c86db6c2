//! The graphs: `embed`, one `layer_{i}` per decoder block, and `head`, built node by node
//! from a [`Config`] and a weight source.
//!
//! Every graph computes in f32. Linear weights are stored transposed (`[in, out]`, so each
//! projection is one `MatMul`), under their checkpoint names.

use crate::GraphOps;
use crate::attention::{Attn, softcap};
use crate::config::{Activation, AttentionType, Mlp, Positions, QkNorm};
use crate::error::{ExportError, Result};
use crate::graph::{Attr, Dim, GraphBuilder};
use crate::onnx::data_type::{FLOAT, INT64};
use crate::ops::{Exporter, TRANSPOSED};
use crate::weights;

const BATCH: Dim = Dim::Sym("batch");
const SEQ: Dim = Dim::Sym("seq");
const PAST: Dim = Dim::Sym("past");
const TOTAL: Dim = Dim::Sym("total");

impl Exporter<'_> {
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
}
