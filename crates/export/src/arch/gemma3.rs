//! Gemma 3, text part (`Gemma3ForCausalLM`): interleaved sliding-window and global layers,
//! query/key RMSNorms, pre- and post-norms around attention and MLP, (1+w) norm weights,
//! GeGLU with tanh GELU, embeddings scaled by sqrt(hidden_size), queries scaled by
//! `query_pre_attn_scalar ** -0.5`, a separate RoPE base for sliding layers, optional logit
//! softcapping.
//!
//! Reference: transformers' `models/gemma3/{configuration,modeling}_gemma3.py`; both the
//! `rope_parameters` form of the config and the older `rope_theta`/`rope_local_base_freq`
//! form are read.

use std::path::Path;

use serde_json::Value;

use super::{bool_or, f64_or, required, usize_or};
use crate::config::{
    Activation, AttentionType, Config, Family, Rope, parse_layer_types, token_ids,
};
use crate::error::{ExportError, Result};

/// Builds the [`Config`] of a Gemma 3 text `config.json`.
pub(crate) fn config(path: &Path, j: &Value) -> Result<Config> {
    if bool_or(j, "use_bidirectional_attention", false) {
        return Err(ExportError::config(
            path,
            "use_bidirectional_attention is not supported",
        ));
    }
    let hidden_size = required(path, j, "hidden_size")?;
    let num_layers = required(path, j, "num_hidden_layers")?;
    let num_heads = usize_or(j, "num_attention_heads", 8);
    let head_dim = usize_or(j, "head_dim", 256);
    let layer_types = match j.get("layer_types") {
        Some(v) if !v.is_null() => parse_layer_types(path, v)?,
        _ => {
            let pattern = usize_or(j, "sliding_window_pattern", 6).max(1);
            (0..num_layers)
                .map(|i| {
                    if (i + 1) % pattern != 0 {
                        AttentionType::SlidingAttention
                    } else {
                        AttentionType::FullAttention
                    }
                })
                .collect()
        }
    };
    let (rope_global, rope_local) = match j.get("rope_parameters") {
        Some(Value::Object(p)) if p.contains_key("full_attention") => (
            Rope::parse(path, p.get("full_attention"), 1_000_000.0)?,
            Rope::parse(path, p.get("sliding_attention"), 10_000.0)?,
        ),
        _ => (
            Rope::parse(
                path,
                j.get("rope_scaling"),
                f64_or(j, "rope_theta", 1_000_000.0),
            )?,
            Rope::parse(path, None, f64_or(j, "rope_local_base_freq", 10_000.0))?,
        ),
    };
    let act = j
        .get("hidden_activation")
        .or_else(|| j.get("hidden_act"))
        .and_then(Value::as_str)
        .unwrap_or("gelu_pytorch_tanh");
    let bias = bool_or(j, "attention_bias", false);
    Ok(Config {
        architecture: "Gemma3ForCausalLM".to_string(),
        family: Family::Gemma3,
        hidden_size,
        intermediate_size: required(path, j, "intermediate_size")?,
        num_layers,
        num_heads,
        num_kv_heads: usize_or(j, "num_key_value_heads", 4),
        head_dim,
        vocab_size: usize_or(j, "vocab_size", 262_208),
        rms_norm_eps: f64_or(j, "rms_norm_eps", 1e-6),
        qkv_bias: bias,
        o_bias: bias,
        mlp_bias: false,
        activation: Activation::parse(path, act)?,
        tie_word_embeddings: bool_or(j, "tie_word_embeddings", true),
        sliding_window: Some(usize_or(j, "sliding_window", 4096)),
        layer_types,
        rope_global,
        rope_local,
        attn_scale: f64_or(j, "query_pre_attn_scalar", 256.0).powf(-0.5),
        attn_softcap: j.get("attn_logit_softcapping").and_then(Value::as_f64),
        final_softcap: j.get("final_logit_softcapping").and_then(Value::as_f64),
        embed_scale: Some((hidden_size as f64).sqrt()),
        bos_token_id: token_ids(j.get("bos_token_id")).or(Some(vec![2])),
        eos_token_id: token_ids(j.get("eos_token_id")).or(Some(vec![1])),
        pad_token_id: token_ids(j.get("pad_token_id")).or(Some(vec![0])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_json;
    use serde_json::json;

    #[test]
    fn gemma3_270m_style_config() {
        let j = json!({
            "architectures": ["Gemma3ForCausalLM"], "hidden_size": 640, "intermediate_size": 2048,
            "num_hidden_layers": 18, "num_attention_heads": 4, "num_key_value_heads": 1,
            "head_dim": 256, "vocab_size": 262144, "query_pre_attn_scalar": 256,
            "sliding_window": 512, "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
            "final_logit_softcapping": null, "attn_logit_softcapping": null
        });
        let c = from_json(Path::new("c.json"), &j).unwrap();
        assert!(c.tie_word_embeddings);
        assert_eq!(c.layer_types[4], AttentionType::SlidingAttention);
        assert_eq!(c.layer_types[5], AttentionType::FullAttention);
        assert_eq!(c.layer_types[17], AttentionType::FullAttention);
        assert_eq!(c.rope_local.theta, 10000.0);
        assert_eq!(c.rope_global.theta, 1_000_000.0);
        assert_eq!(c.attn_scale, 1.0 / 16.0);
        assert_eq!(c.activation, Activation::GeluTanh);
        assert_eq!(c.final_softcap, None);
    }

    #[test]
    fn rope_parameters_per_layer_type() {
        let j = json!({
            "architectures": ["Gemma3ForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "layer_types": ["sliding_attention", "full_attention"],
            "rope_parameters": {
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}
            }
        });
        let c = from_json(Path::new("c.json"), &j).unwrap();
        assert_eq!(c.rope_local.theta, 1e4);
        assert_eq!(
            c.rope_global.scaling,
            crate::config::RopeScaling::Linear(8.0)
        );
    }
}
