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

use serde::Deserialize;
use serde_json::Value;

use super::parse;
use crate::config::{
    Activation, AttentionType, Config, Mlp, Names, Norm, Positions, QkNorm, Rope, RopeDict,
    TokenIds, token_ids,
};
use crate::error::{ExportError, Result};

/// `config.json` of the text part of Gemma 3, with `Gemma3TextConfig`'s defaults.
#[derive(Debug, Deserialize)]
struct Gemma3Config {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    #[serde(default = "eight")]
    num_attention_heads: usize,
    #[serde(default = "four")]
    num_key_value_heads: usize,
    #[serde(default = "d256")]
    head_dim: usize,
    #[serde(default = "vocab")]
    vocab_size: usize,
    rms_norm_eps: Option<f64>,
    hidden_activation: Option<String>,
    hidden_act: Option<String>,
    layer_types: Option<Vec<AttentionType>>,
    sliding_window_pattern: Option<usize>,
    sliding_window: Option<usize>,
    /// One dict, or one per layer type (`full_attention`, `sliding_attention`).
    rope_parameters: Option<RopeParameters>,
    rope_scaling: Option<RopeDict>,
    rope_theta: Option<f64>,
    rope_local_base_freq: Option<f64>,
    #[serde(default)]
    attention_bias: bool,
    tie_word_embeddings: Option<bool>,
    query_pre_attn_scalar: Option<f64>,
    attn_logit_softcapping: Option<f64>,
    final_logit_softcapping: Option<f64>,
    #[serde(default)]
    use_bidirectional_attention: bool,
    max_position_embeddings: Option<u64>,
    bos_token_id: Option<TokenIds>,
    eos_token_id: Option<TokenIds>,
    pad_token_id: Option<TokenIds>,
}

fn eight() -> usize {
    8
}
fn four() -> usize {
    4
}
fn d256() -> usize {
    256
}
fn vocab() -> usize {
    262_208
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RopeParameters {
    /// Tried first: a plain dict has no `full_attention` key and falls through to `One`.
    PerLayerType {
        full_attention: RopeDict,
        sliding_attention: Option<RopeDict>,
    },
    One(RopeDict),
}

/// Builds the [`Config`] of a Gemma 3 text `config.json`.
pub(super) fn build(path: &Path, class: &str, json: Value) -> Result<Config> {
    let j: Gemma3Config = parse(path, json)?;
    if j.use_bidirectional_attention {
        return Err(ExportError::config(
            path,
            "use_bidirectional_attention is not supported",
        ));
    }
    let num_layers = j.num_hidden_layers;
    let layer_types = match j.layer_types {
        Some(t) => t,
        None => {
            let pattern = j.sliding_window_pattern.unwrap_or(6).max(1);
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
    let (rope_global, rope_local) = match &j.rope_parameters {
        Some(RopeParameters::PerLayerType {
            full_attention,
            sliding_attention,
        }) => (
            Rope::parse(path, Some(full_attention), 1_000_000.0)?,
            Rope::parse(path, sliding_attention.as_ref(), 10_000.0)?,
        ),
        one => {
            let dict = match one {
                Some(RopeParameters::One(d)) => Some(d),
                _ => j.rope_scaling.as_ref(),
            };
            (
                Rope::parse(path, dict, j.rope_theta.unwrap_or(1_000_000.0))?,
                Rope::parse(path, None, j.rope_local_base_freq.unwrap_or(10_000.0))?,
            )
        }
    };
    let act = j
        .hidden_activation
        .or(j.hidden_act)
        .unwrap_or_else(|| "gelu_pytorch_tanh".to_string());
    let hidden_size = j.hidden_size;
    let head_dim = j.head_dim;
    Ok(Config {
        architecture: class.to_string(),
        names: Names {
            attn_out_norm: Some("post_attention_layernorm"),
            mlp_in_norm: Some("pre_feedforward_layernorm"),
            mlp_out_norm: Some("post_feedforward_layernorm"),
            ..Names::LLAMA
        },
        norm: Norm::Rms,
        norm_plus_one: true,
        parallel: false,
        qk_norm: QkNorm::PerHead,
        mlp: Mlp::Gated,
        positions: Positions::Rope,
        rotary_dim: head_dim,
        rope_layers: vec![true; num_layers],
        context_length: j.max_position_embeddings,
        hidden_size,
        intermediate_size: j.intermediate_size,
        num_layers,
        num_heads: j.num_attention_heads,
        num_kv_heads: j.num_key_value_heads,
        head_dim,
        vocab_size: j.vocab_size,
        norm_eps: j.rms_norm_eps.unwrap_or(1e-6),
        qkv_bias: j.attention_bias,
        o_bias: j.attention_bias,
        mlp_bias: false,
        activation: Activation::parse(path, &act)?,
        tie_word_embeddings: j.tie_word_embeddings.unwrap_or(true),
        sliding_window: Some(j.sliding_window.unwrap_or(4096)),
        layer_types,
        rope_global,
        rope_local,
        attn_scale: j.query_pre_attn_scalar.unwrap_or(256.0).powf(-0.5),
        attn_softcap: j.attn_logit_softcapping,
        final_softcap: j.final_logit_softcapping,
        embed_scale: Some((hidden_size as f64).sqrt()),
        bos_token_id: token_ids(&j.bos_token_id).or(Some(vec![2])),
        eos_token_id: token_ids(&j.eos_token_id).or(Some(vec![1])),
        pad_token_id: token_ids(&j.pad_token_id).or(Some(vec![0])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::from_json;
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
        let c = from_json(Path::new("c.json"), j).unwrap();
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
        let c = from_json(Path::new("c.json"), j).unwrap();
        assert_eq!(c.rope_local.theta, 1e4);
        assert_eq!(
            c.rope_global.scaling,
            crate::config::RopeScaling::Linear(8.0)
        );
    }
}
