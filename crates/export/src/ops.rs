//! What every graph builder shares: the exporter's state (config, weights, options) and the
//! layers used everywhere (norms, linear layers).

use crate::Dtype;
use crate::GraphOps;
use crate::config::{Config, Norm};
use crate::error::Result;
use crate::graph::{Attr, GraphBuilder, OPSET_FUSED};
use crate::weights::{self, Weights};

/// Linear weights are stored transposed (`[in, out]`) so that each projection is one MatMul.
pub(crate) const TRANSPOSED: &str = "stored transposed: [in, out]";

/// Shared state of the graph builders.
pub(crate) struct Exporter<'a> {
    pub cfg: &'a Config,
    pub weights: &'a dyn Weights,
    pub dtype: Dtype,
    pub extra_outputs: bool,
    pub ops: GraphOps,
}

impl Exporter<'_> {
    pub(crate) fn d(&self) -> i64 {
        self.cfg.hidden_size as i64
    }

    pub(crate) fn fused(&self, g: &mut GraphBuilder) -> bool {
        let fused = self.ops == GraphOps::Fused;
        if fused {
            g.require_opset(OPSET_FUSED);
        }
        fused
    }

    /// The architecture's norm (RMSNorm or LayerNorm) of module `module` over `len` values.
    pub(crate) fn norm(
        &self,
        g: &mut GraphBuilder,
        x: &str,
        module: &str,
        len: usize,
    ) -> Result<String> {
        match self.cfg.norm {
            Norm::Rms => self.rms_norm(g, x, module, len),
            Norm::Layer => self.layer_norm(g, x, module, len),
        }
    }

    /// RMSNorm over the last axis with the weight of module `module`, of length `len`
    /// (Gemma's `(1 + w)` applied at export time, in f32 as transformers does).
    pub(crate) fn rms_norm(
        &self,
        g: &mut GraphBuilder,
        x: &str,
        module: &str,
        len: usize,
    ) -> Result<String> {
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
    pub(crate) fn layer_norm(
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
    pub(crate) fn linear(
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
}
