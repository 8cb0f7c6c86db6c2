//! The exporter's one model description, which the architecture files under `arch/` fill from
//! a Hugging Face `config.json`; the graph builders read nothing else.

use std::path::Path;

use serde::Deserialize;

use crate::error::{ExportError, Result};

/// A norm: RMSNorm (weight only) or LayerNorm (weight and bias).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Norm {
    /// `x / sqrt(mean(x^2) + eps) * w`.
    Rms,
    /// `(x - mean) / sqrt(var + eps) * w + b`.
    Layer,
}

/// Where a block normalises queries and keys, if anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QkNorm {
    /// No query/key norms.
    None,
    /// RMSNorm over each head (`head_dim` weights): Gemma 3, Qwen3, Apertus.
    PerHead,
    /// RMSNorm over the whole projection (`heads * head_dim` weights): OLMo-2.
    Whole,
}

/// How the MLP combines its projections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mlp {
    /// `down(act(gate(x)) * up(x))`.
    Gated,
    /// `down(act(up(x)))`.
    Plain,
}

/// How attention learns where a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Positions {
    /// Rotary embeddings on the first `rotary_dim` dims of each head, on the layers
    /// [`Config::rope_layers`] marks.
    Rope,
    /// ALiBi: a per-head linear bias on the key position (BLOOM).
    Alibi,
}

/// The checkpoint's names of one architecture's weights. Per-layer names are suffixes of
/// `{layer}.{i}.`; a norm name is the module (`.weight`, `.bias` appended).
#[derive(Clone, Debug)]
pub(crate) struct Names {
    pub embed: &'static str,
    /// A norm right after the embedding (BLOOM).
    pub embed_norm: Option<&'static str>,
    pub final_norm: &'static str,
    pub lm_head: &'static str,
    /// Another name the unembedding may carry in checkpoints written from memory
    /// (transformers 5 calls GPT-NeoX's `embed_out` `lm_head` there).
    pub lm_head_alias: Option<&'static str>,
    pub layer: &'static str,
    /// Norm of the attention's input (pre-norm blocks).
    pub attn_in_norm: Option<&'static str>,
    /// Norm of the attention's output before the residual add (Gemma 3, OLMo-2).
    pub attn_out_norm: Option<&'static str>,
    pub mlp_in_norm: Option<&'static str>,
    pub mlp_out_norm: Option<&'static str>,
    /// The attention module (`self_attn`, `self_attention`, `attention`).
    pub attn: &'static str,
    /// The fused q/k/v projection (`[heads, 3, head_dim]` rows) instead of `q_proj`,
    /// `k_proj`, `v_proj`.
    pub fused_qkv: Option<&'static str>,
    pub o_proj: &'static str,
    pub gate_proj: &'static str,
    pub up_proj: &'static str,
    pub down_proj: &'static str,
}

impl Names {
    /// The Llama family's names (also OLMo-2's, Qwen3's, SmolLM3's, Gemma 3's, Apertus's
    /// apart from their norms).
    pub(crate) const LLAMA: Names = Names {
        embed: "model.embed_tokens.weight",
        embed_norm: None,
        final_norm: "model.norm",
        lm_head: "lm_head.weight",
        lm_head_alias: None,
        layer: "model.layers",
        attn_in_norm: Some("input_layernorm"),
        attn_out_norm: None,
        mlp_in_norm: Some("post_attention_layernorm"),
        mlp_out_norm: None,
        attn: "self_attn",
        fused_qkv: None,
        o_proj: "o_proj",
        gate_proj: "mlp.gate_proj",
        up_proj: "mlp.up_proj",
        down_proj: "mlp.down_proj",
    };
}

pub use xlpatch_model::AttentionType;

/// The MLP's activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activation {
    /// xIELU (Apertus) with per-layer learned parameters, read from the checkpoint.
    Xielu,
    /// `x * sigmoid(x)`.
    Silu,
    /// GELU, tanh approximation (`gelu_pytorch_tanh`).
    GeluTanh,
    /// GELU, exact (erf).
    Gelu,
}

impl Activation {
    pub(crate) fn parse(path: &Path, name: &str) -> Result<Self> {
        Ok(match name {
            "silu" | "swish" => Activation::Silu,
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Activation::GeluTanh,
            "gelu" => Activation::Gelu,
            "xielu" => Activation::Xielu,
            other => {
                return Err(ExportError::config(
                    path,
                    format!("unsupported activation \"{other}\""),
                ));
            }
        })
    }
}

/// How RoPE frequencies are scaled.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor` (`rope_type: linear`).
    Linear(f64),
    /// Llama 3.1's frequency-dependent scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// One RoPE setting: a base and a scaling.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Rope {
    pub theta: f64,
    pub scaling: RopeScaling,
}

impl Rope {
    /// The inverse frequencies, `head_dim / 2` of them, computed as transformers does
    /// (`1 / base ** (arange(0, dim, 2).float() / dim)` in f32, then the scaling).
    pub(crate) fn inv_freq(&self, head_dim: usize) -> Vec<f32> {
        let base: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| {
                let e = i as f32 / head_dim as f32;
                1.0f32 / (self.theta.powf(e as f64) as f32)
            })
            .collect();
        match self.scaling {
            RopeScaling::None => base,
            RopeScaling::Linear(f) => base.iter().map(|&x| x / f as f32).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old,
            } => {
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let f = f as f64;
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        let scaled = if wavelen > low_wavelen { f / factor } else { f };
                        let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                        if medium {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            ((1.0 - smooth) * scaled / factor + smooth * scaled) as f32
                        } else {
                            scaled as f32
                        }
                    })
                    .collect()
            }
        }
    }

    /// The setting of a rope dict (`rope_parameters` or the older `rope_scaling`), `theta`
    /// applying when the dict has no `rope_theta`.
    pub(crate) fn parse(path: &Path, dict: Option<&RopeDict>, theta: f64) -> Result<Self> {
        let Some(d) = dict else {
            return Ok(Rope {
                theta,
                scaling: RopeScaling::None,
            });
        };
        let theta = d.rope_theta.unwrap_or(theta);
        let kind = d
            .rope_type
            .as_deref()
            .or(d.legacy_type.as_deref())
            .unwrap_or("default");
        let num = |v: Option<f64>, k: &str| -> Result<f64> {
            v.ok_or_else(|| {
                ExportError::config(path, format!("rope type \"{kind}\" needs \"{k}\""))
            })
        };
        let scaling = match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear(num(d.factor, "factor")?),
            "llama3" => RopeScaling::Llama3 {
                factor: num(d.factor, "factor")?,
                low_freq_factor: num(d.low_freq_factor, "low_freq_factor")?,
                high_freq_factor: num(d.high_freq_factor, "high_freq_factor")?,
                original_max_position_embeddings: num(
                    d.original_max_position_embeddings,
                    "original_max_position_embeddings",
                )?,
            },
            other => {
                return Err(ExportError::config(
                    path,
                    format!(
                        "unsupported rope type \"{other}\" (supported: default, linear, llama3)"
                    ),
                ));
            }
        };
        Ok(Rope { theta, scaling })
    }
}

/// A rope dict of `config.json` as transformers writes it (`rope_parameters`) or wrote it
/// (`rope_scaling`, whose kind was once called `type`).
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct RopeDict {
    pub rope_type: Option<String>,
    #[serde(rename = "type")]
    pub legacy_type: Option<String>,
    pub rope_theta: Option<f64>,
    pub factor: Option<f64>,
    pub low_freq_factor: Option<f64>,
    pub high_freq_factor: Option<f64>,
    pub original_max_position_embeddings: Option<f64>,
    /// The fraction of each head that rotates (GPT-NeoX).
    pub partial_rotary_factor: Option<f64>,
}

/// A token id field: an int, a list, or null.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum TokenIds {
    One(i64),
    Many(Vec<i64>),
}

/// The token id list of an optional [`TokenIds`].
pub(crate) fn token_ids(v: &Option<TokenIds>) -> Option<Vec<i64>> {
    match v.as_ref()? {
        TokenIds::One(i) => Some(vec![*i]),
        TokenIds::Many(v) => Some(v.clone()),
    }
}

/// Everything the graph builders need to know about a model.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// `architectures[0]`, e.g. `LlamaForCausalLM`.
    pub architecture: String,
    pub names: Names,
    pub norm: Norm,
    /// Norm weights stored as `w` and applied as `1 + w` (Gemma).
    pub norm_plus_one: bool,
    /// Attention and MLP read the same input and both add to it (GPT-NeoX).
    pub parallel: bool,
    pub qk_norm: QkNorm,
    pub mlp: Mlp,
    pub positions: Positions,
    /// Rotating dims per head (even, at most `head_dim`).
    pub rotary_dim: usize,
    /// Per layer: whether it applies rotary embeddings (SmolLM3's NoPE layers do not).
    pub rope_layers: Vec<bool>,
    /// The longest context the model was trained for, when the config says.
    pub context_length: Option<u64>,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    /// Epsilon of every norm.
    pub norm_eps: f64,
    /// Biases on q, k, v projections.
    pub qkv_bias: bool,
    /// Bias on the output projection.
    pub o_bias: bool,
    /// Biases on the MLP projections.
    pub mlp_bias: bool,
    pub activation: Activation,
    pub tie_word_embeddings: bool,
    pub layer_types: Vec<AttentionType>,
    pub sliding_window: Option<usize>,
    /// RoPE of full-attention layers.
    pub rope_global: Rope,
    /// RoPE of sliding-window layers.
    pub rope_local: Rope,
    /// Multiplier of `q @ k^T`.
    pub attn_scale: f64,
    pub attn_softcap: Option<f64>,
    pub final_softcap: Option<f64>,
    /// Multiplier of the embeddings (Gemma: sqrt(hidden_size)).
    pub embed_scale: Option<f64>,
    pub bos_token_id: Option<Vec<i64>>,
    pub eos_token_id: Option<Vec<i64>>,
    pub pad_token_id: Option<Vec<i64>>,
}

/// Checks the relations between sizes that the graph builders rely on.
pub(crate) fn validate(path: &Path, c: &Config) -> Result<()> {
    let err = |d: String| Err(ExportError::config(path, d));
    if c.num_heads == 0 || c.num_kv_heads == 0 || !c.num_heads.is_multiple_of(c.num_kv_heads) {
        return err(format!(
            "num_attention_heads {} is not a multiple of num_key_value_heads {}",
            c.num_heads, c.num_kv_heads
        ));
    }
    if c.head_dim == 0 || !c.head_dim.is_multiple_of(2) {
        return err(format!(
            "head_dim {} is not a positive even number",
            c.head_dim
        ));
    }
    if c.layer_types.len() != c.num_layers {
        return err(format!(
            "layer_types has {} entries for {} layers",
            c.layer_types.len(),
            c.num_layers
        ));
    }
    if c.rope_layers.len() != c.num_layers {
        return err(format!(
            "rope layers has {} entries for {} layers",
            c.rope_layers.len(),
            c.num_layers
        ));
    }
    if c.rotary_dim > c.head_dim || !c.rotary_dim.is_multiple_of(2) {
        return err(format!(
            "rotary dims {} are not an even number up to head_dim {}",
            c.rotary_dim, c.head_dim
        ));
    }
    if c.layer_types.contains(&AttentionType::SlidingAttention) && c.sliding_window.is_none() {
        return err("sliding-window layers but no sliding_window".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inv_freq_matches_the_formula() {
        let r = Rope {
            theta: 10000.0,
            scaling: RopeScaling::None,
        };
        let f = r.inv_freq(8);
        assert_eq!(f.len(), 4);
        assert_eq!(f[0], 1.0);
        assert!((f[1] - 0.1).abs() < 1e-7);
        assert!((f[3] - 0.001).abs() < 1e-9);
        let lin = Rope {
            theta: 10000.0,
            scaling: RopeScaling::Linear(8.0),
        };
        assert_eq!(lin.inv_freq(8)[0], 0.125);
    }

    #[test]
    fn llama3_rope_scaling_keeps_high_and_scales_low_frequencies() {
        let r = Rope {
            theta: 500000.0,
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0,
            },
        };
        let plain = Rope {
            theta: 500000.0,
            scaling: RopeScaling::None,
        }
        .inv_freq(128);
        let s = r.inv_freq(128);
        assert_eq!(s[0], plain[0]);
        assert!((s[63] - plain[63] / 8.0).abs() <= plain[63] * 1e-6);
    }
}
