//! The exporter's one model description, filled from a Hugging Face `config.json` by the
//! architecture files under `arch/`.

use std::path::Path;

use serde_json::Value;

use crate::arch;
use crate::error::{ExportError, Result};

/// The family of decoder block an architecture uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// Llama, Mistral, Qwen2: pre-norm blocks, SiLU-gated MLP.
    Llama,
    /// Gemma 3: pre- and post-norms, (1+w) norm weights, query/key norms, GeGLU.
    Gemma3,
}

pub use xlpatch_model::AttentionType;

/// The MLP's gate activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activation {
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

    /// Parses a rope dict (`rope_parameters` or `rope_scaling`), `theta` applying when the dict
    /// has no `rope_theta`.
    pub(crate) fn parse(path: &Path, dict: Option<&Value>, theta: f64) -> Result<Self> {
        let Some(Value::Object(d)) = dict else {
            return Ok(Rope {
                theta,
                scaling: RopeScaling::None,
            });
        };
        let theta = d.get("rope_theta").and_then(Value::as_f64).unwrap_or(theta);
        let kind = d
            .get("rope_type")
            .or_else(|| d.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let num = |k: &str| -> Result<f64> {
            d.get(k).and_then(Value::as_f64).ok_or_else(|| {
                ExportError::config(path, format!("rope type \"{kind}\" needs \"{k}\""))
            })
        };
        let scaling = match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear(num("factor")?),
            "llama3" => RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_max_position_embeddings: num("original_max_position_embeddings")?,
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

/// Everything the graph builders need to know about a model.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// `architectures[0]`, e.g. `LlamaForCausalLM`.
    pub architecture: String,
    pub family: Family,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
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

/// The architectures `load` accepts.
pub(crate) const SUPPORTED: &[&str] = &[
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Gemma3ForCausalLM",
];

/// A token id field that may be an int, a list or null.
pub(crate) fn token_ids(v: Option<&Value>) -> Option<Vec<i64>> {
    match v? {
        Value::Number(n) => n.as_i64().map(|i| vec![i]),
        Value::Array(a) => Some(a.iter().filter_map(Value::as_i64).collect()),
        _ => None,
    }
}

/// Reads `<dir>/config.json` and builds the [`Config`] of its architecture.
pub(crate) fn load(dir: &Path) -> Result<Config> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| ExportError::io(&path, e))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| ExportError::malformed(&path, format!("invalid json: {e}")))?;
    from_json(&path, &json)
}

/// Builds the [`Config`] of a parsed `config.json` (`path` is for messages).
pub(crate) fn from_json(path: &Path, json: &Value) -> Result<Config> {
    let name = json
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        .ok_or_else(|| ExportError::config(path, "no \"architectures\" entry"))?;
    let cfg = match name {
        "LlamaForCausalLM" | "MistralForCausalLM" | "Qwen2ForCausalLM" => {
            arch::llama::config(path, name, json)?
        }
        "Gemma3ForCausalLM" => arch::gemma3::config(path, json)?,
        other => {
            return Err(ExportError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                name: other.to_string(),
                supported: SUPPORTED.to_vec(),
            });
        }
    };
    validate(path, &cfg)?;
    Ok(cfg)
}

fn validate(path: &Path, c: &Config) -> Result<()> {
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
    if c.layer_types.contains(&AttentionType::SlidingAttention) && c.sliding_window.is_none() {
        return err("sliding-window layers but no sliding_window".to_string());
    }
    Ok(())
}

/// Parses `layer_types` strings.
pub(crate) fn parse_layer_types(path: &Path, v: &Value) -> Result<Vec<AttentionType>> {
    serde_json::from_value(v.clone())
        .map_err(|e| ExportError::config(path, format!("layer_types: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_architecture_is_refused_by_name() {
        let p = Path::new("some/dir/config.json");
        let e = from_json(p, &serde_json::json!({"architectures": ["FooForCausalLM"]}))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "unsupported architecture \"FooForCausalLM\" in some/dir/config.json (supported: \
             LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Gemma3ForCausalLM)"
        );
    }

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
