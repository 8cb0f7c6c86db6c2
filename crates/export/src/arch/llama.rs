//! The Llama family: `LlamaForCausalLM` (Llama 2/3, EuroLLM, SmolLM), `MistralForCausalLM`
//! (sliding window on every layer when set) and `Qwen2ForCausalLM` (q/k/v biases).
//!
//! Reference: transformers' `models/{llama,mistral,qwen2}/{configuration,modeling}_*.py`;
//! defaults below are those of the config classes, used when `config.json` leaves a key out.

use std::path::Path;

use serde_json::Value;

use super::{bool_or, f64_or, required, usize_or};
use crate::config::{
    Activation, AttentionType, Config, Family, Rope, parse_layer_types, token_ids,
};
use crate::error::Result;

/// Builds the [`Config`] of a Llama, Mistral or Qwen2 `config.json`.
pub(crate) fn config(path: &Path, arch: &str, j: &Value) -> Result<Config> {
    let is_mistral = arch == "MistralForCausalLM";
    let is_qwen2 = arch == "Qwen2ForCausalLM";
    let hidden_size = required(path, j, "hidden_size")?;
    let num_layers = required(path, j, "num_hidden_layers")?;
    let num_heads = required(path, j, "num_attention_heads")?;
    let num_kv_heads = usize_or(j, "num_key_value_heads", num_heads);
    let head_dim = usize_or(j, "head_dim", hidden_size / num_heads.max(1));
    let attention_bias = bool_or(j, "attention_bias", false);

    // Which layers slide, and how far.
    let window_value = if is_mistral && j.get("sliding_window").is_none() {
        Some(4096)
    } else {
        j.get("sliding_window")
            .and_then(Value::as_u64)
            .map(|v| v as usize)
    };
    let sliding_window = if is_qwen2 && !bool_or(j, "use_sliding_window", false) {
        None
    } else if is_mistral || is_qwen2 {
        window_value
    } else {
        None
    };
    let layer_types = match j.get("layer_types") {
        Some(v) if !v.is_null() => parse_layer_types(path, v)?,
        _ => (0..num_layers)
            .map(|i| {
                let slides = match sliding_window {
                    None => false,
                    Some(_) if is_qwen2 => i >= usize_or(j, "max_window_layers", 28),
                    Some(_) => true,
                };
                if slides {
                    AttentionType::SlidingAttention
                } else {
                    AttentionType::FullAttention
                }
            })
            .collect(),
    };
    let sliding_window = if layer_types.contains(&AttentionType::SlidingAttention) {
        sliding_window.or(window_value)
    } else {
        None
    };

    let theta = f64_or(j, "rope_theta", 10000.0);
    let rope = Rope::parse(
        path,
        j.get("rope_parameters").or_else(|| j.get("rope_scaling")),
        theta,
    )?;
    let act = j
        .get("hidden_act")
        .and_then(Value::as_str)
        .unwrap_or("silu");
    Ok(Config {
        architecture: arch.to_string(),
        family: Family::Llama,
        hidden_size,
        intermediate_size: required(path, j, "intermediate_size")?,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        vocab_size: required(path, j, "vocab_size")?,
        rms_norm_eps: f64_or(j, "rms_norm_eps", 1e-6),
        qkv_bias: is_qwen2 || attention_bias,
        o_bias: !is_qwen2 && attention_bias,
        mlp_bias: !is_qwen2 && !is_mistral && bool_or(j, "mlp_bias", false),
        activation: Activation::parse(path, act)?,
        tie_word_embeddings: bool_or(j, "tie_word_embeddings", false),
        layer_types,
        sliding_window,
        rope_global: rope.clone(),
        rope_local: rope,
        attn_scale: (head_dim as f64).powf(-0.5),
        attn_softcap: None,
        final_softcap: None,
        embed_scale: None,
        bos_token_id: token_ids(j.get("bos_token_id")),
        eos_token_id: token_ids(j.get("eos_token_id")),
        pad_token_id: token_ids(j.get("pad_token_id")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_json;
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
        let c = from_json(Path::new("c.json"), &base("LlamaForCausalLM")).unwrap();
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
        let c = from_json(Path::new("c.json"), &j).unwrap();
        assert!(c.qkv_bias && !c.o_bias);
        assert_eq!(c.sliding_window, None);
        j["use_sliding_window"] = json!(true);
        j["max_window_layers"] = json!(1);
        let c = from_json(Path::new("c.json"), &j).unwrap();
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
        let c = from_json(Path::new("c.json"), &j).unwrap();
        assert_eq!(c.sliding_window, Some(4096));
        assert_eq!(c.layer_types, [AttentionType::SlidingAttention; 2]);
        j["sliding_window"] = Value::Null;
        let c = from_json(Path::new("c.json"), &j).unwrap();
        assert_eq!(c.layer_types, [AttentionType::FullAttention; 2]);
    }

    #[test]
    fn rope_parameters_and_legacy_rope_scaling_are_read() {
        let mut j = base("LlamaForCausalLM");
        j["rope_parameters"] = json!({"rope_type": "linear", "factor": 2.0, "rope_theta": 500.0});
        let c = from_json(Path::new("c.json"), &j).unwrap();
        assert_eq!(c.rope_global.theta, 500.0);
        let mut j = base("LlamaForCausalLM");
        j["rope_theta"] = json!(1000.0);
        j["rope_scaling"] = json!({"type": "yarn", "factor": 2.0});
        let e = from_json(Path::new("c.json"), &j).unwrap_err().to_string();
        assert!(e.contains("unsupported rope type \"yarn\""), "{e}");
    }
}
