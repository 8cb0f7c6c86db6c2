//! The Llama family: `LlamaForCausalLM` (Llama 2/3, EuroLLM, SmolLM), `MistralForCausalLM`
//! (sliding window on every layer when set) and `Qwen2ForCausalLM` (q/k/v biases).
//!
//! Reference: transformers' `models/{llama,mistral,qwen2}/{configuration,modeling}_*.py`;
//! defaults below are those of the config classes, used when `config.json` leaves a key out.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{Common, parse};
use crate::config::{AttentionType, Config};
use crate::error::Result;

/// `config.json` of Llama, Mistral and Qwen2 (the keys beyond [`Common`]).
#[derive(Debug, Deserialize)]
struct LlamaConfig {
    #[serde(flatten)]
    common: Common,
    /// Mistral's window; absent means 4096 for Mistral, `null` means none.
    #[serde(default, deserialize_with = "present")]
    sliding_window: Option<Option<usize>>,
    /// Qwen2: whether the window applies at all.
    #[serde(default)]
    use_sliding_window: bool,
    /// Qwen2: layers from this index on slide.
    max_window_layers: Option<usize>,
}

/// Tells an absent key (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<usize>>, D::Error> {
    Option::<usize>::deserialize(d).map(Some)
}

/// Builds the [`Config`] of a Llama, Mistral or Qwen2 `config.json`.
pub(super) fn build(path: &Path, class: &str, json: Value) -> Result<Config> {
    let j: LlamaConfig = parse(path, json)?;
    let is_mistral = class == "MistralForCausalLM";
    let is_qwen2 = class == "Qwen2ForCausalLM";
    let mut c = j
        .common
        .llama_like(path, class, 10000.0, false, "silu", 1e-6)?;
    let attention_bias = j.common.attention_bias.unwrap_or(false);
    c.qkv_bias = is_qwen2 || attention_bias;
    c.o_bias = !is_qwen2 && attention_bias;
    c.mlp_bias = !is_qwen2 && !is_mistral && j.common.mlp_bias.unwrap_or(false);

    // Which layers slide, and how far.
    let window_value = match j.sliding_window {
        None if is_mistral => Some(4096),
        None => None,
        Some(w) => w,
    };
    let sliding_window = if is_qwen2 && !j.use_sliding_window {
        None
    } else if is_mistral || is_qwen2 {
        window_value
    } else {
        None
    };
    if j.common.layer_types.is_none() {
        c.layer_types = (0..c.num_layers)
            .map(|i| {
                let slides = match sliding_window {
                    None => false,
                    Some(_) if is_qwen2 => i >= j.max_window_layers.unwrap_or(28),
                    Some(_) => true,
                };
                if slides {
                    AttentionType::SlidingAttention
                } else {
                    AttentionType::FullAttention
                }
            })
            .collect();
    }
    c.sliding_window = if c.layer_types.contains(&AttentionType::SlidingAttention) {
        sliding_window.or(window_value)
    } else {
        None
    };
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::from_json;
    use serde_json::json;

    fn base(arch: &str) -> Value {
        json!({
            "architectures": [arch], "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 256
        })
    }

    #[test]
    fn llama_defaults() {
        let c = from_json(Path::new("c.json"), base("LlamaForCausalLM")).unwrap();
        assert_eq!(c.head_dim, 16);
        assert!(!c.qkv_bias && !c.tie_word_embeddings);
        assert_eq!(c.rope_global.theta, 10000.0);
        assert_eq!(c.layer_types, [AttentionType::FullAttention; 2]);
        assert_eq!(c.sliding_window, None);
    }

    #[test]
    fn qwen2_has_qkv_biases_and_no_window_unless_asked() {
        let mut j = base("Qwen2ForCausalLM");
        j["sliding_window"] = json!(32);
        let c = from_json(Path::new("c.json"), j.clone()).unwrap();
        assert!(c.qkv_bias && !c.o_bias);
        assert_eq!(c.sliding_window, None);
        j["use_sliding_window"] = json!(true);
        j["max_window_layers"] = json!(1);
        let c = from_json(Path::new("c.json"), j.clone()).unwrap();
        assert_eq!(
            c.layer_types,
            [
                AttentionType::FullAttention,
                AttentionType::SlidingAttention
            ]
        );
        assert_eq!(c.sliding_window, Some(32));
    }

    #[test]
    fn mistral_slides_everywhere_unless_null() {
        let mut j = base("MistralForCausalLM");
        let c = from_json(Path::new("c.json"), j.clone()).unwrap();
        assert_eq!(c.sliding_window, Some(4096));
        assert_eq!(c.layer_types, [AttentionType::SlidingAttention; 2]);
        j["sliding_window"] = Value::Null;
        let c = from_json(Path::new("c.json"), j.clone()).unwrap();
        assert_eq!(c.layer_types, [AttentionType::FullAttention; 2]);
    }

    #[test]
    fn rope_parameters_and_legacy_rope_scaling_are_read() {
        let mut j = base("LlamaForCausalLM");
        j["rope_parameters"] = json!({"rope_type": "linear", "factor": 2.0, "rope_theta": 500.0});
        let c = from_json(Path::new("c.json"), j.clone()).unwrap();
        assert_eq!(c.rope_global.theta, 500.0);
        let mut j = base("LlamaForCausalLM");
        j["rope_theta"] = json!(1000.0);
        j["rope_scaling"] = json!({"type": "yarn", "factor": 2.0});
        let e = from_json(Path::new("c.json"), j.clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsupported rope type \"yarn\""), "{e}");
    }
}
