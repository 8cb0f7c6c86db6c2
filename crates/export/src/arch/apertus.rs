//! Apertus (`ApertusForCausalLM`): pre-norm blocks with renamed norms
//! (`attention_layernorm`, `feedforward_layernorm`), per-head query and key RMSNorms, a
//! non-gated MLP (`down(xielu(up(x)))`) whose xIELU activation has learned per-layer
//! parameters (`mlp.act_fn.{alpha_p, alpha_n, beta, eps}`), and llama3 RoPE scaling with
//! base 12M by default.
//!
//! Reference: transformers' `models/apertus/{configuration,modeling}_apertus.py` and
//! `XIELUActivation` in `activations.py`.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{Common, parse};
use crate::config::{Config, Mlp, Names, QkNorm, Rope, RopeScaling};
use crate::error::Result;

/// `config.json` of Apertus (nothing beyond [`Common`]).
#[derive(Debug, Deserialize)]
struct ApertusConfig {
    #[serde(flatten)]
    common: Common,
}

/// Builds the [`Config`] of an Apertus `config.json`.
pub(super) fn build(path: &Path, class: &str, json: Value) -> Result<Config> {
    let j: ApertusConfig = parse(path, json)?;
    let default_rope = j.common.rope_parameters.is_none() && j.common.rope_scaling.is_none();
    let mut c = j
        .common
        .llama_like(path, class, 12_000_000.0, false, "xielu", 1e-5)?;
    if default_rope {
        // ApertusConfig's default when the config has no rope dict.
        let rope = Rope {
            theta: j.common.rope_theta.unwrap_or(12_000_000.0),
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0,
            },
        };
        c.rope_global = rope.clone();
        c.rope_local = rope;
    }
    c.names = Names {
        attn_in_norm: Some("attention_layernorm"),
        mlp_in_norm: Some("feedforward_layernorm"),
        ..Names::LLAMA
    };
    c.qk_norm = QkNorm::PerHead;
    c.mlp = Mlp::Plain;
    Ok(c)
}
