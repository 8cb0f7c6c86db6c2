//! GPT-NeoX (`GPTNeoXForCausalLM`, the Pythia series): attention and MLP read the same input
//! (`use_parallel_residual`, the default) and both add to the residual; LayerNorms with
//! biases; one fused q/k/v projection whose rows are `[heads, 3, head_dim]`; rotary
//! embeddings on the first `partial_rotary_factor` (`rotary_pct`, 25% by default) of each
//! head; a non-gated GELU MLP; untied unembedding `embed_out`.
//!
//! Reference: transformers' `models/gpt_neox/{configuration,modeling}_gpt_neox.py`.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::parse;
use crate::config::{
    Activation, AttentionType, Config, Mlp, Names, Norm, Positions, QkNorm, Rope, RopeDict,
    TokenIds, token_ids,
};
use crate::error::Result;

/// `config.json` of GPT-NeoX, with `GPTNeoXConfig`'s defaults.
#[derive(Debug, Deserialize)]
struct GptNeoxConfig {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    vocab_size: usize,
    #[serde(default = "eps")]
    layer_norm_eps: f64,
    hidden_act: Option<String>,
    rope_parameters: Option<RopeDict>,
    rope_scaling: Option<RopeDict>,
    /// The pre-`rope_parameters` spellings of the base and the rotating fraction.
    rotary_emb_base: Option<f64>,
    rotary_pct: Option<f64>,
    #[serde(default = "yes")]
    use_parallel_residual: bool,
    #[serde(default = "yes")]
    attention_bias: bool,
    #[serde(default)]
    tie_word_embeddings: bool,
    max_position_embeddings: Option<u64>,
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

/// Builds the [`Config`] of a GPT-NeoX `config.json`.
pub(super) fn build(path: &Path, class: &str, json: Value) -> Result<Config> {
    let j: GptNeoxConfig = parse(path, json)?;
    let dict = j.rope_parameters.as_ref().or(j.rope_scaling.as_ref());
    let rope = Rope::parse(path, dict, j.rotary_emb_base.unwrap_or(10000.0))?;
    let fraction = dict
        .and_then(|d| d.partial_rotary_factor)
        .or(j.rotary_pct)
        .unwrap_or(0.25);
    let head_dim = j.hidden_size / j.num_attention_heads.max(1);
    // transformers: int(head_dim * partial_rotary_factor)
    let rotary_dim = (head_dim as f64 * fraction) as usize;
    let n = j.num_hidden_layers;
    Ok(Config {
        architecture: class.to_string(),
        names: Names {
            embed: "gpt_neox.embed_in.weight",
            embed_norm: None,
            final_norm: "gpt_neox.final_layer_norm",
            lm_head: "embed_out.weight",
            lm_head_alias: Some("lm_head.weight"),
            layer: "gpt_neox.layers",
            attn_in_norm: Some("input_layernorm"),
            attn_out_norm: None,
            mlp_in_norm: Some("post_attention_layernorm"),
            mlp_out_norm: None,
            attn: "attention",
            fused_qkv: Some("query_key_value"),
            o_proj: "dense",
            gate_proj: "",
            up_proj: "mlp.dense_h_to_4h",
            down_proj: "mlp.dense_4h_to_h",
        },
        norm: Norm::Layer,
        norm_plus_one: false,
        parallel: j.use_parallel_residual,
        qk_norm: QkNorm::None,
        mlp: Mlp::Plain,
        positions: Positions::Rope,
        rotary_dim,
        rope_layers: vec![true; n],
        context_length: j.max_position_embeddings,
        hidden_size: j.hidden_size,
        intermediate_size: j.intermediate_size,
        num_layers: n,
        num_heads: j.num_attention_heads,
        num_kv_heads: j.num_attention_heads,
        head_dim,
        vocab_size: j.vocab_size,
        norm_eps: j.layer_norm_eps,
        qkv_bias: j.attention_bias,
        o_bias: j.attention_bias,
        mlp_bias: true,
        activation: Activation::parse(path, j.hidden_act.as_deref().unwrap_or("gelu"))?,
        tie_word_embeddings: j.tie_word_embeddings,
        layer_types: vec![AttentionType::FullAttention; n],
        sliding_window: None,
        rope_global: rope.clone(),
        rope_local: rope,
        attn_scale: (head_dim as f64).powf(-0.5),
        attn_softcap: None,
        final_softcap: None,
        embed_scale: None,
        bos_token_id: token_ids(&j.bos_token_id),
        eos_token_id: token_ids(&j.eos_token_id),
        pad_token_id: token_ids(&j.pad_token_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::from_json;

    #[test]
    fn pythia_1b_style_config_with_legacy_keys() {
        let j = serde_json::json!({
            "architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox",
            "hidden_size": 2048, "intermediate_size": 8192, "num_attention_heads": 8,
            "num_hidden_layers": 16, "rotary_emb_base": 10000, "rotary_pct": 0.25,
            "vocab_size": 50304, "max_position_embeddings": 2048, "hidden_act": "gelu"
        });
        let c = from_json(Path::new("c.json"), j).unwrap();
        assert_eq!((c.head_dim, c.rotary_dim), (256, 64));
        assert!(c.parallel && c.qkv_bias && c.mlp_bias && !c.tie_word_embeddings);
        assert_eq!(c.activation, Activation::Gelu);
        assert_eq!(c.norm, Norm::Layer);
    }
}
