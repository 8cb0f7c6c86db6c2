//! BLOOM (`BloomForCausalLM`): ALiBi instead of rotary embeddings (a per-head slope times the
//! key's position, added to the attention logits); LayerNorms with biases, one of them right
//! after the embedding; one fused q/k/v projection with bias whose rows are
//! `[heads, 3, head_dim]`; a non-gated tanh-GELU MLP of width `4 * hidden`; tied.
//!
//! Reference: transformers' `models/bloom/{configuration,modeling}_bloom.py`.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::parse;
use crate::config::{
    Activation, AttentionType, Config, Mlp, Names, Norm, Positions, QkNorm, Rope, RopeScaling,
    TokenIds, token_ids,
};
use crate::error::{ExportError, Result};

/// `config.json` of BLOOM, with `BloomConfig`'s defaults and its older key names.
#[derive(Debug, Deserialize)]
struct BloomConfig {
    #[serde(alias = "n_embed")]
    hidden_size: usize,
    #[serde(alias = "num_hidden_layers")]
    n_layer: usize,
    #[serde(alias = "num_attention_heads")]
    n_head: usize,
    vocab_size: usize,
    #[serde(default = "eps")]
    layer_norm_epsilon: f64,
    #[serde(default)]
    apply_residual_connection_post_layernorm: bool,
    #[serde(default = "yes")]
    tie_word_embeddings: bool,
    /// The training context, where the config records it.
    seq_length: Option<u64>,
    bos_token_id: Option<TokenIds>,
    eos_token_id: Option<TokenIds>,
    pad_token_id: Option<TokenIds>,
}

fn eps() -> f64 {
    1e-5
}
fn yes() -> bool {
    true
}

/// Builds the [`Config`] of a BLOOM `config.json`.
pub(super) fn build(path: &Path, class: &str, json: Value) -> Result<Config> {
    let j: BloomConfig = parse(path, json)?;
    if j.apply_residual_connection_post_layernorm {
        return Err(ExportError::config(
            path,
            "apply_residual_connection_post_layernorm is not supported",
        ));
    }
    let head_dim = j.hidden_size / j.n_head.max(1);
    let n = j.n_layer;
    let no_rope = Rope {
        theta: 0.0,
        scaling: RopeScaling::None,
    };
    Ok(Config {
        architecture: class.to_string(),
        names: Names {
            embed: "transformer.word_embeddings.weight",
            embed_norm: Some("transformer.word_embeddings_layernorm"),
            final_norm: "transformer.ln_f",
            lm_head: "lm_head.weight",
            lm_head_alias: None,
            layer: "transformer.h",
            attn_in_norm: Some("input_layernorm"),
            attn_out_norm: None,
            mlp_in_norm: Some("post_attention_layernorm"),
            mlp_out_norm: None,
            attn: "self_attention",
            fused_qkv: Some("query_key_value"),
            o_proj: "dense",
            gate_proj: "",
            up_proj: "mlp.dense_h_to_4h",
            down_proj: "mlp.dense_4h_to_h",
        },
        norm: Norm::Layer,
        norm_plus_one: false,
        parallel: false,
        qk_norm: QkNorm::None,
        mlp: Mlp::Plain,
        positions: Positions::Alibi,
        rotary_dim: 0,
        rope_layers: vec![false; n],
        context_length: j.seq_length,
        hidden_size: j.hidden_size,
        intermediate_size: 4 * j.hidden_size,
        num_layers: n,
        num_heads: j.n_head,
        num_kv_heads: j.n_head,
        head_dim,
        vocab_size: j.vocab_size,
        norm_eps: j.layer_norm_epsilon,
        qkv_bias: true,
        o_bias: true,
        mlp_bias: true,
        // BloomGelu: the tanh approximation.
        activation: Activation::GeluTanh,
        tie_word_embeddings: j.tie_word_embeddings,
        layer_types: vec![AttentionType::FullAttention; n],
        sliding_window: None,
        rope_global: no_rope.clone(),
        rope_local: no_rope,
        attn_scale: (head_dim as f64).powf(-0.5),
        attn_softcap: None,
        final_softcap: None,
        embed_scale: None,
        bos_token_id: token_ids(&j.bos_token_id),
        eos_token_id: token_ids(&j.eos_token_id),
        pad_token_id: token_ids(&j.pad_token_id),
    })
}

/// The ALiBi slope of each head, as transformers' `_get_alibi_slopes` computes them: powers
/// of `2^(-8/n)` for the largest power of two `n <= heads`, then odd powers of `2^(-4/n)`
/// for the rest.
pub(crate) fn alibi_slopes(heads: usize) -> Vec<f32> {
    let closest = 1usize << (usize::BITS - 1 - heads.max(1).leading_zeros());
    let base_of = |n: usize| -> f32 { 2f64.powf(-(2f64.powf(-((n as f64).log2() - 3.0)))) as f32 };
    let base = base_of(closest) as f64;
    let mut slopes: Vec<f32> = (1..=closest).map(|p| base.powi(p as i32) as f32).collect();
    if closest != heads {
        let extra = base_of(2 * closest) as f64;
        let remaining = (heads - closest).min(closest);
        slopes.extend((0..remaining).map(|k| extra.powi((2 * k + 1) as i32) as f32));
    }
    slopes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::from_json;

    #[test]
    fn alibi_slopes_match_the_paper() {
        // 8 heads: 1/2, 1/4, ..., 1/256.
        let s = alibi_slopes(8);
        assert_eq!(s, (1..=8).map(|p| 0.5f32.powi(p)).collect::<Vec<_>>());
        // 6 heads: 4 of 2^(-2k), then 2^(-1), 2^(-3).
        let s = alibi_slopes(6);
        assert_eq!(s, [0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]);
    }

    #[test]
    fn bloom_560m_style_config_with_legacy_keys() {
        let j = serde_json::json!({
            "architectures": ["BloomForCausalLM"], "model_type": "bloom", "n_embed": 1024,
            "n_layer": 24, "num_attention_heads": 16, "vocab_size": 250880, "seq_length": 2048
        });
        let c = from_json(Path::new("c.json"), j).unwrap();
        assert_eq!((c.hidden_size, c.num_heads, c.head_dim), (1024, 16, 64));
        assert_eq!(c.intermediate_size, 4096);
        assert_eq!(c.positions, Positions::Alibi);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.context_length, Some(2048));
    }
}
