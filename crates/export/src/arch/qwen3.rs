//! Qwen3 (`Qwen3ForCausalLM`): Llama's block with per-head query and key RMSNorms before
//! RoPE, no q/k/v biases by default.
//!
//! Reference: transformers' `models/qwen3/{configuration,modeling}_qwen3.py`.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{Common, no_sliding_window, parse};
use crate::config::{Config, QkNorm};
use crate::error::Result;

/// `config.json` of Qwen3.
#[derive(Debug, Deserialize)]
struct Qwen3Config {
    #[serde(flatten)]
    common: Common,
    #[serde(default)]
    use_sliding_window: bool,
}

/// Builds the [`Config`] of a Qwen3 `config.json`.
pub(super) fn build(path: &Path, class: &str, json: Value) -> Result<Config> {
    let j: Qwen3Config = parse(path, json)?;
    no_sliding_window(path, j.use_sliding_window)?;
    let mut c = j
        .common
        .llama_like(path, class, 10000.0, false, "silu", 1e-6)?;
    c.qk_norm = QkNorm::PerHead;
    // Qwen3's config may list sliding layers that only apply with use_sliding_window.
    c.layer_types = vec![crate::config::AttentionType::FullAttention; c.num_layers];
    Ok(c)
}
