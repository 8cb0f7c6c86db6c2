//! One file per architecture, as candle does: each has a serde struct mirroring its
//! Hugging Face `config.json` (with the config class's defaults) and turns it into the
//! exporter's one [`Config`]. This module picks the file by `model_type` (or, in configs
//! without one, `architectures[0]`) and checks the result.

mod apertus;
mod bloom;
mod gemma3;
mod gpt_neox;
mod llama;
mod olmo2;
mod qwen3;
mod smollm3;

use std::path::Path;

pub(crate) use bloom::alibi_slopes;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{
    Activation, AttentionType, Config, Mlp, Names, Norm, Positions, QkNorm, Rope, RopeDict,
    TokenIds, token_ids, validate,
};
use crate::error::{ExportError, Result};

/// A supported architecture: its `model_type`, its `architectures[0]`, how its blocks differ
/// from Llama's, and its config builder.
struct Arch {
    model_type: &'static str,
    class: &'static str,
    features: &'static str,
    build: fn(&Path, &str, Value) -> Result<Config>,
}

/// Every architecture the exporter writes.
const ARCHS: &[Arch] = &[
    Arch {
        model_type: "llama",
        class: "LlamaForCausalLM",
        features: "pre-norm RMSNorm, RoPE, SiLU-gated MLP, grouped-query attention",
        build: llama::build,
    },
    Arch {
        model_type: "mistral",
        class: "MistralForCausalLM",
        features: "as Llama, sliding-window attention",
        build: llama::build,
    },
    Arch {
        model_type: "qwen2",
        class: "Qwen2ForCausalLM",
        features: "as Llama, q/k/v biases",
        build: llama::build,
    },
    Arch {
        model_type: "gemma3_text",
        class: "Gemma3ForCausalLM",
        features: "pre- and post-norms, (1+w) RMSNorm, per-head q/k norms, local and global layers, GeGLU, scaled embeddings",
        build: gemma3::build,
    },
    Arch {
        model_type: "olmo2",
        class: "Olmo2ForCausalLM",
        features: "RMSNorm on attention and MLP outputs (no pre-norm), q/k norms over the whole projection, RoPE, SiLU-gated MLP",
        build: olmo2::build,
    },
    Arch {
        model_type: "qwen3",
        class: "Qwen3ForCausalLM",
        features: "as Llama, per-head q/k RMSNorms",
        build: qwen3::build,
    },
    Arch {
        model_type: "smollm3",
        class: "SmolLM3ForCausalLM",
        features: "as Llama, no rotary embedding on some layers (NoPE)",
        build: smollm3::build,
    },
    Arch {
        model_type: "gpt_neox",
        class: "GPTNeoXForCausalLM",
        features: "parallel attention and MLP, LayerNorm, fused q/k/v, rotary on part of each head, GELU MLP",
        build: gpt_neox::build,
    },
    Arch {
        model_type: "bloom",
        class: "BloomForCausalLM",
        features: "ALiBi, LayerNorm (also after the embedding), fused q/k/v, GELU MLP, biases",
        build: bloom::build,
    },
    Arch {
        model_type: "apertus",
        class: "ApertusForCausalLM",
        features: "xIELU MLP (not gated), per-head q/k RMSNorms, llama3 RoPE scaling",
        build: apertus::build,
    },
];

/// How the blocks of architecture `name` (a `model_type` or an `architectures[0]`, as the
/// manifest records it) differ from Llama's, if the exporter knows it.
pub(crate) fn features(name: &str) -> Option<&'static str> {
    ARCHS
        .iter()
        .find(|a| a.model_type == name || a.class == name)
        .map(|a| a.features)
}

/// `(model_type, architectures[0])` of every supported architecture.
pub(crate) fn supported() -> impl Iterator<Item = (&'static str, &'static str)> {
    ARCHS.iter().map(|a| (a.model_type, a.class))
}

/// Reads `<dir>/config.json` and builds the [`Config`] of its architecture.
pub(crate) fn load(dir: &Path) -> Result<Config> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| ExportError::io(&path, e))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| ExportError::malformed(&path, format!("invalid json: {e}")))?;
    from_json(&path, json)
}

/// More decoder blocks than any released model has (the deepest have a few hundred).
const MAX_LAYERS: u64 = 4096;

/// Builds the [`Config`] of a parsed `config.json` (`path` is for messages).
pub(crate) fn from_json(path: &Path, json: Value) -> Result<Config> {
    let model_type = json.get("model_type").and_then(Value::as_str);
    let class = json
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str);
    let arch = match (model_type, class) {
        (Some(t), _) => ARCHS.iter().find(|a| a.model_type == t),
        (None, Some(c)) => ARCHS.iter().find(|a| a.class == c),
        (None, None) => {
            return Err(ExportError::config(
                path,
                "neither \"model_type\" nor \"architectures\" says which architecture this is",
            ));
        }
    };
    let Some(arch) = arch else {
        return Err(ExportError::UnsupportedArchitecture {
            path: path.to_path_buf(),
            name: model_type.or(class).unwrap_or_default().to_string(),
            supported: ARCHS.iter().map(|a| a.model_type).collect(),
        });
    };
    // Checked before the builders size per-layer tables from it: a corrupt count
    // (4294967295, found by the fuzzer) took 89 s and 4 GB before any weight was read.
    for key in ["num_hidden_layers", "n_layer"] {
        if let Some(n) = json.get(key).and_then(Value::as_u64)
            && n > MAX_LAYERS
        {
            return Err(ExportError::config(
                path,
                format!(
                    "\"{key}\": {n} blocks is more than any model has (at most {MAX_LAYERS}); \
                     the file is corrupt or not this checkpoint's config"
                ),
            ));
        }
    }
    let cfg = (arch.build)(path, arch.class, json)?;
    validate(path, &cfg)?;
    Ok(cfg)
}

/// Deserializes an architecture's config struct, naming the file on error.
fn parse<T: DeserializeOwned>(path: &Path, json: Value) -> Result<T> {
    serde_json::from_value(json).map_err(|e| ExportError::config(path, format!("{e}")))
}

/// The keys most architectures share, with transformers' spellings.
#[derive(Debug, Deserialize)]
struct Common {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    rms_norm_eps: Option<f64>,
    hidden_act: Option<String>,
    /// The pre-`rope_parameters` spelling of the base.
    rope_theta: Option<f64>,
    rope_parameters: Option<RopeDict>,
    /// The pre-`rope_parameters` spelling of the scaling.
    rope_scaling: Option<RopeDict>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    max_position_embeddings: Option<u64>,
    layer_types: Option<Vec<AttentionType>>,
    bos_token_id: Option<TokenIds>,
    eos_token_id: Option<TokenIds>,
    pad_token_id: Option<TokenIds>,
}

impl Common {
    /// A Llama block with these sizes; `theta`, `tied`, `act` and `eps` are the
    /// architecture's defaults for absent keys.
    fn llama_like(
        &self,
        path: &Path,
        class: &str,
        theta: f64,
        tied: bool,
        act: &str,
        eps: f64,
    ) -> Result<Config> {
        let num_heads = self.num_attention_heads;
        let head_dim = self.head_dim.unwrap_or(self.hidden_size / num_heads.max(1));
        let rope = Rope::parse(
            path,
            self.rope_parameters.as_ref().or(self.rope_scaling.as_ref()),
            self.rope_theta.unwrap_or(theta),
        )?;
        let bias = self.attention_bias.unwrap_or(false);
        let n = self.num_hidden_layers;
        Ok(Config {
            architecture: class.to_string(),
            names: Names::LLAMA,
            norm: Norm::Rms,
            norm_plus_one: false,
            parallel: false,
            qk_norm: QkNorm::None,
            mlp: Mlp::Gated,
            positions: Positions::Rope,
            rotary_dim: head_dim,
            rope_layers: vec![true; n],
            context_length: self.max_position_embeddings,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: n,
            num_heads,
            num_kv_heads: self.num_key_value_heads.unwrap_or(num_heads),
            head_dim,
            vocab_size: self.vocab_size,
            norm_eps: self.rms_norm_eps.unwrap_or(eps),
            qkv_bias: bias,
            o_bias: bias,
            mlp_bias: self.mlp_bias.unwrap_or(false),
            activation: Activation::parse(path, self.hidden_act.as_deref().unwrap_or(act))?,
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(tied),
            layer_types: self
                .layer_types
                .clone()
                .unwrap_or_else(|| vec![AttentionType::FullAttention; n]),
            sliding_window: None,
            rope_global: rope.clone(),
            rope_local: rope,
            attn_scale: (head_dim as f64).powf(-0.5),
            attn_softcap: None,
            final_softcap: None,
            embed_scale: None,
            bos_token_id: token_ids(&self.bos_token_id),
            eos_token_id: token_ids(&self.eos_token_id),
            pad_token_id: token_ids(&self.pad_token_id),
        })
    }
}

/// Refuses a sliding window the exporter would otherwise drop silently.
fn no_sliding_window(path: &Path, use_sliding_window: bool) -> Result<()> {
    if use_sliding_window {
        return Err(ExportError::config(
            path,
            "use_sliding_window is not supported for this architecture",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_architecture_is_refused_by_name() {
        let p = Path::new("some/dir/config.json");
        let e = from_json(p, serde_json::json!({"architectures": ["FooForCausalLM"]}))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "unsupported architecture \"FooForCausalLM\" in some/dir/config.json (supported: \
             llama, mistral, qwen2, gemma3_text, olmo2, qwen3, smollm3, gpt_neox, bloom, apertus)"
        );
        let e = from_json(p, serde_json::json!({"model_type": "gpt2"}))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("unsupported architecture \"gpt2\""), "{e}");
    }

    #[test]
    fn a_missing_size_is_named() {
        let p = Path::new("c.json");
        let e = from_json(
            p,
            serde_json::json!({"model_type": "llama", "hidden_size": 8}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("c.json: missing field"), "{e}");
    }

    #[test]
    fn every_architecture_has_features() {
        for (t, c) in supported() {
            assert!(features(t).is_some() && features(c) == features(t), "{t}");
        }
        assert_eq!(features("gpt2"), None);
    }
}
