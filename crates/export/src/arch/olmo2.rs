//! OLMo-2 (`Olmo2ForCausalLM`): no pre-norms; RMSNorm on the attention's and the MLP's outputs
//! before each residual add; query and key RMSNorms over the whole projection (all heads
//! together), before RoPE; SiLU-gated MLP; untied.
//!
//! Reference: transformers' `models/olmo2/{configuration,modeling}_olmo2.py`.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{Common, parse};
use crate::config::{Config, Names, QkNorm};
use crate::error::Result;

/// `config.json` of OLMo-2 (nothing beyond [`Common`]).
#[derive(Debug, Deserialize)]
struct Olmo2Config {
    #[serde(flatten)]
    common: Common,
}

/// Builds the [`Config`] of an OLMo-2 `config.json`.
pub(super) fn build(path: &Path, class: &str, json: Value) -> Result<Config> {
    let j: Olmo2Config = parse(path, json)?;
    let mut c = j
        .common
        .llama_like(path, class, 10000.0, false, "silu", 1e-5)?;
    c.names = Names {
        attn_in_norm: None,
        attn_out_norm: Some("post_attention_layernorm"),
        mlp_in_norm: None,
        mlp_out_norm: Some("post_feedforward_layernorm"),
        ..Names::LLAMA
    };
    c.qk_norm = QkNorm::Whole;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::from_json;

    #[test]
    fn olmo2_1b_style_config() {
        let j = serde_json::json!({
            "model_type": "olmo2", "architectures": ["Olmo2ForCausalLM"], "hidden_size": 2048,
            "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 16,
            "num_key_value_heads": 16, "vocab_size": 100352, "rope_theta": 500000,
            "max_position_embeddings": 4096, "rms_norm_eps": 1e-6
        });
        let c = from_json(Path::new("c.json"), j).unwrap();
        assert_eq!(c.qk_norm, QkNorm::Whole);
        assert_eq!(c.names.attn_in_norm, None);
        assert_eq!(c.rope_global.theta, 500000.0);
        assert_eq!(c.context_length, Some(4096));
        assert!(!c.tie_word_embeddings);
    }
}
