//! SmolLM3 (`SmolLM3ForCausalLM`): Llama's block, but every `no_rope_layer_interval`-th layer
//! (by default every 4th) uses no rotary embedding (NoPE); tied by default.
//!
//! Reference: transformers' `models/smollm3/{configuration,modeling}_smollm3.py`.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{Common, no_sliding_window, parse};
use crate::config::{AttentionType, Config};
use crate::error::{ExportError, Result};

/// `config.json` of SmolLM3.
#[derive(Debug, Deserialize)]
struct SmolLm3Config {
    #[serde(flatten)]
    common: Common,
    /// Per layer, 1 where the layer uses RoPE.
    no_rope_layers: Option<Vec<u8>>,
    #[serde(default = "four")]
    no_rope_layer_interval: usize,
    #[serde(default)]
    use_sliding_window: bool,
}

fn four() -> usize {
    4
}

/// Builds the [`Config`] of a SmolLM3 `config.json`.
pub(super) fn build(path: &Path, class: &str, json: Value) -> Result<Config> {
    let j: SmolLm3Config = parse(path, json)?;
    no_sliding_window(path, j.use_sliding_window)?;
    let mut c = j
        .common
        .llama_like(path, class, 2_000_000.0, true, "silu", 1e-6)?;
    let n = c.num_layers;
    c.rope_layers = match j.no_rope_layers {
        Some(v) => v.iter().map(|&r| r != 0).collect(),
        None => {
            let every = j.no_rope_layer_interval.max(1);
            (0..n).map(|i| (i + 1) % every != 0).collect()
        }
    };
    if c.rope_layers.len() != n {
        return Err(ExportError::config(
            path,
            format!(
                "no_rope_layers has {} entries for {n} layers",
                c.rope_layers.len()
            ),
        ));
    }
    c.layer_types = vec![AttentionType::FullAttention; n];
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::from_json;

    #[test]
    fn every_fourth_layer_is_nope_by_default() {
        let j = serde_json::json!({
            "model_type": "smollm3", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 8, "num_attention_heads": 4, "vocab_size": 256
        });
        let c = from_json(Path::new("c.json"), j).unwrap();
        assert_eq!(
            c.rope_layers,
            [true, true, true, false, true, true, true, false]
        );
        assert!(c.tie_word_embeddings);
        assert_eq!(c.rope_global.theta, 2_000_000.0);
    }
}
